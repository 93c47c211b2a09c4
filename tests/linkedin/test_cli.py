"""`sonarly-api linkedin connect | disconnect | status`, in-process, on a database of its own,
and what the listings answer after each."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sonarly_api.app import create_app
from sonarly_api.config import Settings, get_settings
from sonarly_api.ids import new_id
from sonarly_api.migrations import upgrade
from tests.cli.helpers import CLI_PEPPER, as_json, create_key, failure_line, in_thread_json, invoke
from tests.conftest import bearer, client_for, make_settings, started
from tests.fakeprovider import FakeProvider, running_fake_provider

LEAD_LISTS = "/v1/accounts/{group}/sales-navigator/lead-lists"


@pytest.fixture(scope="module")
def linkedin_database(create_database: Any) -> str:
    url: str = create_database("sonarly_linkedin_cli")
    upgrade(url)
    return url


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, linkedin_database: str) -> Iterator[str]:
    """Only the settings set here: no outer environment, no developer's `.env`."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", linkedin_database)
    monkeypatch.setenv("API_KEY_PEPPER", CLI_PEPPER)
    get_settings.cache_clear()
    yield linkedin_database
    get_settings.cache_clear()


def group(name: str = "Acme") -> str:
    created: str = as_json("account-groups", "create", "--name", name)["id"]
    return created


def account() -> str:
    return f"urn:li:acc-{new_id()}"


class TestConnect:
    def test_connect_status_disconnect(self, env: str) -> None:
        g, acc = group(), account()

        connected = as_json("linkedin", "connect", "--account-group", g, "--provider-account", acc)
        status = as_json("linkedin", "status", "--account-group", g.upper())
        disconnected = as_json("linkedin", "disconnect", "--account-group", g)
        after = as_json("linkedin", "status", "--account-group", g)
        again = as_json("linkedin", "disconnect", "--account-group", g)

        assert connected["accountGroupId"] == g
        assert connected["providerAccountId"] == acc
        assert connected["replaced"] is None
        assert status["provider"] == "sandbox"
        assert status["items"] == [
            {
                "accountGroupId": g,
                "name": "Acme",
                "connected": True,
                "providerAccountId": acc,
                "connectedAt": connected["connectedAt"],
            }
        ]
        assert disconnected == {"accountGroupId": g, "disconnected": True, "providerAccountId": acc}
        assert after["items"][0]["connected"] is False
        assert after["items"][0]["providerAccountId"] is None
        assert again == {"accountGroupId": g, "disconnected": False, "providerAccountId": None}

    def test_connect_again_replaces(self, env: str) -> None:
        g, first, second = group(), account(), account()
        as_json("linkedin", "connect", "--account-group", g, "--provider-account", first)

        replaced = as_json(
            "linkedin", "connect", "--account-group", g, "--provider-account", second
        )

        assert replaced["replaced"] == first
        items = as_json("linkedin", "status", "--account-group", g)["items"]
        assert items[0]["providerAccountId"] == second

    def test_one_provider_account_serves_one_group(self, env: str) -> None:
        g, other, acc = group(), group(), account()
        as_json("linkedin", "connect", "--account-group", g, "--provider-account", acc)

        result = invoke("linkedin", "connect", "--account-group", other, "--provider-account", acc)

        line = failure_line(result, 1)
        assert line == (
            f"error: --provider-account: {acc} is connected to account group {g}; "
            "disconnect it there first"
        )
        assert (
            as_json("linkedin", "status", "--account-group", other)["items"][0]["connected"]
            is False
        )

    @pytest.mark.parametrize(
        ("args", "code", "message"),
        [
            (
                ["--account-group", "nope", "--provider-account", "a"],
                2,
                "--account-group: not an id",
            ),
            (["--account-group", "0" * 24, "--provider-account", "a b"], 2, "--provider-account:"),
            (["--account-group", "0" * 24, "--provider-account", "a"], 1, "no such account group"),
        ],
    )
    def test_refused(self, env: str, args: list[str], code: int, message: str) -> None:
        line = failure_line(invoke("linkedin", "connect", *args), code)

        assert message in line

    def test_status_table_fits_80_columns(self, env: str) -> None:
        g = group("A rather long account group name")
        as_json("linkedin", "connect", "--account-group", g, "--provider-account", account())

        result = invoke("linkedin", "status")

        assert result.exit_code == 0, result.stderr
        assert g in result.stdout
        assert max(len(line) for line in result.stdout.splitlines()) <= 80
        assert "PROVIDER=sandbox: every account group counts as connected" in result.stdout


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with running_fake_provider() as server:
        yield server


@pytest.fixture
async def api(env: str, fake: FakeProvider) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        env,
        api_key_pepper=CLI_PEPPER,
        provider="http",
        provider_url=fake.url,
        provider_token=fake.token,
    )
    async for app in started(create_app(settings)):
        async with client_for(app) as http:
            yield http


class TestWithTheApi:
    async def test_listings_follow_connect_and_disconnect(
        self, api: httpx.AsyncClient, fake: FakeProvider
    ) -> None:
        g = (await in_thread_json("account-groups", "create", "--name", "Live"))["id"]
        key = (await in_thread_json(*create_key("k", [g], ["prospecting:read"])))["key"]
        acc = account()
        fake.account(acc).lead_lists = {"ll-1": ("CTOs", [])}
        url = LEAD_LISTS.format(group=g)

        before = await api.get(url, headers=bearer(key))
        await in_thread_json("linkedin", "connect", "--account-group", g, "--provider-account", acc)
        during = await api.get(url, headers=bearer(key))
        await in_thread_json("linkedin", "disconnect", "--account-group", g)
        after = await api.get(url, headers=bearer(key))

        assert [before.status_code, during.status_code, after.status_code] == [409, 200, 409]
        assert during.json()["data"] == {"items": [{"id": "ll-1", "name": "CTOs"}]}
