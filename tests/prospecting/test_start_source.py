"""A job start checks its source against the provider: a connected LinkedIn account for the
sources that need one, a Sales Navigator id among the group's listings, 502 when the provider
cannot say — in the contract's order of checks, and never for an idempotent replay. Through the
app with PROVIDER=http against the real fake provider (tests/fakeprovider.py), and with the
sandbox (every group connected)."""

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
from tests.conftest import Factory, client_for, make_settings, started
from tests.fakeprovider import RAW_MESSAGE, FakeProvider, running_fake_provider
from tests.support import (
    SEARCH_URL,
    Tenant,
    assert_error,
    balance,
    count_jobs,
    sandbox_listing_id,
    start,
    tenant,
)

POST_URL = "https://www.linkedin.com/posts/avery-stone_launch-123"
LINKEDIN_SOURCES: list[dict[str, Any]] = [
    {"source": "linkedin_search", "searchUrl": SEARCH_URL},
    {"source": "post_commenters", "postUrl": POST_URL},
    {"source": "sales_navigator", "leadListId": "ll-1"},
    {"source": "sales_navigator", "savedSearchId": "ss-1"},
]
URL_UPLOAD = {"source": "url_upload", "profileUrls": ["https://www.linkedin.com/in/avery-stone"]}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeProvider]:
    with running_fake_provider() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeProvider) -> FakeProvider:
    server.reset()
    return server


@pytest.fixture(scope="module")
async def http_app(database_url: str, server: FakeProvider) -> AsyncIterator[FastAPI]:
    settings = make_settings(
        database_url,
        provider="http",
        provider_url=server.url,
        provider_token=server.token,
        provider_timeout_seconds=0.3,
        provider_max_attempts=2,
        provider_listing_deadline_seconds=2.0,
    )
    async for app in started(create_app(settings)):
        yield app


