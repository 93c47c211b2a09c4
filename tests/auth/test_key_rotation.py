"""`keys rotate` and `keys create --expires-in`, through the CLI and then the API.

The API runs without a key cache (`tests.cli.helpers.api`), so an expiry is seen at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sonarly_api.auth import keys as key_format
from sonarly_api.config import Settings, get_settings
from sonarly_api.migrations import upgrade
from tests.cli.helpers import (
    CLI_PEPPER,
    ID,
    ISO_MILLIS,
    api,
    as_json,
    create_key,
    failure_line,
    in_thread,
    in_thread_json,
    invoke,
    lookup,
    succeeded,
)
from tests.conftest import bearer

ROTATE_FIELDS = {
    "id",
    "key",
    "name",
    "permissions",
    "accountGroupIds",
    "replaces",
    "oldKeyExpiresAt",
}


@pytest.fixture(scope="module")
def rotation_database(create_database: Any) -> str:
    url: str = create_database("sonarly_rotation")
    upgrade(url)
    return url


@pytest.fixture
def cli_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, rotation_database: str
) -> Iterator[str]:
    """The CLI on this module's database, with nothing from the outer environment."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", rotation_database)
    monkeypatch.setenv("API_KEY_PEPPER", CLI_PEPPER)
    get_settings.cache_clear()
    yield rotation_database
    get_settings.cache_clear()


