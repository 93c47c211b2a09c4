"""The job endpoints over a real uvicorn (headers as a real server sends them, concurrent
connections), and the rate limit's place in the order of checks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from sonarly_api.app import create_app
from tests.conftest import PEPPER, Factory, client_for, make_settings, started
from tests.prospecting.test_start import error_of
from tests.servers import Server, free_port, running, service_env, uvicorn_argv
from tests.support import count_jobs, sandbox_listing_id, search_body, tenant


@pytest.fixture(scope="module")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = service_env(DATABASE_URL=database_url, API_KEY_PEPPER=PEPPER)
    port = free_port()
    log = tmp_path_factory.mktemp("jobs-server") / "server.log"
    with running(uvicorn_argv(port), env, log, port) as served:
        yield served


class TestOverHttp:
    async def test_start_poll_list_cancel(self, server: Server, factory: Factory) -> None:
        who = await tenant(factory, credits=1000)
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            started_ = await http.post(
                who.jobs, json=search_body(maxResults=25), headers=who.headers
            )
            location = started_.headers["location"]
            polled = await http.get(location, headers=who.headers)
            listed = await http.get(who.jobs, params={"cursor": ""}, headers=who.headers)
            cancelled = await http.post(location + "/cancel", headers=who.headers)
            again = await http.post(location + "/cancel", headers=who.headers)

        assert started_.status_code == 202, started_.text
        job_id = started_.json()["data"]["jobId"]
        assert location == f"{who.jobs}/{job_id}"
        assert started_.headers["retry-after"].isdigit()
        assert started_.headers["content-type"] == "application/json"
        assert started_.headers["cache-control"] == "no-store"
        assert (polled.status_code, polled.json()["data"]["status"]) == (200, "queued")
        assert polled.headers["retry-after"].isdigit()
        assert [i["jobId"] for i in listed.json()["data"]["items"]] == [job_id]
        assert cancelled.json()["data"] == {"jobId": job_id, "status": "cancelled"}
        assert again.status_code == 422

    async def test_a_body_sent_as_curl_d_sends_it(self, server: Server, factory: Factory) -> None:
        """`curl -d` labels the body application/x-www-form-urlencoded: still read as JSON."""
        who = await tenant(factory)
        lead_list = await sandbox_listing_id(who.group, "leadListId")
        body = b'{"source": "sales_navigator", "leadListId": "%s", "maxResults": 5}' % (
            lead_list.encode()
        )
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            response = await http.post(
                who.jobs,
                content=body,
                headers={**who.headers, "Content-Type": "application/x-www-form-urlencoded"},
            )

        assert response.status_code == 202, response.text

    async def test_errors_in_the_envelope(self, server: Server, factory: Factory) -> None:
        who = await tenant(factory)
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            unauthenticated = await http.post(who.jobs, content=b"{")
            not_json = await http.post(who.jobs, content=b"{", headers=who.headers)
            missing = await http.get(f"{who.jobs}/{'0' * 24}", headers=who.headers)

        assert unauthenticated.status_code == 401
        assert unauthenticated.headers["www-authenticate"] == "Bearer"
        assert (not_json.status_code, error_of(not_json)["code"]) == (400, "VALIDATION_ERROR")
        assert (missing.status_code, error_of(missing)["code"]) == (404, "NOT_FOUND")
        for response in (unauthenticated, not_json, missing):
            assert response.headers["x-trace-id"] == response.json()["traceId"]

    async def test_twenty_concurrent_connections_with_one_idempotency_key(
        self, server: Server, factory: Factory
    ) -> None:
        who = await tenant(factory, credits=1000)
        headers = {**who.headers, "Idempotency-Key": "over-http"}
        limits = httpx.Limits(max_connections=20)
        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as http:
            responses = await asyncio.gather(
                *(
                    http.post(who.jobs, json=search_body(maxResults=10), headers=headers)
                    for _ in range(20)
                )
            )

        assert [r.status_code for r in responses] == [202] * 20
        assert len({r.json()["data"]["jobId"] for r in responses}) == 1
        assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 19
        assert await count_jobs(factory.engine, who.group) == 1


@pytest.fixture
async def strict_app(database_url: str) -> AsyncIterator[FastAPI]:
    async for app in started(create_app(make_settings(database_url, rate_limit="2/minute"))):
        yield app


class TestRateLimit:
    async def test_429_before_permission_path_and_body_checks(
        self, strict_app: FastAPI, factory: Factory, tmp_path: Path
    ) -> None:
        who = await tenant(factory, permissions=("prospecting:read",))
        async with client_for(strict_app) as client:
            for _ in range(2):
                assert (await client.get(who.jobs, headers=who.headers)).status_code == 200
            limited = await client.post(
                "/v1/accounts/bad/prospecting", content=b"{", headers=who.headers
            )

        assert limited.status_code == 429
        assert error_of(limited)["code"] == "RATE_LIMITED"
        assert int(limited.headers["retry-after"]) >= 1
