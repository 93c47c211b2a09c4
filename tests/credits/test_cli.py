"""`sonarly-api credits` and `account-groups create --plan --credits`.

The main flow runs the console script itself, in a process of its own with an 80-column
terminal; the refusals run in-process (tests/cli/'s way), which is faster.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sonarly_api.config import Settings, get_settings
from sonarly_api.ids import new_id
from tests.cli.helpers import as_json, failure_line, invoke
from tests.conftest import PEPPER
from tests.servers import cli_argv, service_env

ISO_MILLIS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def console(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = service_env(DATABASE_URL=database_url, API_KEY_PEPPER=PEPPER, COLUMNS="80")
    return subprocess.run(
        [*cli_argv(), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def console_ok(database_url: str, *args: str) -> str:
    done = console(database_url, *args)
    assert done.returncode == 0, (done.stdout, done.stderr)
    return done.stdout


def reserve_for_a_job(database_url: str, group: str, job_id: str, amount: int) -> None:
    """What a job start does, with the service, on a synchronous connection of its own."""
    import asyncio

    from sqlalchemy.ext.asyncio import create_async_engine

    from sonarly_api.credits import service

    async def run() -> None:
        engine = create_async_engine(database_url)
        try:
            async with engine.begin() as conn:
                await service.reserve(conn, group, job_id, amount)
                await service.charge(conn, group, job_id, f"{job_id}:page:1", 25)
        finally:
            await engine.dispose()

    asyncio.run(run())


class TestThroughTheConsoleScript:
    def test_create_grant_show(self, database_url: str) -> None:
        created = json.loads(
            console_ok(
                database_url,
                *("account-groups", "create", "--name", "Acme", "--plan", "Tester"),
                *("--credits", "500", "--json"),
            )
        )
        group = created["id"]
        assert created["plan"] == "tester"

        granted = json.loads(
            console_ok(
                database_url,
                *("credits", "grant", "--account-group", group, "--amount", "250"),
                *("--note", "invoice 2026-117", "--json"),
            )
        )
        assert granted == {
            "accountGroupId": group,
            "granted": 250,
            "balance": 750,
            "reserved": 0,
            "available": 750,
        }

        job_id = new_id()
        reserve_for_a_job(database_url, group, job_id, 100)
        shown = json.loads(
            console_ok(database_url, "credits", "show", "--account-group", group, "--json")
        )
        assert {k: shown[k] for k in ("balance", "reserved", "available")} == {
            "balance": 725,
            "reserved": 75,
            "available": 650,
        }
        assert [(e["kind"], e["amount"], e["jobId"], e["note"]) for e in shown["entries"]] == [
            ("charge", 25, job_id, None),
            ("reserve", 100, job_id, None),
            ("grant", 250, None, "invoice 2026-117"),
            ("grant", 500, None, "initial grant"),
        ]
        assert all(ISO_MILLIS.fullmatch(e["createdAt"]) for e in shown["entries"])

        table = console_ok(database_url, "credits", "show", "--account-group", group)
        lines = table.splitlines()
        assert lines[0] == "balance 725  reserved 75  available 650"
        assert max(len(line) for line in lines) <= 80, table
        rows = [line.split() for line in lines if job_id in line]
        assert [row[2:5] for row in rows] == [
            ["charge", "25", job_id],
            ["reserve", "100", job_id],
        ]
        # A note longer than its column folds onto the next lines.
        assert "invoice" in table
        assert "2026-117" in table

        listed = console_ok(database_url, "account-groups", "list")
        assert max(len(line) for line in listed.splitlines()) <= 80, listed
        assert any(group in line and "tester" in line for line in listed.splitlines())


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str) -> Iterator[str]:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("API_KEY_PEPPER", PEPPER)
    get_settings.cache_clear()
    yield database_url
    get_settings.cache_clear()


class TestRefusals:
    @pytest.mark.parametrize("plan", ["gold", "", "free"])
    def test_unknown_plan(self, cli_env: str, plan: str) -> None:
        before = as_json("account-groups", "list")

        line = failure_line(invoke("account-groups", "create", "--name", "x", "--plan", plan), 2)

        assert line == (
            f"error: --plan must be one of tester, starter, scale, enterprise, not {plan!r}"
        )
        assert as_json("account-groups", "list") == before

    def test_negative_credits(self, cli_env: str) -> None:
        line = failure_line(invoke("account-groups", "create", "--name", "x", "--credits", "-1"), 2)
        assert line == "error: --credits must be 0 to 1,000,000,000"

    def test_each_plan_word(self, cli_env: str) -> None:
        for plan in ("tester", "starter", "scale", "enterprise"):
            assert (
                as_json("account-groups", "create", "--name", plan, "--plan", plan)["plan"] == plan
            )
        assert as_json("account-groups", "create", "--name", "default")["plan"] == "starter"

    @pytest.mark.parametrize("amount", ["0", "-3", "1000000001"])
    def test_grant_amount(self, cli_env: str, amount: str) -> None:
        group = as_json("account-groups", "create", "--name", "g")["id"]

        line = failure_line(
            invoke("credits", "grant", "--account-group", group, "--amount", amount), 2
        )

        assert line == "error: --amount must be 1 to 1,000,000,000"
        assert as_json("credits", "show", "--account-group", group)["entries"] == []

    @pytest.mark.parametrize("command", ["grant", "show"])
    def test_unknown_group(self, cli_env: str, command: str) -> None:
        missing = new_id()
        extra = ["--amount", "5"] if command == "grant" else []

        line = failure_line(invoke("credits", command, "--account-group", missing, *extra), 1)

        assert line == f"error: --account-group: no such account group: {missing}"

    def test_malformed_group_id(self, cli_env: str) -> None:
        line = failure_line(invoke("credits", "show", "--account-group", "nope"), 2)
        assert line == "error: --account-group: not an id (24 hex characters): nope"

    def test_grant_table_form(self, cli_env: str) -> None:
        group = as_json("account-groups", "create", "--name", "g", "--credits", "1000")["id"]

        result = invoke("credits", "grant", "--account-group", group.upper(), "--amount", "2500")

        assert result.exit_code == 0, result.stderr
        assert result.stdout == (
            f"granted 2,500 credits to {group}: balance 3,500, reserved 0, available 3,500\n"
        )

    def test_show_without_entries(self, cli_env: str) -> None:
        group = as_json("account-groups", "create", "--name", "g")["id"]

        result = invoke("credits", "show", "--account-group", group)

        assert result.exit_code == 0, result.stderr
        assert result.stdout == "balance 0  reserved 0  available 0\nno ledger entries\n"
