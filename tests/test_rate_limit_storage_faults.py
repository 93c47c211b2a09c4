"""A rate-limit storage that accepts connections and never answers (a hung Redis, a real TCP
listener here): every call to it is bounded, requests go through uncounted (fail open) with
their X-RateLimit-* headers, one warning per interval is logged, not one per request, and
`sonarly_rate_limit_storage_failures_total` counts the failures."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI

from sonarly_api.app import create_app
from sonarly_api.ratelimit.health import STORAGE_RETRY_SECONDS, STORAGE_TIMEOUT_SECONDS
from tests.conftest import Factory, bearer, client_for, make_settings, started
from tests.outages import SilentServer

ROUNDS = 3
REQUESTS = 20
# Far above a bounded call (STORAGE_TIMEOUT_SECONDS), far below an unbounded one (redis-py
# waits forever without a socket timeout): the test tells a hang from a bound, nothing finer.
HANG = 10.0
WARNING = "rate-limit storage unavailable"


@pytest.fixture
async def silent() -> AsyncIterator[SilentServer]:
    async with SilentServer() as server:
        yield server


@pytest.fixture
async def hung_app(database_url: str, silent: SilentServer) -> AsyncIterator[FastAPI]:
    settings = make_settings(
        database_url,
        rate_limit="600/minute",
        auth_failure_rate_limit="30/minute",
        rate_limit_storage_uri=f"redis://127.0.0.1:{silent.port}/0",
        metrics="open",
    )
    async for app in started(create_app(settings)):
        yield app


async def test_requests_go_through_bounded_with_headers_one_warning_and_a_metric(
    hung_app: FastAPI,
    silent: SilentServer,
    factory: Factory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    group = await factory.group()
    _, key = await factory.key([group])
    path = f"/v1/accounts/{group}/prospects/by-provider-id/none-such"
    caplog.set_level(logging.INFO, logger="sonarly_api.ratelimit")

    async with client_for(hung_app) as http:
        started_at = time.monotonic()
        responses = []
        for _ in range(ROUNDS):  # each round after the storage is tried again
            async with asyncio.timeout(HANG):
                for _ in range(REQUESTS):
                    responses.append(await http.get(path, headers=bearer(key)))
            await asyncio.sleep(STORAGE_RETRY_SECONDS + 0.1)
        elapsed = time.monotonic() - started_at - ROUNDS * (STORAGE_RETRY_SECONDS + 0.1)
        metrics = (await http.get("/metrics")).text

    assert silent.connections >= 1, "the storage was never asked"
    for response in responses:
        assert response.status_code == 200, response.text
        assert response.json()["data"]["resolution"] == "none"
        # The README promises these on every authenticated answer: while failing open they
        # say the limit, the last count this process knew (here: the whole budget) and when
        # that window ends.
        assert response.headers["x-ratelimit-limit"] == "600"
        assert response.headers["x-ratelimit-remaining"] == "600"
        reset = int(response.headers["x-ratelimit-reset"])
        assert time.time() < reset <= time.time() + 61
    # Bounded: at most a few calls wait for their timeout; the rest go through at once.
    assert elapsed < ROUNDS * REQUESTS * STORAGE_TIMEOUT_SECONDS
    warnings = [r for r in caplog.records if r.getMessage().startswith(WARNING)]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert warnings[0].levelno == logging.WARNING
    assert "TimeoutError" in warnings[0].getMessage()
    found = re.search(r"^sonarly_rate_limit_storage_failures_total (\S+)$", metrics, re.M)
    assert found is not None, metrics
    assert float(found.group(1)) >= ROUNDS  # a failure per round, a warning per interval


async def test_failed_authentications_are_not_held_either(
    hung_app: FastAPI, silent: SilentServer
) -> None:
    async with client_for(hung_app) as http, asyncio.timeout(HANG):
        responses = [
            await http.get("/v1/accounts", headers=bearer("sk_live_not-a-key")) for _ in range(10)
        ]

    assert silent.connections >= 1
    assert [r.status_code for r in responses] == [401] * 10
