"""Rate limits: per API key, per client address for failed authentications; memory and Redis."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from sonarly_api.app import create_app
from sonarly_api.auth import keys
from sonarly_api.errors import RateLimited
from sonarly_api.ratelimit import RateLimits
from sonarly_api.ratelimit.counters import MemoryCounters, RedisCounters
from tests.conftest import Factory, bearer, make_settings, started


def redis_url() -> str:
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail("REQUIRE_REDIS=1 but TEST_REDIS_URL is not set")
        pytest.skip("TEST_REDIS_URL is not set: the Redis rate-limit storage is not exercised")
    return url


@pytest.fixture(params=["memory", "redis"])
async def limited_app(request: pytest.FixtureRequest, database_url: str) -> AsyncIterator[FastAPI]:
    """An app allowing 3 requests per key and 3 failed authentications per address."""
    storage = "memory://"
    if request.param == "redis":
        storage = redis_url()
        import redis.asyncio as redis

        client = redis.from_url(storage)
        await client.flushdb()  # a database of its own (…/15): earlier runs' windows go
        await client.aclose()
    settings = make_settings(
        database_url,
        rate_limit="3/minute",
        auth_failure_rate_limit="3/minute",
        rate_limit_storage_uri=storage,
    )
    async for app in started(create_app(settings)):
        yield app


def client(app: FastAPI, address: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def assert_rate_limited(response: httpx.Response, limit: int) -> dict[str, Any]:
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == "RATE_LIMITED"
    assert body["traceId"] == response.headers["x-trace-id"]
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert response.headers["x-ratelimit-limit"] == str(limit)
    assert response.headers["x-ratelimit-remaining"] == "0"
    error: dict[str, Any] = body["error"]
    return error


class TestPerKey:
    async def test_headers_count_down(self, limited_app: FastAPI, factory: Factory) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        async with client(limited_app) as http:
            responses = [await http.get("/v1/accounts", headers=bearer(key)) for _ in range(3)]

        assert [r.status_code for r in responses] == [200, 200, 200]
        assert [r.headers["x-ratelimit-limit"] for r in responses] == ["3", "3", "3"]
        assert [r.headers["x-ratelimit-remaining"] for r in responses] == ["2", "1", "0"]
        reset = int(responses[0].headers["x-ratelimit-reset"])
        assert time.time() < reset <= time.time() + 61

    async def test_over_the_limit_is_429_with_retry_after(
        self, limited_app: FastAPI, factory: Factory
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        path = f"/v1/accounts/{group}/prospects/by-provider-id/p"
        async with client(limited_app) as http:
            for _ in range(3):
                assert (await http.get(path, headers=bearer(key))).status_code == 200
            response = await http.get(path, headers=bearer(key))

        error = assert_rate_limited(response, 3)
        assert error["details"] == "This API key may make 3 requests per minute."

    async def test_one_keys_exhaustion_does_not_limit_another(
        self, limited_app: FastAPI, factory: Factory
    ) -> None:
        group = await factory.group()
        _, spent = await factory.key([group])
        _, fresh = await factory.key([group])
        async with client(limited_app) as http:
            for _ in range(4):
                await http.get("/v1/accounts", headers=bearer(spent))
            assert (await http.get("/v1/accounts", headers=bearer(spent))).status_code == 429
            response = await http.get("/v1/accounts", headers=bearer(fresh))

        assert response.status_code == 200
        assert response.headers["x-ratelimit-remaining"] == "2"

    async def test_rate_limit_comes_before_the_permission_check(
        self, limited_app: FastAPI, factory: Factory
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group], permissions=("prospecting:read",))
        path = f"/v1/accounts/{group}/prospects/by-provider-id/p"
        async with client(limited_app) as http:
            statuses = [(await http.get(path, headers=bearer(key))).status_code for _ in range(4)]

        assert statuses == [403, 403, 403, 429]


class TestFailedAuthentication:
    async def test_guessing_from_one_address_is_slowed(
        self, limited_app: FastAPI, factory: Factory
    ) -> None:
        group = await factory.group()
        _, valid = await factory.key([group])
        async with client(limited_app, "203.0.113.7") as guesser:
            statuses = [
                (await guesser.get("/v1/accounts", headers=bearer(keys.generate_key()))).status_code
                for _ in range(4)
            ]
            # Blocked: even a valid key from that address learns nothing.
            blocked = await guesser.get("/v1/accounts", headers=bearer(valid))
        async with client(limited_app, "198.51.100.9") as other:
            elsewhere = await other.get("/v1/accounts", headers=bearer(valid))

        assert statuses == [401, 401, 401, 429]
        error = assert_rate_limited(blocked, 3)
        assert error["details"] == "Too many failed authentications from this address."
        assert elsewhere.status_code == 200


class TestStorageOutage:
    async def test_unreachable_storage_lets_requests_through(
        self, database_url: str, factory: Factory, caplog: pytest.LogCaptureFixture
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        settings = make_settings(
            database_url, rate_limit="1/minute", rate_limit_storage_uri="redis://127.0.0.1:1/0"
        )
        async for app in started(create_app(settings)):
            async with client(app) as http:
                responses = [await http.get("/v1/accounts", headers=bearer(key)) for _ in range(3)]

        assert [r.status_code for r in responses] == [200, 200, 200]
        # Kept while failing open: the limit, and the whole budget (nothing counted here).
        assert [r.headers["x-ratelimit-limit"] for r in responses] == ["1", "1", "1"]
        assert [r.headers["x-ratelimit-remaining"] for r in responses] == ["1", "1", "1"]
        assert "rate-limit storage unavailable" in caplog.text


class TestSharedBudget:
    async def test_processes_sharing_redis_admit_exactly_the_limit(self) -> None:
        """Two RateLimits on one Redis stand for two worker processes: each spends leases of
        the key's budget, and together they admit the limit, never more."""
        storage = redis_url()
        import redis.asyncio as redis

        client = redis.from_url(storage)
        await client.flushdb()
        await client.aclose()
        workers = [RateLimits(storage, "500/minute", "5/minute") for _ in range(2)]
        admitted = 0
        retry_afters: list[int] = []
        try:
            for i in range(700):
                try:
                    await workers[i % 2].hit_key("shared-key")
                    admitted += 1
                except RateLimited as exc:
                    retry_afters.append(int(exc.headers["Retry-After"]))
        finally:
            for worker in workers:
                await worker.close()

        assert (admitted, len(retry_afters)) == (500, 200)
        assert min(retry_afters) >= 1


