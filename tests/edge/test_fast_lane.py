"""The lookup's fast lane answers exactly as the framework's stack does, case by case of the
contract; and what the lane cannot serve is refused when the route is declared."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi import routing as fastapi_routing
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.requests import Request

from sonarly_api.app import create_app
from sonarly_api.auth import keys
from sonarly_api.config import Settings
from sonarly_api.migrations import upgrade
from sonarly_api.routing import DirectRoute, FastLane, check_fast_lane, direct_routes
from tests.conftest import Factory, bearer, client_for, make_settings, started
from tests.edge.conftest import without_fast_lane

Case = tuple[str, str, dict[str, str]]  # (method, path, headers)


def lookup(group: str, provider_id: str) -> str:
    return f"/v1/accounts/{group}/prospects/by-provider-id/{provider_id}"


def bad_checksum(key: str) -> str:
    return key[:-1] + ("A" if key[-1] != "A" else "B")


def comparable(response: httpx.Response) -> tuple[int, Any, dict[str, str]]:
    body = response.json() if response.content else None
    if body is not None:
        assert body.pop("traceId") == response.headers["x-trace-id"]
    headers = dict(response.headers)
    del headers["x-trace-id"]
    # Each app counts its own window, started by its own first request: a second apart at most.
    reset = headers.pop("x-ratelimit-reset", None)
    if reset is not None:
        headers["x-ratelimit-reset"] = "present"
    return response.status_code, body, headers


async def assert_same(lane: httpx.AsyncClient, stack: httpx.AsyncClient, cases: list[Case]) -> None:
    for method, path, headers in cases:
        by_lane = await lane.request(method, path, headers=headers)
        by_stack = await stack.request(method, path, headers=headers)
        assert comparable(by_lane) == comparable(by_stack), (method, path, headers)


@pytest.fixture
async def clients(app: FastAPI, stack_app: FastAPI) -> AsyncIterator[Any]:
    assert isinstance(app.middleware_stack, FastLane)
    assert not isinstance(stack_app.middleware_stack, FastLane)
    async with client_for(app) as lane, client_for(stack_app) as stack:
        yield lane, stack


async def test_every_lookup_case_answers_alike(clients: Any, factory: Factory) -> None:
    lane, stack = clients
    group, other_group = await factory.group(), await factory.group()
    _, key = await factory.key([group])
    _, no_permission = await factory.key([group], permissions=("prospecting:read",))
    revoked_id, revoked = await factory.key([group])
    await factory.revoke(revoked_id)
    _, expired = await factory.key([group], expires_in_seconds=-60)
    await factory.prospect(group, "one", name="Ada", company_name="Acme", title="CTO")
    await factory.prospect(group, "two")
    await factory.prospect(group, "two")
    await factory.prospect(other_group, "elsewhere")
    ok = bearer(key)
    cases: list[Case] = [
        # each resolution
        ("GET", lookup(group, "nobody"), ok),
        ("GET", lookup(group, "one"), ok),
        ("GET", lookup(group, "two"), ok),
        ("GET", lookup(group, "elsewhere"), ok),
        ("GET", lookup(group.upper(), "one"), ok),
        # each 401
        ("GET", lookup(group, "one"), {}),
        ("GET", lookup(group, "one"), {"Authorization": f"Basic {key}"}),
        ("GET", lookup(group, "one"), bearer("sk_live_short")),
        ("GET", lookup(group, "one"), bearer(bad_checksum(key))),
        ("GET", lookup(group, "one"), bearer(keys.generate_key())),
        ("GET", lookup(group, "one"), bearer(revoked)),
        ("GET", lookup(group, "one"), bearer(expired)),
        # both 403s
        ("GET", lookup(group, "one"), bearer(no_permission)),
        ("GET", lookup(other_group, "elsewhere"), ok),
        # the 422s
        ("GET", lookup("not-an-id", "one"), ok),
        ("GET", lookup(group, "a" * 257), ok),
        ("GET", lookup(group, "a%20b"), ok),
        ("GET", lookup(group, "a%2Fb"), ok),
        ("GET", lookup(group, "a%0Ab"), ok),
        ("GET", lookup(group, "x%ff"), ok),
        # 405, HEAD, and requests the guard refuses
        ("POST", lookup(group, "one"), ok),
        ("DELETE", lookup(group, "one"), ok),
        ("HEAD", lookup(group, "one"), ok),
        ("HEAD", lookup(group, "one"), {}),
    ]
    await assert_same(lane, stack, cases)
    duplicated = [("Authorization", f"Bearer {key}"), ("Authorization", f"Bearer {key}")]
    by_lane = await lane.get(lookup(group, "one"), headers=duplicated)
    by_stack = await stack.get(lookup(group, "one"), headers=duplicated)
    assert comparable(by_lane) == comparable(by_stack)
    assert by_lane.status_code == 400


@pytest.fixture(scope="module")
def other_database(create_database: Callable[[], str]) -> str:
    url = create_database()
    upgrade(url)
    return url


async def test_a_500_answers_alike(other_database: str) -> None:
    # A database whose prospects table went missing: an error no handler expects.
    url = other_database
    engine = create_async_engine(url)
    try:
        factory = Factory(engine)
        group = await factory.group()
        _, key = await factory.key([group])
        async with engine.begin() as conn:
            await conn.execute(text("ALTER TABLE prospects RENAME TO prospects_gone"))
    finally:
        await engine.dispose()
    settings: Settings = make_settings(url)
    async for lane_app in started(create_app(settings)):
        async for stack_app in started(without_fast_lane(create_app(settings))):
            async with client_for(lane_app) as lane, client_for(stack_app) as stack:
                cases: list[Case] = [("GET", lookup(group, "one"), bearer(key))]
                await assert_same(lane, stack, cases)
                response = await lane.get(lookup(group, "one"), headers=bearer(key))
                assert response.status_code == 500
                assert response.json()["error"]["code"] == "INTERNAL_ERROR"


class TestRefusedAtDeclaration:
    @staticmethod
    def declare(dependency: Any, endpoint_is_async: bool = True) -> None:
        router = APIRouter(route_class=DirectRoute)

        # Defaults, not Annotated: the annotations are strings here (PEP 563), and FastAPI
        # could not resolve a local `dependency` from them.
        async def endpoint(principal: Any = Depends(dependency)) -> Any:  # noqa: B008
            return principal

        def sync_endpoint(principal: Any = Depends(dependency)) -> Any:  # noqa: B008
            return principal

        router.get("/x")(endpoint if endpoint_is_async else sync_endpoint)

    def test_a_sync_dependency(self) -> None:
        def dependency(request: Request) -> int:
            return 1

        with pytest.raises(TypeError, match="must be an `async def` without `yield`"):
            self.declare(dependency)

    def test_a_yield_dependency(self) -> None:
        def dependency(request: Request) -> Any:
            yield 1

        with pytest.raises(TypeError, match="must be an `async def` without `yield`"):
            self.declare(dependency)

    def test_an_async_yield_dependency(self) -> None:
        async def dependency(request: Request) -> Any:
            yield 1

        with pytest.raises(TypeError, match="must be an `async def` without `yield`"):
            self.declare(dependency)

    def test_a_sync_endpoint(self) -> None:
        async def dependency(request: Request) -> int:
            return 1

        with pytest.raises(TypeError, match="endpoint must be an `async def`"):
            self.declare(dependency, endpoint_is_async=False)

    def test_an_async_dependency_is_served(self) -> None:
        async def dependency(request: Request) -> int:
            return 1

        self.declare(dependency)

    def test_a_fastapi_without_the_private_name(self, monkeypatch: pytest.MonkeyPatch) -> None:
        async def dependency(request: Request) -> int:
            return 1

        monkeypatch.delattr(fastapi_routing, "_effective_route_context_var")
        with pytest.raises(RuntimeError, match=r"install the FastAPI version pyproject\.toml pins"):
            self.declare(dependency)

    def test_dependencies_added_by_include_router(self) -> None:
        async def dependency(request: Request) -> int:
            return 1

        router = APIRouter(route_class=DirectRoute)

        @router.get("/x")
        async def endpoint(request: Request) -> int:
            return 1

        app = FastAPI()
        app.include_router(router, dependencies=[Depends(dependency)])
        with pytest.raises(TypeError, match="include_router"):
            check_fast_lane(app.router, direct_routes(router))
        app = FastAPI(dependencies=[Depends(dependency)])
        app.include_router(router)
        with pytest.raises(TypeError, match="app-level dependencies"):
            check_fast_lane(app.router, direct_routes(router))
