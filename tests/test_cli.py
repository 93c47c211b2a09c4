"""The `sonarly-api` CLI, in-process, against databases of its own.

CLI commands call `asyncio.run`, which cannot run inside the test's event loop: async tests
(those that also call the API) run them in a thread with `asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from sonarly_api import cli
from sonarly_api.app import create_app
from sonarly_api.auth import keys as key_format
from sonarly_api.cli import server as serve_command
from sonarly_api.config import Settings, get_settings
from sonarly_api.migrations import upgrade
from tests.conftest import bearer, client_for, make_settings

# Not conftest's PEPPER: keys made here must only work with an app built on this pepper.
CLI_PEPPER = "cli-test-pepper-fedcba9876543210"
ISO_MILLIS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
ID = re.compile(r"[0-9a-f]{24}")
LOOKUP = "/v1/accounts/{group}/prospects/by-provider-id/{provider}"
IMPORTER = Path(__file__).resolve().parents[1] / "src/sonarly_api/prospects/importer.py"

runner = CliRunner()


def invoke(*args: str) -> Result:
    """Run the CLI with settings read afresh from the (monkeypatched) environment."""
    get_settings.cache_clear()
    try:
        return runner.invoke(cli.app, list(args))
    finally:
        get_settings.cache_clear()


def succeeded(result: Result) -> Result:
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def as_json(*args: str) -> Any:
    return json.loads(succeeded(invoke(*args, "--json")).stdout)


def failure_line(result: Result, exit_code: int) -> str:
    """The single `error: …` line a failed command prints on stderr (and nothing on stdout)."""
    assert result.exit_code == exit_code, (result.stdout, result.stderr, result.exception)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


async def in_thread(*args: str) -> Result:
    return await asyncio.to_thread(invoke, *args)


async def in_thread_json(*args: str) -> Any:
    return json.loads(succeeded(await in_thread(*args, "--json")).stdout)


@asynccontextmanager
async def api(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A running app on the CLI's database and pepper; no key cache, so revocation is
    seen at once."""
    settings = make_settings(database_url, api_key_pepper=CLI_PEPPER, key_cache_ttl_seconds=0)
    app = create_app(settings)
    async with app.router.lifespan_context(app), client_for(app) as http:
        yield http


def lookup(group: str, provider: str) -> str:
    return LOOKUP.format(group=group, provider=provider)


