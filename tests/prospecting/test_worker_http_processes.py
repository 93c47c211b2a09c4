"""PROVIDER=http in real processes: `serve`'s in-process worker and `sonarly-api worker` both
build the provider with the database, so they read the groups' LinkedIn connections and run
jobs against the (real) fake provider."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from sonarly_api.ids import new_id
from sonarly_api.linkedin import repository
from sonarly_api.migrations import upgrade
from tests.conftest import PEPPER, Factory
from tests.fakeprovider import FakeProvider, make_profiles, running_fake_provider
from tests.servers import free_port, running, serve_argv, service_env
from tests.support import (
    SEARCH_URL,
    Tenant,
    job_path,
    job_state,
    new_job,
    search_source,
    tenant,
    wait_until,
    worker_process,
)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with running_fake_provider() as server:
        yield server


@pytest.fixture
async def fresh(create_database: Callable[..., str]) -> str:
    """A database of its own: the workers below take no other test's queued jobs."""
    url = await asyncio.to_thread(create_database, "sonarly_http_workers")
    await asyncio.to_thread(upgrade, url)
    return url


def http_env(fake: FakeProvider) -> dict[str, str]:
    return {
        "PROVIDER": "http",
        "PROVIDER_URL": fake.url,
        "PROVIDER_TOKEN": fake.token,
        "PROVIDER_TIMEOUT_SECONDS": "2",
    }


async def connected_search(
    engine: AsyncEngine, fake: FakeProvider, size: int
) -> tuple[Tenant, dict[str, Any]]:
    who = await tenant(Factory(engine), credits=1_000)
    account_id = f"acc-{new_id()}"
    async with engine.begin() as conn:
        await repository.connect(conn, who.group, account_id)
    url = f"{SEARCH_URL}&q={who.group}"
    fake.account(account_id).searches[url] = make_profiles(who.group[-6:], size)
    return who, search_source(url)


class TestHttpProviderInProcesses:
    async def test_serve_runs_a_job_through_the_http_provider(
        self, fresh: str, fake: FakeProvider, tmp_path: Path
    ) -> None:
        engine = create_async_engine(fresh)
        try:
            who, source = await connected_search(engine, fake, 40)
        finally:
            await engine.dispose()
        port = free_port()
        env = service_env(
            DATABASE_URL=fresh, API_KEY_PEPPER=PEPPER, DEMO_DATA="false", **http_env(fake)
        )
        with running(serve_argv(port), env, tmp_path / "serve.log", port) as server:
            async with httpx.AsyncClient(base_url=server.url) as http:
                started = await http.post(
                    who.jobs, json={**source, "maxResults": 50}, headers=who.headers
                )
                assert started.status_code == 202, started.text
                job_id = started.json()["data"]["jobId"]

                async def finished() -> bool:
                    got = await http.get(job_path(who.group, job_id), headers=who.headers)
                    return got.json()["data"]["status"] not in ("queued", "running")

                await wait_until(finished, 60, "the job to finish", every=0.2)
                data = (await http.get(job_path(who.group, job_id), headers=who.headers)).json()

        assert data["data"]["status"] == "completed", data
        assert data["data"]["counts"]["found"] == 40
        assert data["data"]["credits"] == {"reserved": 50, "charged": 40}
        assert any(r.headers["authorization"] == f"Bearer {fake.token}" for r in fake.requests)

    async def test_the_worker_command_reads_the_connections(
        self, fresh: str, fake: FakeProvider, tmp_path: Path
    ) -> None:
        engine = create_async_engine(fresh)
        try:
            who, source = await connected_search(engine, fake, 30)
            unconnected = await tenant(Factory(engine), credits=1_000)
            ok = await new_job(engine, who.group, source, max_results=50)
            refused = await new_job(engine, unconnected.group, source, max_results=50)
            # No API queued these: the worker's reconcile loop does, within seconds.
            settings = http_env(fake)
            with worker_process(
                fresh,
                tmp_path / "worker.log",
                PROVIDER=settings["PROVIDER"],
                PROVIDER_URL=settings["PROVIDER_URL"],
                PROVIDER_TOKEN=settings["PROVIDER_TOKEN"],
            ):

                async def finished() -> bool:
                    states = [await job_state(engine, j) for j in (ok, refused)]
                    return all(s["status"] in ("completed", "failed") for s in states)

                await wait_until(finished, 60, "both jobs to finish", every=0.2)
            done, failed = await job_state(engine, ok), await job_state(engine, refused)
        finally:
            await engine.dispose()

        assert (done["status"], done["found"], done["credits_charged"]) == ("completed", 30, 30)
        assert (failed["status"], failed["error_code"]) == ("failed", "LINKEDIN_NOT_CONNECTED")
