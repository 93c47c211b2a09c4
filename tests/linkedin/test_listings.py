"""GET /v1/accounts/{accountGroupId}/sales-navigator/lead-lists and …/saved-searches, through the
app with PROVIDER=http against the real fake provider (tests/fakeprovider.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api.app import create_app
from sonarly_api.ids import new_id
from sonarly_api.linkedin import repository
from sonarly_api.linkedin.connections import connected_account
from tests.conftest import Factory, bearer, client_for, make_settings, started
from tests.fakeprovider import RAW_MESSAGE, FakeProvider, running_fake_provider
from tests.prospects.test_lookup import assert_envelope_ok
from tests.support import assert_error

LEAD_LISTS = "/v1/accounts/{group}/sales-navigator/lead-lists"
SAVED_SEARCHES = "/v1/accounts/{group}/sales-navigator/saved-searches"
READ = ("prospecting:read",)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeProvider]:
    with running_fake_provider() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeProvider) -> FakeProvider:
    server.reset()
    return server


def http_settings(database_url: str, fake: FakeProvider, **overrides: Any) -> Any:
    return make_settings(
        database_url,
        provider="http",
        provider_url=fake.url,
        provider_token=fake.token,
        provider_timeout_seconds=0.3,
        provider_max_attempts=3,
        provider_listing_deadline_seconds=2.0,
        **overrides,
    )


@pytest.fixture(scope="module")
async def http_app(database_url: str, server: FakeProvider) -> AsyncIterator[FastAPI]:
    async for app in started(create_app(http_settings(database_url, server))):
        yield app


@pytest.fixture
async def client(http_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(http_app) as http:
        yield http


async def connect(engine: AsyncEngine, group: str) -> str:
    """Connect `group` to a new provider account; returns the account id."""
    account = f"acc-{new_id()}"
    async with engine.begin() as conn:
        await repository.connect(conn, group, account)
    return account


@pytest.fixture
async def connected(
    factory: Factory, engine: AsyncEngine, fake: FakeProvider
) -> tuple[str, str, str]:
    """(group, key, provider account) with two lead lists and one saved search."""
    group = await factory.group()
    _, key = await factory.key([group], READ)
    account_id = await connect(engine, group)
    account = fake.account(account_id)
    account.lead_lists = {"ll-1": ("CTOs in Berlin", []), "ll-2": ("Founders", [])}
    account.saved_searches = {"ss-1": ("Series A", [])}
    return group, key, account_id


class TestListings:
    async def test_lead_lists(
        self, client: httpx.AsyncClient, connected: tuple[str, str, str], fake: FakeProvider
    ) -> None:
        group, key, account_id = connected

        response = await client.get(LEAD_LISTS.format(group=group), headers=bearer(key))

        assert assert_envelope_ok(response) == {
            "items": [{"id": "ll-1", "name": "CTOs in Berlin"}, {"id": "ll-2", "name": "Founders"}]
        }
        (sent,) = fake.requests
        assert sent.path == f"/v1/accounts/{account_id}/sales-navigator/lead-lists"
        assert sent.headers["authorization"] == f"Bearer {fake.token}"

    async def test_saved_searches(
        self, client: httpx.AsyncClient, connected: tuple[str, str, str]
    ) -> None:
        group, key, _ = connected

        response = await client.get(SAVED_SEARCHES.format(group=group.upper()), headers=bearer(key))

        assert assert_envelope_ok(response) == {"items": [{"id": "ss-1", "name": "Series A"}]}

    async def test_empty(
        self, client: httpx.AsyncClient, connected: tuple[str, str, str], fake: FakeProvider
    ) -> None:
        group, key, account_id = connected
        fake.account(account_id).saved_searches.clear()

        response = await client.get(SAVED_SEARCHES.format(group=group), headers=bearer(key))

        assert assert_envelope_ok(response) == {"items": []}

    async def test_each_group_reads_its_own_account(
        self, client: httpx.AsyncClient, factory: Factory, engine: AsyncEngine, fake: FakeProvider
    ) -> None:
        groups = [await factory.group(), await factory.group()]
        _, key = await factory.key(groups, READ)
        for n, group in enumerate(groups):
            fake.account(await connect(engine, group)).lead_lists = {f"ll-{n}": (f"List {n}", [])}

        answers = [
            assert_envelope_ok(await client.get(LEAD_LISTS.format(group=g), headers=bearer(key)))
            for g in groups
        ]

        assert answers == [
            {"items": [{"id": "ll-0", "name": "List 0"}]},
            {"items": [{"id": "ll-1", "name": "List 1"}]},
        ]


class TestChecks:
    async def test_missing_key(self, client: httpx.AsyncClient) -> None:
        response = await client.get(LEAD_LISTS.format(group=new_id()))

        assert_error(response, 401, "UNAUTHORIZED")
        assert response.headers["www-authenticate"] == "Bearer"

    async def test_wrong_permission_before_path_validation(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group], ("prospects:read", "prospecting:write"))

        for path in (LEAD_LISTS.format(group=group), SAVED_SEARCHES.format(group="nope")):
            error = assert_error(
                await client.get(path, headers=bearer(key)), 403, "PERMISSION_DENIED"
            )
            assert error["details"] == "Missing permission: prospecting:read."

    async def test_malformed_group_id(self, client: httpx.AsyncClient, factory: Factory) -> None:
        _, key = await factory.key([await factory.group()], READ)

        response = await client.get(LEAD_LISTS.format(group="not-an-id"), headers=bearer(key))

        error = assert_error(response, 400, "VALIDATION_ERROR")
        assert error["details"] == "accountGroupId: must be 24 hexadecimal characters."

    async def test_group_not_granted_says_nothing_about_existence(
        self, client: httpx.AsyncClient, factory: Factory, engine: AsyncEngine
    ) -> None:
        mine, other = await factory.group(), await factory.group()
        await connect(engine, other)
        _, key = await factory.key([mine], READ)

        existing = await client.get(LEAD_LISTS.format(group=other), headers=bearer(key))
        unknown = await client.get(LEAD_LISTS.format(group=new_id()), headers=bearer(key))

        assert_error(existing, 403, "ACCOUNT_GROUP_FORBIDDEN")
        assert existing.json()["error"] == unknown.json()["error"]

    async def test_not_connected(
        self, client: httpx.AsyncClient, factory: Factory, fake: FakeProvider
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group], READ)

        for path in (LEAD_LISTS, SAVED_SEARCHES):
            response = await client.get(path.format(group=group), headers=bearer(key))
            error = assert_error(response, 409, "LINKEDIN_NOT_CONNECTED")
            assert "sonarly-api linkedin connect" in error["details"]
        assert fake.requests == []

    async def test_rate_limited(
        self, database_url: str, fake: FakeProvider, connected: tuple[str, str, str]
    ) -> None:
        group, key, _ = connected
        settings = http_settings(database_url, fake, rate_limit="2/minute")
        async for app in started(create_app(settings)):
            async with client_for(app) as http:
                answers = [
                    await http.get(LEAD_LISTS.format(group=group), headers=bearer(key))
                    for _ in range(3)
                ]

        assert [a.status_code for a in answers] == [200, 200, 429]
        assert_error(answers[2], 429, "RATE_LIMITED")
        assert int(answers[2].headers["retry-after"]) >= 1


class TestUpstreamFailures:
    @pytest.mark.parametrize(
        ("kind", "times", "failure", "attempts"),
        [
            ("500", None, "bad_answer", 3),
            ("drop", None, "refused", 3),
            ("429", None, "rate_limited", 3),
            ("slow", None, "timeout", 3),
            ("malformed", 1, "bad_answer", 1),
            ("disconnected", 1, "disconnected", 1),
            ("restricted", 1, "disconnected", 1),
            ("unauthorized", 1, "refused", 1),
        ],
    )
    async def test_502_names_the_failure_class(
        self,
        client: httpx.AsyncClient,
        connected: tuple[str, str, str],
        fake: FakeProvider,
        kind: str,
        times: int | None,
        failure: str,
        attempts: int,
    ) -> None:
        group, key, _ = connected
        fake.fault(kind, times=times, delay=1.0, retry_after="0")  # type: ignore[arg-type]

        response = await client.get(LEAD_LISTS.format(group=group), headers=bearer(key))

        error = assert_error(response, 502, "UPSTREAM_ERROR")
        assert error["details"].startswith(f"{failure}: ")
        for leak in (RAW_MESSAGE, fake.url, "127.0.0.1", fake.token):
            assert leak not in response.text
        assert len(fake.requests) == attempts

    async def test_account_disconnected_at_the_provider(
        self, client: httpx.AsyncClient, connected: tuple[str, str, str], fake: FakeProvider
    ) -> None:
        group, key, account_id = connected
        fake.account(account_id).state = "disconnected"

        response = await client.get(SAVED_SEARCHES.format(group=group), headers=bearer(key))

        error = assert_error(response, 502, "UPSTREAM_ERROR")
        assert error["details"].startswith("disconnected: ")

    async def test_a_transient_failure_is_retried(
        self, client: httpx.AsyncClient, connected: tuple[str, str, str], fake: FakeProvider
    ) -> None:
        group, key, _ = connected
        fake.fault("503", times=1)

        response = await client.get(LEAD_LISTS.format(group=group), headers=bearer(key))

        assert len(assert_envelope_ok(response)["items"]) == 2
        assert len(fake.requests) == 2


class TestConnectedAccount:
    async def test_http_provider_reads_the_connections_table(
        self, http_app: FastAPI, factory: Factory, engine: AsyncEngine
    ) -> None:
        state = http_app.state.sonarly
        group, lonely = await factory.group(), await factory.group()
        account_id = await connect(engine, group)

        account = await connected_account(state.db, state.provider, group)
        assert account is not None
        assert (account.account_group_id, account.provider_account_id) == (group, account_id)
        assert await connected_account(state.db, state.provider, lonely) is None
        # The provider's own answer agrees (what a job runner asks).
        assert await state.provider.is_connected(group) == account
        assert await state.provider.is_connected(lonely) is None