@pytest.fixture(scope="module")
def cli_database(create_database: Any) -> str:
    url: str = create_database("sonarly_cli")
    upgrade(url)
    return url


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No setting from the outer environment or a developer's `.env`."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)
    # `serve` sets JOB_WORKER for its server processes: undone after the test this way.
    monkeypatch.setenv("JOB_WORKER", "false")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def cli_env(clean_env: None, monkeypatch: pytest.MonkeyPatch, cli_database: str) -> str:
    monkeypatch.setenv("DATABASE_URL", cli_database)
    monkeypatch.setenv("API_KEY_PEPPER", CLI_PEPPER)
    return cli_database


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Should a start-up check fail to stop `serve`, fail the test instead of serving."""
    import uvicorn

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("serve went on to run uvicorn")

    monkeypatch.setattr(uvicorn, "run", refuse)


def create_key(name: str, groups: list[str], permissions: list[str]) -> list[str]:
    """`keys create` arguments, each option repeated as the CLI expects."""
    args = ["keys", "create", "--name", name]
    for group in groups:
        args += ["--account-group", group]
    for permission in permissions:
        args += ["--permission", permission]
    return args


def new_group(name: str = "Acme EMEA") -> str:
    group: str = as_json("account-groups", "create", "--name", name)["id"]
    return group


class TestAccountGroups:
    def test_create_json(self, cli_env: str) -> None:
        document = as_json("account-groups", "create", "--name", "  Acme EMEA  ")

        assert set(document) == {"id", "name", "plan", "createdAt"}
        assert ID.fullmatch(document["id"])
        assert document["name"] == "Acme EMEA"
        assert document["plan"] == "starter"
        assert ISO_MILLIS.fullmatch(document["createdAt"])

    def test_create_table(self, cli_env: str) -> None:
        result = succeeded(invoke("account-groups", "create", "--name", "Acme US"))

        match = re.fullmatch(
            r"created account group ([0-9a-f]{24}) \(Acme US\), plan starter, 0 credits\n",
            result.stdout,
        )
        assert match is not None, result.stdout
        listed = as_json("account-groups", "list")
        assert match.group(1) in {g["id"] for g in listed}

    def test_list_json_shows_created_groups(self, cli_env: str) -> None:
        first = as_json("account-groups", "create", "--name", "first")
        second = as_json("account-groups", "create", "--name", "second")

        listed = as_json("account-groups", "list")

        assert first in listed
        assert second in listed
        assert all(set(g) == {"id", "name", "plan", "createdAt"} for g in listed)

    @pytest.mark.parametrize("name", ["", "   ", "x" * 201])
    def test_bad_name(self, cli_env: str, name: str) -> None:
        before = as_json("account-groups", "list")

        line = failure_line(invoke("account-groups", "create", "--name", name), 2)

        assert "--name" in line
        assert as_json("account-groups", "list") == before


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


class TestUserTextIsNotMarkup:
    """Names and ids are printed as given: Rich must not read `[...]` in them as markup."""

    NAME = "[/x] [bold]Acme"

    def test_group_name(self, cli_env: str) -> None:
        created = succeeded(invoke("account-groups", "create", "--name", self.NAME))

        assert f"({self.NAME})" in created.stdout
        succeeded(invoke("account-groups", "list"))  # the table renders (cells may wrap)

    def test_key_name_and_secret_are_shown(self, cli_env: str) -> None:
        group = new_group()

        created = succeeded(invoke(*create_key(self.NAME, [group], ["prospects:read"])))

        assert f"({self.NAME})" in created.stdout
        (secret,) = re.findall(r"sk_live_[0-9A-Za-z]+", created.stdout)
        assert key_format.check_format(secret) is None
        succeeded(invoke("keys", "list"))  # the table renders (cells may wrap)


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


class TestSettingsErrors:
    @pytest.mark.parametrize(
        "command",
        [["account-groups", "list"], ["keys", "list"], ["db", "upgrade"], ["serve"]],
        ids=["groups", "keys", "db", "serve"],
    )
    def test_bad_rate_limit(
        self, cli_env: str, no_server: None, monkeypatch: pytest.MonkeyPatch, command: list[str]
    ) -> None:
        monkeypatch.setenv("RATE_LIMIT", "banana")

        line = failure_line(invoke(*command), 2)

        assert "RATE_LIMIT" in line
        assert "banana" in line

    def test_database_url_without_pepper(
        self, cli_env: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("API_KEY_PEPPER")

        line = failure_line(invoke("account-groups", "list"), 2)

        assert "API_KEY_PEPPER" in line

    def test_short_pepper(self, cli_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("API_KEY_PEPPER", "short")

        line = failure_line(invoke("keys", "list"), 2)

        assert "API_KEY_PEPPER" in line
        assert "16 characters" in line
        assert "short" not in line.replace("API_KEY_PEPPER", "")

    def test_bad_database_url(self, cli_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("DATABASE_URL", "mysql://db/x")

        line = failure_line(invoke("keys", "list"), 2)

        assert "DATABASE_URL" in line


class TestDbUpgrade:
    def test_makes_a_fresh_database_usable(
        self, clean_env: None, monkeypatch: pytest.MonkeyPatch, create_database: Any
    ) -> None:
        monkeypatch.setenv("DATABASE_URL", create_database("sonarly_cli_fresh"))
        monkeypatch.setenv("API_KEY_PEPPER", CLI_PEPPER)
        assert invoke("account-groups", "list", "--json").exit_code != 0  # no tables yet

        result = succeeded(invoke("db", "upgrade"))

        assert "latest schema revision" in result.stderr
        assert as_json("account-groups", "list") == []
        group = as_json("account-groups", "create", "--name", "first")
        assert as_json("account-groups", "list") == [group]
        succeeded(invoke("db", "upgrade"))  # again: nothing to do
        assert as_json("account-groups", "list") == [group]


class TestServe:
    def test_embedded_database_refuses_several_workers(
        self, clean_env: None, no_server: None, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def no_database(*_: object, **__: object) -> None:
            raise AssertionError("serve opened a database")

        monkeypatch.setattr(serve_command, "open_database", no_database)

        line = failure_line(invoke("serve", "--workers", "2"), 2)

        assert "embedded PostgreSQL" in line
        assert "single worker" in line
        assert "DATABASE_URL" in line

    def test_zero_workers_is_a_usage_error(self, clean_env: None, no_server: None) -> None:
        result = invoke("serve", "--workers", "0")

        assert result.exit_code == 2
        assert "--workers" in result.stderr


def importer_ready() -> bool:
    return IMPORTER.is_file() and "def import_prospects" in IMPORTER.read_text()


@pytest.mark.skipif(not importer_ready(), reason="prospects importer not written yet")
class TestProspectsImport:
    async def test_import_then_reimport(self, cli_env: str, tmp_path: Path) -> None:
        group = (await in_thread_json("account-groups", "create", "--name", "import"))["id"]
        key = (await in_thread_json(*create_key("import", [group], ["prospects:read"])))["key"]
        tag = secrets.token_hex(4)
        csv_file = tmp_path / "prospects.csv"
        csv_file.write_text(
            "providerId,publicIdentifier,name,companyName,title\n"
            f"crm-1,avery-{tag},Avery Stone,Stone & Co,CTO\n"
            f"crm-2,blake-{tag},Blake Reed,,\n"
            f"crm-3,casey-{tag},Casey Lane,Lane Ltd,VP Sales\n",
            encoding="utf-8",
        )
        expected = {"imported": True, "rowsRead": 3, "updated": 0, "rejected": 0}

        first = await in_thread_json("prospects", "import", str(csv_file), "--account-group", group)
        again = await in_thread_json("prospects", "import", str(csv_file), "--account-group", group)

        assert first == {**expected, "created": 3, "unchanged": 0}
        assert again == {**expected, "created": 0, "unchanged": 3}
        async with api(cli_env) as http:
            response = await http.get(lookup(group, "crm-1"), headers=bearer(key))
        data = response.json()["data"]
        assert data["resolution"] == "unique"
        (match,) = data["matches"]
        assert (match["publicIdentifier"], match["name"], match["companyName"], match["title"]) == (
            f"avery-{tag}",
            "Avery Stone",
            "Stone & Co",
            "CTO",
        )

    async def test_a_bad_row_fails_the_whole_import(self, cli_env: str, tmp_path: Path) -> None:
        group = (await in_thread_json("account-groups", "create", "--name", "bad"))["id"]
        key = (await in_thread_json(*create_key("bad", [group], ["prospects:read"])))["key"]
        csv_file = tmp_path / "bad.csv"
        csv_file.write_text("providerId,name\ngood-1,Good\na/b,Slash\n", encoding="utf-8")

        result = await in_thread(
            "prospects", "import", str(csv_file), "--account-group", group, "--json"
        )

        assert result.exit_code == 1, (result.stdout, result.stderr, result.exception)
        assert "line 3:" in result.stderr
        assert "providerId" in result.stderr
        document = json.loads(result.stdout)
        assert document["imported"] is False
        assert [e["line"] for e in document["errors"]] == [3]
        async with api(cli_env) as http:
            response = await http.get(lookup(group, "good-1"), headers=bearer(key))
        assert response.json()["data"]["resolution"] == "none"  # nothing was written

    async def test_file_level_error_is_printed_verbatim(self, cli_env: str, tmp_path: Path) -> None:
        group = (await in_thread_json("account-groups", "create", "--name", "cols"))["id"]
        csv_file = tmp_path / "columns.csv"
        csv_file.write_text("providerId,[/x]\np1,v\n", encoding="utf-8")

        result = await in_thread("prospects", "import", str(csv_file), "--account-group", group)

        assert result.exit_code == 1, (result.stdout, result.stderr, result.exception)
        assert "line 1:" in result.stderr
        assert "'[/x]'" in result.stderr
