"""First-run demo: `serve` on an empty database creates demo data and a key and prints curl
lines that work; it never touches a database that holds data, and can be turned off.

`serve` runs in-process (in the main thread: it installs a signal handler) with `uvicorn.run`
replaced by a recorder; the printed lines are then sent to an app built on the same database
and pepper. The tests are synchronous because the CLI runs its own event loop.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shlex
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from typer.testing import Result

from sonarly_api import demo
from sonarly_api.app import create_app
from sonarly_api.auth import repository as api_keys
from sonarly_api.config import Settings, get_settings
from sonarly_api.migrations import upgrade
from tests.cli.helpers import CLI_PEPPER, invoke, succeeded
from tests.conftest import client_for, make_settings

KEY = re.compile(r"sk_live_[0-9A-Za-z]+")


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[dict[str, Any]]]:
    """A clean environment, `uvicorn.run` recorded instead of run, and the process-wide
    logging that `serve` configures put back afterwards."""
    import uvicorn

    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)
    # `serve` sets JOB_WORKER for its server processes: undone after the test this way.
    monkeypatch.setenv("JOB_WORKER", "false")
    monkeypatch.setenv("API_KEY_PEPPER", CLI_PEPPER)
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *_, **kwargs: calls.append(kwargs))
    loggers = [logging.getLogger(n) for n in ("", "uvicorn", "uvicorn.error", "uvicorn.access")]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    sigterm = signal.getsignal(signal.SIGTERM)
    yield calls
    signal.signal(signal.SIGTERM, sigterm)
    for lg, handlers, level, propagate in saved:
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate
    get_settings.cache_clear()


@pytest.fixture
def empty_database(create_database: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """A database of its own, not even migrated (`serve --migrate` does it)."""
    url: str = create_database("sonarly_demo")
    monkeypatch.setenv("DATABASE_URL", url)
    return url


def serve(*args: str) -> Result:
    return succeeded(invoke("serve", "--migrate", *args))


def query(url: str, *statements: str) -> list[Any]:
    async def run() -> list[Any]:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
        try:
            return [await conn.fetchval(statement) for statement in statements]
        finally:
            await conn.close()

    return asyncio.run(run())


def counts(url: str) -> dict[str, int]:
    tables = ("account_groups", "api_keys", "api_key_grants", "persons", "prospects")
    return dict(
        zip(tables, query(url, *(f"SELECT count(*) FROM {t}" for t in tables)), strict=True)
    )


EMPTY = {"account_groups": 0, "api_keys": 0, "api_key_grants": 0, "persons": 0, "prospects": 0}


def call_api(url: str, requests: list[tuple[str, str]]) -> list[httpx.Response]:
    """GET each (path, Authorization header) from an app on `url` and the CLI's pepper."""

    async def run() -> list[httpx.Response]:
        settings = make_settings(url, api_key_pepper=CLI_PEPPER, key_cache_ttl_seconds=0)
        app = create_app(settings)
        async with app.router.lifespan_context(app), client_for(app) as http:
            return [await http.get(p, headers={"Authorization": a}) for p, a in requests]

    return asyncio.run(run())


def curl_lines(stdout: str) -> list[list[str]]:
    """The lookups' curl lines."""
    return [
        shlex.split(line)
        for line in stdout.splitlines()
        if line.strip().startswith("curl ") and "by-provider-id" in line
    ]


class TestFirstStart:
    def test_creates_the_demo_and_prints_curl_lines_that_work(
        self,
        served: list[dict[str, Any]],
        empty_database: str,
    ) -> None:
        result = serve("--host", "0.0.0.0", "--port", "8123")  # noqa: S104

        assert len(served) == 1  # and then it served
        (key,) = set(KEY.findall(result.stdout))
        # The key line, three lookups, and a prospecting job's start and poll.
        assert result.stdout.count(key) == 6
        assert "shown only this once" in result.stdout
        assert counts(empty_database) == {
            "account_groups": 1,
            "api_keys": 1,
            "api_key_grants": 1,
            "persons": demo.PROSPECTS,
            "prospects": demo.PROSPECTS,
        }
        requests = []
        for argv in curl_lines(result.stdout):
            assert argv[:4] == ["curl", "-s", "-H", f"Authorization: Bearer {key}"]
            url = urlsplit(argv[4])
            assert url.netloc == "127.0.0.1:8123"  # where a client reaches a 0.0.0.0 bind
            requests.append((url.path, argv[3].removeprefix("Authorization: ")))
        answers = []
        for response in call_api(empty_database, requests):
            assert response.status_code == 200, response.text
            answers.append(response.json()["data"])
        assert [a["resolution"] for a in answers] == ["unique", "ambiguous", "none"]
        unique, ambiguous, none = answers
        assert unique["matches"][0]["name"]
        assert unique["matches"][0]["linkedinUrl"].startswith("https://www.linkedin.com/in/")
        assert len({m["personId"] for m in ambiguous["matches"]}) == 2
        assert none["matches"] == []

    def test_the_key_reads_prospects_of_the_demo_group_only(
        self, served: list[dict[str, Any]], empty_database: str
    ) -> None:
        result = serve()
        (key,) = set(KEY.findall(result.stdout))
        bearer = f"Bearer {key}"

        accounts, forbidden = call_api(
            empty_database,
            [
                ("/v1/accounts", bearer),
                (f"/v1/accounts/{'0' * 24}/prospects/by-provider-id/x", bearer),
            ],
        )

        (group,) = accounts.json()["data"]["items"]
        assert group["name"] == demo.GROUP_NAME
        assert forbidden.json()["error"]["code"] == "ACCOUNT_GROUP_FORBIDDEN"

    def test_data_has_a_prospect_without_company_or_title(
        self, served: list[dict[str, Any]], empty_database: str
    ) -> None:
        serve()

        bare, ambiguous = query(
            empty_database,
            "SELECT count(*) FROM prospects WHERE company_name IS NULL AND title IS NULL",
            "SELECT count(*) FROM (SELECT provider_id FROM prospects GROUP BY provider_id"
            " HAVING count(DISTINCT person_id) = 2) twice",
        )

        assert bare >= 1
        assert ambiguous == demo.PROSPECTS // demo.AMBIGUOUS_EVERY