@pytest.fixture
async def http(http_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(http_app) as client:
        yield client


async def connected(factory: Factory, engine: AsyncEngine, fake: FakeProvider, **kw: Any) -> Tenant:
    """A tenant whose group is connected to a provider account with lead list ll-1 and saved
    search ss-1."""
    who = await tenant(factory, **kw)
    account_id = f"acc-{new_id()}"
    async with engine.begin() as conn:
        await repository.connect(conn, who.group, account_id)
    account = fake.account(account_id)
    account.lead_lists["ll-1"] = ("CTOs", [])
    account.saved_searches["ss-1"] = ("Founders", [])
    return who


class TestLinkedInNotConnected:
    @pytest.mark.parametrize("body", LINKEDIN_SOURCES, ids=lambda b: next(iter(b.values())))
    async def test_409_without_a_connected_account(
        self,
        http: httpx.AsyncClient,
        factory: Factory,
        engine: AsyncEngine,
        fake: FakeProvider,
        body: dict[str, Any],
    ) -> None:
        who = await tenant(factory, credits=1000)

        response = await start(http, who, {**body, "maxResults": 10})

        error = assert_error(response, 409, "LINKEDIN_NOT_CONNECTED")
        assert "sonarly-api linkedin connect" in error["details"]
        assert await count_jobs(engine, who.group) == 0
        assert await balance(engine, who.group) == (1000, 0)  # nothing reserved
        assert fake.requests == []  # no account: nothing to ask the provider

    async def test_url_upload_needs_no_account(
        self, http: httpx.AsyncClient, factory: Factory, fake: FakeProvider
    ) -> None:
        who = await tenant(factory)

        response = await start(http, who, URL_UPLOAD)

        assert response.status_code == 202, response.text

    @pytest.mark.parametrize("body", LINKEDIN_SOURCES[:2], ids=["search", "post"])
    async def test_a_connected_group_starts(
        self,
        http: httpx.AsyncClient,
        factory: Factory,
        engine: AsyncEngine,
        fake: FakeProvider,
        body: dict[str, Any],
    ) -> None:
        who = await connected(factory, engine, fake)

        response = await start(http, who, {**body, "maxResults": 10})

        assert response.status_code == 202, response.text
        assert fake.requests == []  # searches and posts are not checked at start


class TestSalesNavigatorIds:
    @pytest.mark.parametrize(
        ("field", "listing"),
        [("leadListId", "lead-lists"), ("savedSearchId", "saved-searches")],
    )
    async def test_a_listed_id_starts_and_another_is_400(
        self,
        http: httpx.AsyncClient,
        factory: Factory,
        engine: AsyncEngine,
        fake: FakeProvider,
        field: str,
        listing: str,
    ) -> None:
        who = await connected(factory, engine, fake, credits=1000)
        listed = "ll-1" if field == "leadListId" else "ss-1"

        ok = await start(http, who, {"source": "sales_navigator", field: listed, "maxResults": 5})
        wrong = await start(
            http, who, {"source": "sales_navigator", field: "nope", "maxResults": 5}
        )

        assert ok.status_code == 202, ok.text
        error = assert_error(wrong, 400, "VALIDATION_ERROR")
        assert error["details"].startswith(f"{field}: not one of the account group's")
        assert listing in error["details"]
        assert await count_jobs(engine, who.group) == 1
        assert await balance(engine, who.group) == (1000, 5)  # only the first job's
        assert [r.path.rsplit("/", 1)[1] for r in fake.requests] == [listing, listing]
        assert all(r.headers["authorization"] == f"Bearer {fake.token}" for r in fake.requests)

    @pytest.mark.parametrize(
        ("fault", "failure"),
        [("500", "bad_answer"), ("malformed", "bad_answer"), ("drop", "refused")],
    )
    async def test_502_when_the_provider_fails(
        self,
        http: httpx.AsyncClient,
        factory: Factory,
        engine: AsyncEngine,
        fake: FakeProvider,
        fault: Any,
        failure: str,
    ) -> None:
        who = await connected(factory, engine, fake, credits=1000)
        fake.fault(fault, times=None)

        response = await start(http, who, {"source": "sales_navigator", "leadListId": "ll-1"})

        error = assert_error(response, 502, "UPSTREAM_ERROR")
        assert error["details"].startswith(f"{failure}: ")
        assert RAW_MESSAGE not in response.text
        assert fake.url not in response.text
        assert await count_jobs(engine, who.group) == 0
        assert await balance(engine, who.group) == (1000, 0)

    async def test_a_disconnected_account_is_502(
        self, http: httpx.AsyncClient, factory: Factory, engine: AsyncEngine, fake: FakeProvider
    ) -> None:
        who = await connected(factory, engine, fake)
        fake.fault("disconnected", times=None)

        response = await start(http, who, {"source": "sales_navigator", "leadListId": "ll-1"})

        error = assert_error(response, 502, "UPSTREAM_ERROR")
        assert error["details"].startswith("disconnected: ")


class TestOrderOfChecks:
    async def test_the_body_before_the_connection(
        self, http: httpx.AsyncClient, factory: Factory, fake: FakeProvider
    ) -> None:
        who = await tenant(factory, plan="tester")
        bad = await start(http, who, {"source": "linkedin_search"})
        over_cap = await start(http, who, {**LINKEDIN_SOURCES[0], "maxResults": 101})

        assert "searchUrl" in assert_error(bad, 400, "VALIDATION_ERROR")["details"]
        assert "100" in assert_error(over_cap, 400, "VALIDATION_ERROR")["details"]

    async def test_the_connection_and_the_listing_before_credits(
        self, http: httpx.AsyncClient, factory: Factory, engine: AsyncEngine, fake: FakeProvider
    ) -> None:
        poor = await tenant(factory, credits=0)
        poor_connected = await connected(factory, engine, fake, credits=0)

        unconnected = await start(http, poor, LINKEDIN_SOURCES[0])
        unlisted = await start(
            http, poor_connected, {"source": "sales_navigator", "leadListId": "x"}
        )
        listed = await start(
            http, poor_connected, {"source": "sales_navigator", "leadListId": "ll-1"}
        )

        assert_error(unconnected, 409, "LINKEDIN_NOT_CONNECTED")
        assert_error(unlisted, 400, "VALIDATION_ERROR")
        assert_error(listed, 402, "INSUFFICIENT_CREDITS")

    async def test_a_replay_does_not_ask_the_provider(
        self, http: httpx.AsyncClient, factory: Factory, engine: AsyncEngine, fake: FakeProvider
    ) -> None:
        who = await connected(factory, engine, fake)
        body = {"source": "sales_navigator", "leadListId": "ll-1", "maxResults": 5}
        first = await start(http, who, body, idempotency_key="weekly")
        asked = len(fake.requests)
        fake.fault("500", times=None)  # the provider is down now: a replay does not care

        again = await start(http, who, body, idempotency_key="weekly")
        other = await start(http, who, {**body, "maxResults": 6}, idempotency_key="weekly")

        assert first.status_code == 202, first.text
        assert again.status_code == 202, again.text
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json()["data"]["jobId"] == first.json()["data"]["jobId"]
        assert_error(other, 409, "IDEMPOTENCY_KEY_REUSED")
        assert (asked, len(fake.requests)) == (1, 1)
        assert await count_jobs(engine, who.group) == 1


class TestSandbox:
    """The sandbox counts every group as connected; its listings are still checked."""

    async def test_listed_ids_start_and_others_are_400(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        who = await tenant(factory)
        lead_list = await sandbox_listing_id(who.group, "leadListId")
        other_group = await factory.group()
        elsewhere = await sandbox_listing_id(other_group, "leadListId")

        ok = await start(client, who, {"source": "sales_navigator", "leadListId": lead_list})
        wrong = await start(client, who, {"source": "sales_navigator", "leadListId": elsewhere})
        search = await start(client, who, {**LINKEDIN_SOURCES[0], "maxResults": 5})

        assert ok.status_code == 202, ok.text
        assert search.status_code == 202, search.text
        assert "leadListId" in assert_error(wrong, 400, "VALIDATION_ERROR")["details"]
