"""`sonarly-api serve` runs jobs by itself (its in-process worker), or leaves them to
`sonarly-api worker` with --no-worker; the job metrics and the access log's jobId."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from sonarly_api.migrations import upgrade
from tests.conftest import PEPPER, Factory
from tests.servers import Server, free_port, running, serve_argv, service_env
from tests.support import (
    Tenant,
    job_path,
    sandbox_search,
    search_body,
    tenant,
    wait_until,
    worker_process,
)


@pytest.fixture
async def fresh(create_database: Callable[..., str]) -> tuple[str, Tenant]:
    """A database of its own (no other test's jobs), a group with credits and a key."""
    url = await asyncio.to_thread(create_database, "sonarly_serve")
    await asyncio.to_thread(upgrade, url)
    engine = create_async_engine(url)
    try:
        who = await tenant(Factory(engine), credits=1_000)
    finally:
        await engine.dispose()
    return url, who


def env(url: str, **settings: str) -> dict[str, str]:
    return service_env(
        DATABASE_URL=url,
        API_KEY_PEPPER=PEPPER,
        SANDBOX_PAGE_DELAY_MS="0",
        LOG_LEVEL="info",
        LOG_FORMAT="json",
        DEMO_DATA="false",
        **settings,
    )


async def start_job(server: Server, who: Tenant, results: int) -> str:
    async with httpx.AsyncClient(base_url=server.url) as http:
        body = search_body(searchUrl=sandbox_search(results, "serve"), maxResults=results)
        response = await http.post(who.jobs, json=body, headers=who.headers)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["data"]["jobId"]
    return job_id


async def status(server: Server, who: Tenant, job_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get(job_path(who.group, job_id), headers=who.headers)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


class TestServe:
    async def test_serve_runs_jobs_itself(self, fresh: tuple[str, Tenant], tmp_path: Path) -> None:
        url, who = fresh
        port = free_port()
        log = tmp_path / "serve.log"
        with running(serve_argv(port), env(url, METRICS="open"), log, port) as server:
            job_id = await start_job(server, who, 60)

            async def done() -> bool:
                return bool((await status(server, who, job_id))["status"] == "completed")

            await wait_until(done, 60, "the job to complete", every=0.2)
            data = await status(server, who, job_id)
            async with httpx.AsyncClient(base_url=server.url) as http:
                metrics = (await http.get("/metrics")).text

        assert data["counts"]["found"] == 60
        assert data["credits"] == {"reserved": 60, "charged": 60}
        assert 'sonarly_prospecting_jobs{status="completed"} 1.0' in metrics
        assert 'sonarly_prospecting_jobs{status="queued"} 0.0' in metrics
        assert "sonarly_prospecting_job_queue_wait_seconds_count 1.0" in metrics
        assert 'sonarly_prospecting_job_run_seconds_count{status="completed"} 1.0' in metrics
        assert 'sonarly_prospecting_prospects_total{outcome="created"} 60.0' in metrics
        requests = [json.loads(line) for line in log.read_text().splitlines() if line[:1] == "{"]
        mine = [r for r in requests if r.get("event") == "request" and r.get("jobId") == job_id]
        assert {r["method"] for r in mine} == {"POST", "GET"}  # the start and the polls
        assert all(r["accountGroupId"] == who.group for r in mine)

    async def test_no_worker_leaves_jobs_to_worker_processes(
        self, fresh: tuple[str, Tenant], tmp_path: Path
    ) -> None:
        url, who = fresh
        port = free_port()
        log = tmp_path / "serve.log"
        with running(serve_argv(port, "--no-worker"), env(url), log, port) as server:
            job_id = await start_job(server, who, 30)
            await asyncio.sleep(3)  # time enough for an in-process worker to have taken it
            assert (await status(server, who, job_id))["status"] == "queued"

            metrics_port = free_port()
            options = ("--metrics-port", str(metrics_port))
            with worker_process(url, tmp_path / "worker.log", options=options):

                async def done() -> bool:
                    return bool((await status(server, who, job_id))["status"] == "completed")

                await wait_until(done, 60, "the job to complete", every=0.2)
                async with httpx.AsyncClient() as http:
                    scraped = await http.get(f"http://127.0.0.1:{metrics_port}/metrics")

        # The worker's own metrics, on its own port.
        assert scraped.status_code == 200
        assert 'sonarly_prospecting_prospects_total{outcome="created"} 30.0' in scraped.text
        assert 'sonarly_prospecting_jobs_finished_total{status="completed"} 1.0' in scraped.text