class TestNotCreated:
    def test_second_start_does_nothing(
        self, served: list[dict[str, Any]], empty_database: str
    ) -> None:
        serve()
        after_first = counts(empty_database)

        again = serve()

        assert KEY.search(again.stdout) is None
        assert "curl" not in again.stdout
        assert counts(empty_database) == after_first
        assert len(served) == 2

    def test_no_demo_flag(self, served: list[dict[str, Any]], empty_database: str) -> None:
        result = serve("--no-demo")

        assert result.stdout == ""
        assert counts(empty_database) == EMPTY
        assert len(served) == 1

    def test_demo_data_setting(
        self,
        served: list[dict[str, Any]],
        empty_database: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setenv("DEMO_DATA", "false")

        result = serve()

        assert result.stdout == ""
        assert counts(empty_database) == EMPTY

    def test_a_database_with_any_data(
        self, served: list[dict[str, Any]], empty_database: str
    ) -> None:
        upgrade(empty_database)
        query(empty_database, "INSERT INTO persons (id) VALUES ('0123456789abcdef01234567')")

        result = serve()

        assert result.stdout == ""
        assert counts(empty_database) == {**EMPTY, "persons": 1}

    def test_a_failure_after_the_import_leaves_the_database_empty(
        self, served: list[dict[str, Any]], empty_database: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        async def broken(*_: object, **__: object) -> None:
            raise RuntimeError("no key today")

        monkeypatch.setattr(api_keys, "create_key", broken)

        result = serve()

        assert KEY.search(result.stdout) is None
        assert counts(empty_database) == EMPTY  # persons of the import included
        assert len(served) == 1

    def test_a_failed_demo_leaves_the_database_empty_and_still_serves(
        self,
        served: list[dict[str, Any]],
        empty_database: str,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        async def broken(*_: object, **__: object) -> None:
            raise RuntimeError("disk full")

        monkeypatch.setattr(demo, "import_prospects", broken)

        with caplog.at_level(logging.WARNING, logger="sonarly_api.demo"):
            result = serve()

        assert KEY.search(result.stdout) is None
        assert counts(empty_database) == EMPTY  # the next start can try again
        assert len(served) == 1
        assert "demo data not created: RuntimeError: disk full" in caplog.text


class TestGeneratedData:
    def test_same_seed_same_data(self) -> None:
        assert demo.generate_rows(500) == demo.generate_rows(500)
        assert demo.generate_rows(500, seed=1) != demo.generate_rows(500)

    def test_shape(self) -> None:
        rows, examples = demo.generate_rows()
        provider_ids = [r[0] for r in rows]

        assert len(rows) == demo.PROSPECTS
        assert provider_ids.count(examples.unique) == 1
        assert provider_ids.count(examples.ambiguous) == 2
        assert examples.none not in provider_ids
        assert len({r[1] for r in rows}) == len(rows)  # one person per row
        assert any(r[4] == r[5] == "" for r in rows)
        assert all(re.fullmatch(r"003[0-9A-Za-z]{15}", p) for p in provider_ids)


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8000"),
        ("0.0.0.0", "http://127.0.0.1:8000"),  # noqa: S104
        ("::", "http://[::1]:8000"),
        ("::1", "http://[::1]:8000"),
        ("api.internal", "http://api.internal:8000"),
    ],
)
def test_base_url(host: str, url: str) -> None:
    assert demo.base_url(host, 8000) == url


class TestJobLines:
    def test_the_demo_key_starts_and_polls_the_printed_job(
        self, served: list[dict[str, Any]], empty_database: str
    ) -> None:
        result = serve("--port", "8123")
        (key,) = set(KEY.findall(result.stdout))
        start = re.search(r"-d '(\{.*\})' \\\n\s+\"(http[^\"]+)\"", result.stdout)
        assert start is not None, result.stdout
        body, url = start.group(1), urlsplit(start.group(2))
        assert url.netloc == "127.0.0.1:8123"
        poll = re.search(
            r'curl -s -H "Authorization: Bearer \S+" "(http[^"]+)/\$JOB"', result.stdout
        )
        assert poll is not None
        assert urlsplit(poll.group(1)).path == url.path
        assert "credits        10000" in result.stdout

        async def run() -> tuple[httpx.Response, httpx.Response]:
            settings = make_settings(empty_database, api_key_pepper=CLI_PEPPER)
            app = create_app(settings)
            headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
            async with app.router.lifespan_context(app), client_for(app) as http:
                started = await http.post(url.path, content=body, headers=headers)
                job_id = started.json()["data"]["jobId"]
                return started, await http.get(f"{url.path}/{job_id}", headers=headers)

        started, polled = asyncio.run(run())
        assert started.status_code == 202, started.text
        assert polled.status_code == 200, polled.text
        assert polled.json()["data"]["source"]["source"] == "linkedin_search"
