"""check_sales_navigator_source: what a `sales_navigator` job start will call (wired at merge),
against the real fake provider through the app's HTTP provider."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api.app import create_app
from sonarly_api.errors import AppError
from sonarly_api.ids import new_id
from sonarly_api.linkedin import repository
from sonarly_api.linkedin.service import check_sales_navigator_source
from sonarly_api.providers.base import ProviderAccount
from tests.conftest import Factory, make_settings, started
from tests.fakeprovider import FakeProvider, running_fake_provider


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
    )
    async for app in started(create_app(settings)):
        yield app


@pytest.fixture
async def group(factory: Factory, engine: AsyncEngine, fake: FakeProvider) -> str:
    group = await factory.group()
    account = f"acc-{new_id()}"
    async with engine.begin() as conn:
        await repository.connect(conn, group, account)
    fake.account(account).lead_lists = {"ll-1": ("CTOs", [])}
    fake.account(account).saved_searches = {"ss-1": ("Founders", [])}
    return group


async def check(app: FastAPI, group: str, **source: str) -> ProviderAccount:
    state = app.state.sonarly
    return await check_sales_navigator_source(state.db, state.provider, group, **source)


async def refused(app: FastAPI, group: str, **source: str) -> AppError:
    with pytest.raises(AppError) as caught:
        await check(app, group, **source)
    return caught.value


async def test_listed_ids_pass(http_app: FastAPI, group: str) -> None:
    account = await check(http_app, group, lead_list_id="ll-1")

    assert account.account_group_id == group
    assert (await check(http_app, group, saved_search_id="ss-1")) == account


async def test_unlisted_id_is_a_400_naming_the_field(http_app: FastAPI, group: str) -> None:
    error = await refused(http_app, group, lead_list_id="ss-1")  # a saved search's id

    assert (error.status, error.code) == (400, "VALIDATION_ERROR")
    assert error.details is not None
    assert error.details.startswith("leadListId: not one of the account group's")
    error = await refused(http_app, group, saved_search_id="ll-1")
    assert error.details is not None
    assert error.details.startswith("savedSearchId: ")


async def test_not_connected_is_a_409(http_app: FastAPI, factory: Factory) -> None:
    error = await refused(http_app, await factory.group(), lead_list_id="ll-1")

    assert (error.status, error.code) == (409, "LINKEDIN_NOT_CONNECTED")


async def test_provider_failure_is_a_502(http_app: FastAPI, group: str, fake: FakeProvider) -> None:
    fake.fault("disconnected")

    error = await refused(http_app, group, saved_search_id="ss-1")

    assert (error.status, error.code) == (502, "UPSTREAM_ERROR")
    assert error.details is not None
    assert error.details.startswith("disconnected: ")
