"""`sonarly-api keys create | list | revoke`, and the keys at work against the API."""

from __future__ import annotations

import json
import re

import pytest

from sonarly_api.auth import keys as key_format
from tests.cli.helpers import (
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
    new_group,
    succeeded,
)
from tests.conftest import bearer


class TestKeysCreate:
    def test_json_document(self, cli_env: str) -> None:
        first, second = new_group("one"), new_group("two")

        document = as_json(
            *create_key(
                "crm sync",
                [second, first.upper()],
                ["prospects:read", "prospecting:read", "prospects:read"],
            )
        )

        assert set(document) == {"id", "key", "name", "permissions", "accountGroupIds"}
        assert ID.fullmatch(document["id"])
        assert document["key"].startswith("sk_live_")
        assert key_format.check_format(document["key"]) is None
        assert document["name"] == "crm sync"
        assert document["permissions"] == ["prospecting:read", "prospects:read"]
        assert document["accountGroupIds"] == sorted([first, second])

    def test_table_form_prints_the_key_once(self, cli_env: str) -> None:
        group = new_group()

        result = succeeded(invoke(*create_key("n", [group], ["prospects:read"])))

        secrets_shown = re.findall(r"sk_live_[0-9A-Za-z]+", result.stdout)
        assert len(secrets_shown) == 1
        assert key_format.check_format(secrets_shown[0]) is None
        assert "shown only this once" in result.stdout

    async def test_the_key_works_against_the_api(self, cli_env: str) -> None:
        first = (await in_thread_json("account-groups", "create", "--name", "first"))["id"]
        second = (await in_thread_json("account-groups", "create", "--name", "second"))["id"]
        other = (await in_thread_json("account-groups", "create", "--name", "other"))["id"]
        created = await in_thread_json(*create_key("api", [first, second], ["prospects:read"]))
        key = created["key"]

        async with api(cli_env) as http:
            accounts = await http.get("/v1/accounts", headers=bearer(key))
            found = await http.get(lookup(first, "crm-1"), headers=bearer(key))
            forbidden = await http.get(lookup(other, "crm-1"), headers=bearer(key))

        assert accounts.status_code == 200, accounts.text
        assert sorted(g["id"] for g in accounts.json()["data"]["items"]) == sorted([first, second])
        assert found.status_code == 200, found.text
        assert found.json()["data"] == {"providerId": "crm-1", "resolution": "none", "matches": []}
        assert forbidden.status_code == 403
        assert forbidden.json()["error"]["code"] == "ACCOUNT_GROUP_FORBIDDEN"

    async def test_permissions_are_the_ones_given(self, cli_env: str) -> None:
        group = (await in_thread_json("account-groups", "create", "--name", "g"))["id"]
        created = await in_thread_json(*create_key("jobs only", [group], ["prospecting:read"]))

        async with api(cli_env) as http:
            response = await http.get(lookup(group, "p"), headers=bearer(created["key"]))

        assert response.status_code == 403
        assert response.json()["error"]["code"] == "PERMISSION_DENIED"

    async def test_the_key_is_bound_to_the_pepper(
        self, cli_env: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        group = (await in_thread_json("account-groups", "create", "--name", "g"))["id"]
        monkeypatch.setenv("API_KEY_PEPPER", "another-pepper-0123456789")
        created = await in_thread_json(*create_key("other pepper", [group], ["prospects:read"]))

        async with api(cli_env) as http:
            response = await http.get(lookup(group, "p"), headers=bearer(created["key"]))

        assert response.status_code == 401
        assert response.json()["error"]["details"] == "The API key is not recognised."


class TestKeysCreateErrors:
    @pytest.mark.parametrize(
        ("options", "exit_code", "fragments"),
        [
            (
                ["--permission", "prospects:write"],
                2,
                ["--permission", "unknown prospects:write", "prospects:read"],
            ),
            (
                ["--permission", "prospects:read", "--permission", "admin"],
                2,
                ["--permission", "unknown admin"],
            ),
            (
                ["--account-group", "not-an-id", "--permission", "prospects:read"],
                2,
                ["--account-group", "not an id", "not-an-id"],
            ),
            (
                ["--account-group", "[/x]", "--permission", "prospects:read"],
                2,
                ["--account-group", "[/x]"],  # quoted verbatim, not read as markup
            ),
            (
                ["--account-group", "0" * 24, "--permission", "prospects:read"],
                1,
                ["--account-group", "no such account group", "0" * 24],
            ),
        ],
        ids=["unknown-permission", "one-unknown", "malformed-group", "markup", "missing-group"],
    )
    def test_nothing_is_created(
        self, cli_env: str, options: list[str], exit_code: int, fragments: list[str]
    ) -> None:
        group = new_group()
        before = as_json("keys", "list")

        result = invoke("keys", "create", "--name", "bad", "--account-group", group, *options)

        line = failure_line(result, exit_code)
        for fragment in fragments:
            assert fragment in line
        assert as_json("keys", "list") == before

    def test_empty_name(self, cli_env: str) -> None:
        group = new_group()

        result = invoke(*create_key(" ", [group], ["prospects:read"]))

        assert "--name" in failure_line(result, 2)


class TestKeysListAndRevoke:
    def test_list_never_prints_the_secret(self, cli_env: str) -> None:
        group = new_group()
        created = as_json(*create_key("listed", [group], ["prospects:read", "prospecting:write"]))
        secret = created["key"]

        as_table = succeeded(invoke("keys", "list"))
        as_json_result = succeeded(invoke("keys", "list", "--json"))

        for result in (as_table, as_json_result):
            assert secret not in result.output
            assert secret[len("sk_live_") :] not in result.output
        (listed,) = [k for k in json.loads(as_json_result.stdout) if k["id"] == created["id"]]
        assert listed == {
            "id": created["id"],
            "name": "listed",
            "permissions": ["prospecting:write", "prospects:read"],
            "accountGroupIds": [group],
            "createdAt": listed["createdAt"],
            "lastUsedAt": None,
            "revokedAt": None,
            "expiresAt": None,
        }
        assert ISO_MILLIS.fullmatch(listed["createdAt"])

    async def test_revoked_key_is_refused(self, cli_env: str) -> None:
        group = (await in_thread_json("account-groups", "create", "--name", "g"))["id"]
        created = await in_thread_json(*create_key("to revoke", [group], ["prospects:read"]))

        async with api(cli_env) as http:
            before = await http.get(lookup(group, "p"), headers=bearer(created["key"]))
            revoked = succeeded(await in_thread("keys", "revoke", created["id"]))
            after = await http.get(lookup(group, "p"), headers=bearer(created["key"]))

        assert before.status_code == 200, before.text
        assert f"revoked key {created['id']}" in revoked.stdout
        assert after.status_code == 401
        assert after.json()["error"]["code"] == "UNAUTHORIZED"
        assert after.json()["error"]["details"] == "The API key has been revoked."

    def test_revoke_is_listed_and_idempotent(self, cli_env: str) -> None:
        group = new_group()
        created = as_json(*create_key("twice", [group], ["prospects:read"]))

        succeeded(invoke("keys", "revoke", created["id"]))
        first = {k["id"]: k for k in as_json("keys", "list")}[created["id"]]["revokedAt"]
        succeeded(invoke("keys", "revoke", created["id"].upper()))
        second = {k["id"]: k for k in as_json("keys", "list")}[created["id"]]["revokedAt"]

        assert first is not None
        assert ISO_MILLIS.fullmatch(first)
        assert second == first

    def test_revoke_unknown_key(self, cli_env: str) -> None:
        unknown = "f" * 24

        line = failure_line(invoke("keys", "revoke", unknown), 1)

        assert line == f"error: no API key with id {unknown}"

    def test_revoke_malformed_key_id(self, cli_env: str) -> None:
        line = failure_line(invoke("keys", "revoke", "sk_live_notanid"), 2)

        assert "KEY_ID" in line
        assert "not an id" in line
