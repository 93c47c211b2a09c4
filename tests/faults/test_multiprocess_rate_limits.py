"""One key's budget holds across worker processes: `sonarly-api serve --workers 2` with the
counters in Redis, hammered with parallel requests on fresh connections (so both workers
answer). No more than RATE_LIMIT requests may pass (per-process counters would let up to twice
as many through), and all of it is usable: one lease reservation in flight per key and process,
so no worker strands budget another one needs."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from dataclasses import dataclass

import httpx
import psutil
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import PEPPER, Factory
from tests.servers import free_port, running, serve_argv, service_env

LIMIT = 50
REQUESTS = 160
PARALLEL = 16


def redis_url() -> str:
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail("REQUIRE_REDIS=1 but TEST_REDIS_URL is not set")
        pytest.skip("TEST_REDIS_URL is not set: the shared Redis budget is not exercised")
    return url


@dataclass(frozen=True)
class Burst:
    responses: list[httpx.Response]
    workers: int

    @property
    def statuses(self) -> Counter[int]:
        return Counter(r.status_code for r in self.responses)


@pytest.fixture(scope="module")
async def burst(
    database_url: str, engine: AsyncEngine, tmp_path_factory: pytest.TempPathFactory
) -> Burst:
    """REQUESTS lookups with one key, PARALLEL at a time, against two workers."""
    storage = redis_url()
    factory = Factory(engine)
    group = await factory.group()
    # A fresh key: its counter starts at zero whatever other runs left in this Redis database.
    _, key = await factory.key([group])
    env = service_env(
        # The run's database (on TEST_DATABASE_URL's server, or the embedded test server's
        # socket): several workers need a database they do not own.
        DATABASE_URL=database_url,
        API_KEY_PEPPER=PEPPER,
        RATE_LIMIT=f"{LIMIT}/minute",
        RATE_LIMIT_STORAGE_URI=storage,
        LOG_LEVEL="warning",
    )
    port = free_port()
    lookup = f"/v1/accounts/{group}/prospects/by-provider-id/crm-1"
    headers = {"Authorization": f"Bearer {key}"}
    slots = asyncio.Semaphore(PARALLEL)

    async def one(base_url: str) -> httpx.Response:
        # A new connection per request: the kernel spreads accepts over both workers.
        async with slots, httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            return await http.get(lookup, headers=headers)

    log = tmp_path_factory.mktemp("burst") / "serve.log"
    with running(serve_argv(port, "--workers", "2"), env, log, port) as server:
        responses = await asyncio.gather(*(one(server.url) for _ in range(REQUESTS)))
        children = psutil.Process(server.proc.pid).children(recursive=True)
        # Python children still serving after the burst (uvicorn may add a helper process).
        workers = [c for c in children if c.is_running() and "python" in c.name().lower()]
    return Burst(responses, len(workers))


def test_never_more_than_the_budget(burst: Burst) -> None:
    assert burst.workers >= 2
    statuses = burst.statuses
    print(f"\nburst: {dict(statuses)} over {burst.workers} workers")  # `pytest -s`
    assert set(statuses) == {200, 429}, statuses
    # The claim: however the requests spread over the workers, no more than the budget passes
    # (no tolerance: the storage's increment is atomic).
    assert 0 < statuses[200] <= LIMIT, statuses
    limited = next(r for r in burst.responses if r.status_code == 429)
    assert limited.json()["error"]["code"] == "RATE_LIMITED"
    assert limited.headers["x-ratelimit-limit"] == str(LIMIT)
    assert 1 <= int(limited.headers["retry-after"]) <= 60


def test_the_whole_budget_is_usable(burst: Burst) -> None:
    assert burst.statuses == {200: LIMIT, 429: REQUESTS - LIMIT}