def parse_iso(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def listed(key_id: str) -> dict[str, Any]:
    keys: dict[str, dict[str, Any]] = {k["id"]: k for k in as_json("keys", "list")}
    return keys[key_id]


async def group_and_key(
    permissions: tuple[str, ...] = ("prospects:read",), *extra: str
) -> tuple[str, dict[str, Any]]:
    group = (await in_thread_json("account-groups", "create", "--name", "rot"))["id"]
    created = await in_thread_json(*create_key("crm sync", [group], list(permissions)), *extra)
    return group, created


async def status_and_details(http: Any, group: str, key: str) -> tuple[int, str | None]:
    response = await http.get(lookup(group, "crm-1"), headers=bearer(key))
    error = response.json()["error"]
    return response.status_code, None if error is None else error["details"]


class TestRotate:
    def test_json_document(self, cli_env: str) -> None:
        first = as_json("account-groups", "create", "--name", "one")["id"]
        second = as_json("account-groups", "create", "--name", "two")["id"]
        old = as_json(
            *create_key("crm sync", [first, second], ["prospects:read", "prospecting:read"])
        )
        before = datetime.now(UTC)

        rotated = as_json("keys", "rotate", old["id"])

        assert set(rotated) == ROTATE_FIELDS
        assert ID.fullmatch(rotated["id"])
        assert rotated["id"] != old["id"]
        assert key_format.check_format(rotated["key"]) is None
        assert rotated["key"] != old["key"]
        assert rotated["name"] == "crm sync"
        assert rotated["permissions"] == ["prospecting:read", "prospects:read"]
        assert rotated["accountGroupIds"] == sorted([first, second])
        assert rotated["replaces"] == old["id"]
        expires = parse_iso(rotated["oldKeyExpiresAt"])
        assert before + timedelta(hours=24) - timedelta(seconds=1) <= expires
        assert expires <= datetime.now(UTC) + timedelta(hours=24)
        assert listed(old["id"])["expiresAt"] == rotated["oldKeyExpiresAt"]
        assert listed(rotated["id"])["expiresAt"] is None
        assert listed(rotated["id"])["accountGroupIds"] == rotated["accountGroupIds"]

    def test_table_form_prints_the_new_key_once(self, cli_env: str) -> None:
        group = as_json("account-groups", "create", "--name", "g")["id"]
        old = as_json(*create_key("n", [group], ["prospects:read"]))

        result = succeeded(invoke("keys", "rotate", old["id"], "--grace", "90m"))

        shown = [w for w in result.stdout.split() if w.startswith("sk_live_")]
        assert len(shown) == 1
        assert shown[0] != old["key"]
        assert key_format.check_format(shown[0]) is None
        assert "shown only this once" in result.stdout
        assert f"old key {old['id']} stops working at" in result.stdout

    async def test_old_key_works_during_the_grace_period_then_expires(self, cli_env: str) -> None:
        group, old = await group_and_key()

        async with api(cli_env) as http:
            rotated = await in_thread_json("keys", "rotate", old["id"], "--grace", "2s")
            during = await status_and_details(http, group, old["key"])
            new_during = await status_and_details(http, group, rotated["key"])
            ends = parse_iso(rotated["oldKeyExpiresAt"])
            await asyncio.sleep((ends - datetime.now(UTC)).total_seconds() + 0.2)
            after = await status_and_details(http, group, old["key"])
            new_after = await status_and_details(http, group, rotated["key"])

        assert during == (200, None)
        assert new_during == (200, None)
        assert after == (401, "The API key has expired.")
        assert new_after == (200, None)

    async def test_grace_zero_ends_the_old_key_at_once(self, cli_env: str) -> None:
        group, old = await group_and_key()

        async with api(cli_env) as http:
            before = await status_and_details(http, group, old["key"])
            rotated = await in_thread_json("keys", "rotate", old["id"], "--grace", "0")
            after = await status_and_details(http, group, old["key"])
            new = await status_and_details(http, group, rotated["key"])

        assert before == (200, None)
        assert after == (401, "The API key has expired.")
        assert new == (200, None)

    async def test_the_new_key_has_the_same_grants_and_permissions(self, cli_env: str) -> None:
        first = (await in_thread_json("account-groups", "create", "--name", "a"))["id"]
        second = (await in_thread_json("account-groups", "create", "--name", "b"))["id"]
        other = (await in_thread_json("account-groups", "create", "--name", "other"))["id"]
        old = await in_thread_json(*create_key("jobs", [first, second], ["prospecting:read"]))
        rotated = await in_thread_json("keys", "rotate", old["id"])

        async with api(cli_env) as http:
            answers = {}
            for which, key in (("old", old["key"]), ("new", rotated["key"])):
                accounts = await http.get("/v1/accounts", headers=bearer(key))
                assert accounts.status_code == 200, accounts.text
                denied = await http.get(lookup(first, "p"), headers=bearer(key))
                answers[which] = (
                    sorted(g["id"] for g in accounts.json()["data"]["items"]),
                    denied.status_code,
                    denied.json()["error"]["code"],
                )

        assert answers["new"] == answers["old"]
        assert answers["new"] == (sorted([first, second]), 403, "PERMISSION_DENIED")
        assert other not in answers["new"][0]

    def test_grace_never_extends_an_earlier_expiry(self, cli_env: str) -> None:
        group = as_json("account-groups", "create", "--name", "g")["id"]
        old = as_json(*create_key("short", [group], ["prospects:read"]), "--expires-in", "1h")
        expiry = listed(old["id"])["expiresAt"]

        rotated = as_json("keys", "rotate", old["id"], "--grace", "24h")

        assert rotated["oldKeyExpiresAt"] == expiry
        assert listed(old["id"])["expiresAt"] == expiry

    def test_the_new_key_can_get_a_lifetime(self, cli_env: str) -> None:
        group = as_json("account-groups", "create", "--name", "g")["id"]
        old = as_json(*create_key("n", [group], ["prospects:read"]))

        rotated = as_json("keys", "rotate", old["id"], "--expires-in", "30d")

        expires = parse_iso(listed(rotated["id"])["expiresAt"])
        assert abs(expires - datetime.now(UTC) - timedelta(days=30)) < timedelta(minutes=1)


class TestRotateRefusals:
    def test_revoked_key(self, cli_env: str) -> None:
        group = as_json("account-groups", "create", "--name", "g")["id"]
        old = as_json(*create_key("n", [group], ["prospects:read"]))
        succeeded(invoke("keys", "revoke", old["id"]))
        before = as_json("keys", "list")

        line = failure_line(invoke("keys", "rotate", old["id"]), 1)

        assert line == f"error: key {old['id']} is revoked; issue a new one with `keys create`"
        assert as_json("keys", "list") == before

    def test_expired_key(self, cli_env: str) -> None:
        group = as_json("account-groups", "create", "--name", "g")["id"]
        old = as_json(*create_key("n", [group], ["prospects:read"]))
        as_json("keys", "rotate", old["id"], "--grace", "0")
        before = as_json("keys", "list")

        line = failure_line(invoke("keys", "rotate", old["id"]), 1)

        assert line == f"error: key {old['id']} has expired; issue a new one with `keys create`"
        assert as_json("keys", "list") == before

    def test_unknown_key(self, cli_env: str) -> None:
        line = failure_line(invoke("keys", "rotate", "e" * 24), 1)

        assert line == f"error: no API key with id {'e' * 24}"

    @pytest.mark.parametrize("grace", ["1.5h", "24", "1h30m", "-1h", "", "24H", " 1h", "1w"])
    def test_malformed_grace(self, cli_env: str, grace: str) -> None:
        group = as_json("account-groups", "create", "--name", "g")["id"]
        old = as_json(*create_key("n", [group], ["prospects:read"]))
        before = as_json("keys", "list")

        line = failure_line(invoke("keys", "rotate", old["id"], "--grace", grace), 2)

        assert line.startswith("error: --grace: not a duration like 90d, 24h, 30m or 3600s")
        assert as_json("keys", "list") == before


class TestCreateExpiresIn:
    @pytest.mark.parametrize(
        ("given", "lifetime"),
        [("90d", timedelta(days=90)), ("24h", timedelta(hours=24)), ("3600s", timedelta(hours=1))],
    )
    def test_expiry_is_listed(self, cli_env: str, given: str, lifetime: timedelta) -> None:
        group = as_json("account-groups", "create", "--name", "g")["id"]

        created = as_json(*create_key("n", [group], ["prospects:read"]), "--expires-in", given)

        expires_at = listed(created["id"])["expiresAt"]
        assert ISO_MILLIS.fullmatch(expires_at)
        assert abs(parse_iso(expires_at) - datetime.now(UTC) - lifetime) < timedelta(minutes=1)

    @pytest.mark.parametrize(
        ("given", "problem"),
        [
            ("0", "not a duration"),
            ("0s", "must be longer than zero"),
            ("90 d", "not a duration"),
            ("36501d", "must be at most 36500d"),
        ],
    )
    def test_bad_values(self, cli_env: str, given: str, problem: str) -> None:
        group = as_json("account-groups", "create", "--name", "g")["id"]
        before = as_json("keys", "list")

        result = invoke(*create_key("n", [group], ["prospects:read"]), "--expires-in", given)

        line = failure_line(result, 2)
        assert line.startswith("error: --expires-in: ")
        assert problem in line
        assert as_json("keys", "list") == before

    async def test_the_key_stops_working_when_it_expires(self, cli_env: str) -> None:
        group, created = await group_and_key(("prospects:read",), "--expires-in", "2s")
        expires = parse_iso(
            next(k for k in await in_thread_json("keys", "list") if k["id"] == created["id"])[
                "expiresAt"
            ]
        )

        async with api(cli_env) as http:
            before = await status_and_details(http, group, created["key"])
            await asyncio.sleep((expires - datetime.now(UTC)).total_seconds() + 0.2)
            after = await status_and_details(http, group, created["key"])

        assert before == (200, None)
        assert after == (401, "The API key has expired.")


class TestList:
    async def test_last_used_and_expiry_are_shown(
        self, cli_env: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("COLUMNS", "250")  # Rich reads it per print: no wrapped headers
        group, created = await group_and_key(("prospects:read",), "--expires-in", "1d")
        unused = (await in_thread_json(*create_key("unused", [group], ["prospects:read"])))["id"]

        async with api(cli_env) as http:
            assert (await status_and_details(http, group, created["key"]))[0] == 200
        # The app's shutdown waits for its usage writes.
        keys = {k["id"]: k for k in await in_thread_json("keys", "list")}
        table = succeeded(await in_thread("keys", "list")).stdout

        assert ISO_MILLIS.fullmatch(keys[created["id"]]["lastUsedAt"])
        assert ISO_MILLIS.fullmatch(keys[created["id"]]["expiresAt"])
        assert keys[unused]["lastUsedAt"] is None
        header = next(line for line in table.splitlines() if " name " in line)
        assert [cell.strip() for cell in header.strip("┃").split("┃")] == [
            "id",
            "name",
            "permissions",
            "account groups",
            "created",
            "last used",
            "expires",
            "revoked",
        ]
        row = next(line for line in table.splitlines() if created["id"] in line)
        assert keys[created["id"]]["lastUsedAt"] in row
        assert keys[created["id"]]["expiresAt"] in row
