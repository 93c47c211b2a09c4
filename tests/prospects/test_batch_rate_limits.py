"""The batch lookup's rate-limit accounting: one unit per provider id, all or nothing; in one
process (memory and Redis storage), across two budgets sharing Redis, and across the worker
processes of a real `sonarly-api serve --workers 2`."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api.app import create_app
from sonarly_api.errors import RateLimited
from sonarly_api.ratelimit import RateLimits
from tests.conftest import PEPPER, Factory, bearer, make_settings, started
from tests.servers import free_port, running, serve_argv, service_env
from tests.support import assert_error, batch_url, post_batch, single_url
from tests.test_rate_limits import redis_url

LIMIT = 5


@pytest.fixture(params=["memory", "redis"])
async def limited_app(request: pytest.FixtureRequest, database_url: str) -> AsyncIterator[FastAPI]:
    """An app allowing LIMIT units per key per minute."""
    storage = "memory://"
    if request.param == "redis":
        storage = redis_url()
        import redis.asyncio as redis

        client = redis.from_url(storage)
        await client.flushdb()  # this run's own database number: earlier windows go
        await client.aclose()
    settings = make_settings(
        database_url, rate_limit=f"{LIMIT}/minute", rate_limit_storage_uri=storage
    )
    async for app in started(create_app(settings)):
        yield app


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def remaining(response: httpx.Response) -> int:
    # Exactly one of each header: the figures of authentication are replaced, not repeated.
    for name in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"):
        assert len(response.headers.get_list(name)) == 1, response.headers
    assert response.headers["x-ratelimit-limit"] == str(LIMIT)
    return int(response.headers["x-ratelimit-remaining"])


class TestOneUnitPerId:
    async def test_a_batch_spends_one_unit_per_id_and_over_budget_spends_nothing(
        self, limited_app: FastAPI, factory: Factory
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        async with client(limited_app) as http:
            three = await post_batch(http, group, ["a", "b", "a"], key)  # a repeat counts too
            refused = await post_batch(http, group, ["a", "b", "c"], key)
            two = await post_batch(http, group, ["a", "b"], key)
            after = await http.get(single_url(group, "a"), headers=bearer(key))

        assert (three.status_code, remaining(three)) == (200, 2)
        error = assert_error(refused, 429, "RATE_LIMITED")
        assert remaining(refused) == 2  # the refused batch took nothing
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert error["details"] == (
            "This API key may make 5 requests per minute, and a batch lookup counts one per "
            "provider id: this one needs 3, 2 are left."
        )
        assert (two.status_code, remaining(two)) == (200, 0)
        assert after.status_code == 429

    async def test_a_batch_larger_than_the_whole_budget_is_refused_and_spends_nothing(
        self, limited_app: FastAPI, factory: Factory
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        async with client(limited_app) as http:
            too_big = await post_batch(http, group, [f"p{i}" for i in range(LIMIT + 1)], key)
            whole = await post_batch(http, group, [f"p{i}" for i in range(LIMIT)], key)

        assert_error(too_big, 429, "RATE_LIMITED")
        assert remaining(too_big) == LIMIT
        assert whole.status_code == 200
        assert len(whole.json()["data"]["items"]) == LIMIT
        assert remaining(whole) == 0

    async def test_an_invalid_body_costs_one_unit_and_a_forbidden_group_the_batchs_cost(
        self, limited_app: FastAPI, factory: Factory
    ) -> None:
        """As a single lookup: a 422 costs the request's unit (its cost is unknown); the
        group grant is checked after the cost (429 before 403 ACCOUNT_GROUP_FORBIDDEN), so
        a batch for a group not granted has spent its ids."""
        group, other = await factory.group(), await factory.group()
        _, key = await factory.key([group])
        async with client(limited_app) as http:
            invalid = await post_batch(http, group, ["a/b", "c"], key)
            forbidden = await post_batch(http, other, ["a", "b"], key)

        assert (invalid.status_code, remaining(invalid)) == (422, LIMIT - 1)
        assert (forbidden.status_code, remaining(forbidden)) == (403, LIMIT - 1 - 2)


class TestOrderOfChecks:
    async def test_an_exhausted_budget_is_429_before_the_body_is_read(
        self, limited_app: FastAPI, factory: Factory
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        async with client(limited_app) as http:
            assert (await post_batch(http, group, ["a"] * LIMIT, key)).status_code == 200
            response = await http.post(batch_url(group), content=b"\xff", headers=bearer(key))

        assert_error(response, 429, "RATE_LIMITED")

    async def test_the_rate_limit_comes_before_the_permission_check(
        self, limited_app: FastAPI, factory: Factory
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group], permissions=("prospecting:read",))
        async with client(limited_app) as http:
            statuses = [
                (await post_batch(http, group, ["a"], key)).status_code for _ in range(LIMIT + 1)
            ]

        assert statuses == [403] * LIMIT + [429]

    async def test_validation_comes_before_the_batchs_cost(
        self, limited_app: FastAPI, factory: Factory
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        async with client(limited_app) as http:
            # LIMIT + 1 ids, the last invalid: its 422 is due before the cost is known.
            response = await post_batch(http, group, ["a"] * LIMIT + ["a b"], key)

        error = assert_error(response, 422, "VALIDATION_ERROR")
        assert error["details"].startswith(f"providerIds[{LIMIT}]:")

    async def test_the_batchs_cost_comes_before_the_group_grant(
        self, limited_app: FastAPI, factory: Factory
    ) -> None:
        group, other = await factory.group(), await factory.group()
        _, key = await factory.key([group])
        async with client(limited_app) as http:
            response = await post_batch(http, other, ["a"] * (LIMIT + 1), key)

        assert_error(response, 429, "RATE_LIMITED")


class TestSharedRedisBudget:
    async def test_two_processes_admit_whole_batches_never_more_than_the_limit(self) -> None:
        """Two RateLimits on one Redis stand for two worker processes, answering batches of
        7 and single requests in turn: all the admitted units fit in the limit; a refused
        batch leaves the count as it was."""
        storage = redis_url()
        import redis.asyncio as redis

        admin = redis.from_url(storage)
        await admin.flushdb()
        workers = [RateLimits(storage, "500/minute", "5/minute") for _ in range(2)]
        admitted = 0
        refused: Counter[int] = Counter()
        try:
            for i in range(200):
                worker = workers[i % 2]
                cost = 7 if i % 3 else 1
                try:
                    spent = await worker.hit_key("shared")
                    await worker.hit_key_more("shared", spent, cost - 1)
                    admitted += cost
                except RateLimited:
                    refused[cost] += 1
            (stored_key,) = await admin.keys("*")
            stored = int(await admin.get(stored_key) or 0)
        finally:
            for worker in workers:
                await worker.close()
            await admin.flushdb()
            await admin.aclose()

        assert stored <= 500
        assert admitted <= stored
        # At most what each process holds back unspent (under a batch's cost) goes unused.
        assert admitted >= 500 - 2 * 6
        assert refused[7] > 0


# --- real worker processes ------------------------------------------------------------------

WORKER_LIMIT = 300
BATCH = 7
REQUESTS = 80
PARALLEL = 16


@pytest.fixture(scope="module")
async def burst(
    database_url: str, engine: AsyncEngine, tmp_path_factory: pytest.TempPathFactory
) -> list[httpx.Response]:
    """REQUESTS batches of BATCH ids with one key, PARALLEL at a time on fresh connections
    (so both workers answer), against `serve --workers 2` with the counters in Redis."""
    storage = redis_url()
    factory = Factory(engine)
    group = await factory.group()
    await factory.prospect(group, "crm-1")
    _, key = await factory.key([group])  # a fresh key: its counter starts at zero
    env = service_env(
        DATABASE_URL=database_url,
        API_KEY_PEPPER=PEPPER,
        RATE_LIMIT=f"{WORKER_LIMIT}/minute",
        RATE_LIMIT_STORAGE_URI=storage,
        LOG_LEVEL="warning",
    )
    port = free_port()
    slots = asyncio.Semaphore(PARALLEL)
    ids = ["crm-1"] + [f"crm-missing-{i}" for i in range(BATCH - 1)]

    async def one(base_url: str) -> httpx.Response:
        async with slots, httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            return await post_batch(http, group, ids, key)

    log = tmp_path_factory.mktemp("batch-burst") / "serve.log"
    with running(serve_argv(port, "--workers", "2"), env, log, port) as server:
        return list(await asyncio.gather(*(one(server.url) for _ in range(REQUESTS))))


def test_workers_admit_whole_batches_within_the_budget(burst: list[httpx.Response]) -> None:
    statuses = Counter(r.status_code for r in burst)
    assert set(statuses) == {200, 429}, statuses
    admitted_ids = statuses[200] * BATCH
    # Never more than the budget; at most a batch's worth held back unspent per worker.
    assert WORKER_LIMIT - 2 * (BATCH - 1) <= admitted_ids <= WORKER_LIMIT, statuses
    for response in burst:
        if response.status_code == 200:
            items = response.json()["data"]["items"]
            assert [i["resolution"] for i in items] == ["unique"] + ["none"] * (BATCH - 1)
        else:
            assert response.json()["data"] is None
            assert response.json()["error"]["code"] == "RATE_LIMITED"