class TestMemoryCounters:
    async def test_a_window_counts_until_its_end_then_a_new_one_starts(self) -> None:
        now = [1_000.0]
        counters = MemoryCounters(clock=lambda: now[0])

        first = await counters.add("k", 3, 60, limit=10)
        now[0] = 1_059.9
        same_window = await counters.add("k", 2, 60, limit=10)
        now[0] = 1_060.0
        next_window = await counters.add("k", 1, 60, limit=10)

        assert (first, same_window, next_window) == (
            (3, 3, 1_060.0),
            (5, 2, 1_060.0),
            (1, 1, 1_120.0),
        )

    async def test_a_grant_is_what_is_left_if_at_least_the_need_else_nothing(self) -> None:
        now = [1_000.0]
        counters = MemoryCounters(clock=lambda: now[0])

        never = await counters.add("k", 20, 60, need=11, limit=10)  # more than a window holds
        partial = await counters.add("k", 8, 60, need=2, limit=10)
        refused = await counters.add("k", 5, 60, need=3, limit=10)  # 2 left, 3 needed
        rest = await counters.add("k", 5, 60, need=2, limit=10)

        assert never == (0, 0, 1_060.0)  # and no window started by it:
        assert partial == (8, 8, 1_060.0)
        assert refused == (8, 0, 1_060.0)
        assert rest == (10, 2, 1_060.0)

    async def test_ended_windows_are_forgotten_and_live_ones_kept(self) -> None:
        now = [0.0]
        counters = MemoryCounters(clock=lambda: now[0])
        for i in range(5_000):
            await counters.add(f"old-{i}", 1, 60, limit=100)
        await counters.add("live", 7, 600, limit=100)

        now[0] = 61.0  # every old-* window has ended; "live" has not
        for i in range(4_000):  # enough new windows to reach the next sweep
            await counters.add(f"new-{i}", 1, 60, limit=100)

        assert len(counters) == 4_001  # the new windows and "live": nothing that ended
        assert await counters.add("live", 1, 600, limit=100) == (8, 1, 600.0)


class TestRedisCounters:
    async def test_a_burst_of_increments_shares_round_trips_and_each_gets_its_own_window(
        self,
    ) -> None:
        import redis.asyncio as redis

        url = redis_url()
        admin = redis.from_url(url)
        await admin.flushdb()
        counters = RedisCounters(url)
        try:
            await counters.add("warm", 1, 60, limit=1000)  # loads the script
            before = await admin.info("commandstats")
            started = time.time()
            # More at once than redis-py's pool has connections (100): one command per
            # increment used to fail past that.
            results = await asyncio.gather(
                *(counters.add(f"k{i}", i + 1, 60, limit=1000) for i in range(300))
            )
            again = await counters.add("k7", 5, 60, limit=1000)
            after = await admin.info("commandstats")
        finally:
            await counters.close()
            await admin.flushdb()
            await admin.aclose()

        assert [(count, granted) for count, granted, _ in results] == [
            (i + 1, i + 1) for i in range(300)
        ]
        assert all(started + 59 < end <= time.time() + 60 for *_, end in results)
        assert again[:2] == (8 + 5, 5)  # k7 counted 8, then 5 more in the same window
        assert abs(again[2] - results[7][2]) < 1
        calls = after["cmdstat_evalsha"]["calls"] - before["cmdstat_evalsha"]["calls"]
        assert calls <= 3  # the burst in one or two batches, then the lone increment

    async def test_a_grant_is_all_or_nothing_and_a_refusal_starts_no_window(self) -> None:
        import redis.asyncio as redis

        url = redis_url()
        admin = redis.from_url(url)
        await admin.flushdb()
        counters = RedisCounters(url)
        try:
            never = await counters.add("k", 20, 60, need=11, limit=10)
            exists_after_refusal = await admin.exists("k")
            partial = await counters.add("k", 8, 60, need=2, limit=10)
            refused = await counters.add("k", 5, 60, need=3, limit=10)
            rest = await counters.add("k", 5, 60, need=2, limit=10)
            stored = await admin.get("k")
        finally:
            await counters.close()
            await admin.flushdb()
            await admin.aclose()

        assert (never[:2], exists_after_refusal) == ((0, 0), 0)
        assert (partial[:2], refused[:2], rest[:2]) == ((8, 8), (8, 0), (10, 2))
        assert stored == b"10"  # never above the limit
