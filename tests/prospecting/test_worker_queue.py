"""The queue around the runner: deferring once, reconciling jobs without a queue entry or on a
dead worker, and procrastinate workers in this process running jobs started over HTTP (one
worker, then two on one queue)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api.prospecting.queue import JobQueue, queue_conninfo
from sonarly_api.prospecting.reconcile import reconcile_once
from sonarly_api.prospecting.worker import JobWorker
from sonarly_api.providers.sandbox import SandboxProvider
from tests.conftest import Factory
from tests.support import (
    balance,
    job_path,
    job_state,
    ledger,
    new_job,
    sandbox_search,
    search_body,
    search_source,
    tenant,
    wait_until,
)


@pytest.fixture
async def queue(database_url: str) -> AsyncIterator[JobQueue]:
    job_queue = JobQueue(database_url)
    await job_queue.open()
    yield job_queue
    await job_queue.close()


async def entries(engine: AsyncEngine, job_id: str) -> list[tuple[str, int | None]]:
    """(status, worker id) of the job's queue entries."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT status::text, worker_id FROM procrastinate_jobs WHERE lock = :j ORDER BY id"
            ),
            {"j": job_id},
        )
        return [(r[0], r[1]) for r in rows]


async def finished(engine: AsyncEngine, job_id: str) -> bool:
    return (await job_state(engine, job_id))["status"] in ("completed", "failed", "cancelled")


class TestQueue:
    def test_the_queue_reaches_the_same_database(self) -> None:
        assert queue_conninfo("postgresql+asyncpg://u:p@db:5432/app?ssl=require") == (
            "postgresql://u:p@db:5432/app?sslmode=require"
        )
        assert queue_conninfo("postgres://u@/app?host=%2Fsock") == (
            "postgresql://u@/app?host=%2Fsock"
        )

    async def test_a_job_waits_in_the_queue_once(
        self, engine: AsyncEngine, factory: Factory, queue: JobQueue
    ) -> None:
        who = await tenant(factory)
        job = await new_job(engine, who.group, search_source(sandbox_search(5)), max_results=5)

        assert await queue.defer(job) is True
        assert await queue.defer(job) is False

        assert await entries(engine, job) == [("todo", None)]

    async def test_reconcile_queues_a_job_the_api_did_not(
        self, engine: AsyncEngine, factory: Factory, queue: JobQueue
    ) -> None:
        who = await tenant(factory)
        job = await new_job(engine, who.group, search_source(sandbox_search(5)), max_results=5)
        assert await entries(engine, job) == []

        done = await reconcile_once(engine, queue)

        assert done.deferred >= 1
        assert await entries(engine, job) == [("todo", None)]
        await reconcile_once(engine, queue)  # again: still one entry
        assert await entries(engine, job) == [("todo", None)]

    async def test_reconcile_requeues_the_job_of_a_dead_worker(
        self, engine: AsyncEngine, factory: Factory, queue: JobQueue
    ) -> None:
        who = await tenant(factory)
        job = await new_job(engine, who.group, search_source(sandbox_search(5)), max_results=5)
        await queue.defer(job)
        async with engine.begin() as conn:
            dead = await conn.scalar(
                text(
                    "INSERT INTO procrastinate_workers (last_heartbeat)"
                    " VALUES (now() - interval '1 hour') RETURNING id"
                )
            )
            await conn.execute(
                text(
                    "UPDATE procrastinate_jobs SET status = 'doing', worker_id = :w WHERE lock = :j"
                ),
                {"w": dead, "j": job},
            )

        done = await reconcile_once(engine, queue)

        assert done.requeued >= 1
        assert [status for status, _ in await entries(engine, job)] == ["todo"]


async def run_workers(
    engine: AsyncEngine, database_url: str, count: int
) -> tuple[list[JobWorker], list[asyncio.Task[None]], list[JobQueue]]:
    workers, tasks, queues = [], [], []
    for n in range(count):
        job_queue = JobQueue(database_url)
        await job_queue.open()
        worker = JobWorker(
            engine,
            job_queue,
            SandboxProvider(page_delay_ms=0),
            concurrency=2,
            statement_timeout_ms=30_000,
            name=f"test-{n}",
        )
        queues.append(job_queue)
        workers.append(worker)
        tasks.append(asyncio.create_task(worker.run()))
    return workers, tasks, queues


async def stop_workers(
    workers: list[JobWorker], tasks: list[asyncio.Task[None]], queues: list[JobQueue]
) -> None:
    for worker in workers:
        worker.stop()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    for job_queue in queues:
        await job_queue.close()


class TestWorkers:
    async def test_a_job_started_over_http_runs_to_completion(
        self, engine: AsyncEngine, database_url: str, factory: Factory, client: httpx.AsyncClient
    ) -> None:
        who = await tenant(factory, credits=1_000)
        workers, tasks, queues = await run_workers(engine, database_url, 1)
        try:
            body = search_body(searchUrl=sandbox_search(40, "http"), maxResults=50)
            started = await client.post(who.jobs, json=body, headers=who.headers)
            assert started.status_code == 202, started.text
            job = started.json()["data"]["jobId"]

            await wait_until(lambda: finished(engine, job), 30, "the job to finish")
        finally:
            await stop_workers(workers, tasks, queues)

        response = await client.get(job_path(who.group, job), headers=who.headers)
        assert response.status_code == 200
        assert "retry-after" not in response.headers
        data = response.json()["data"]
        assert data["status"] == "completed"
        assert data["stages"] == {
            "import": {"status": "completed", "progress": 1},
            "enrichment": {"status": "completed", "progress": 1},
        }
        assert data["counts"] == {
            "found": 40,
            "created": 40,
            "updated": 0,
            "unchanged": 0,
            "failed": 0,
        }
        assert data["credits"] == {"reserved": 50, "charged": 40}
        assert data["error"] is None
        assert await balance(engine, who.group) == (960, 0)

    async def test_two_workers_never_run_a_job_twice(
        self, engine: AsyncEngine, database_url: str, factory: Factory
    ) -> None:
        who = await tenant(factory, credits=100_000)
        jobs = [
            await new_job(
                engine, who.group, search_source(sandbox_search(30, f"two-{n}")), max_results=30
            )
            for n in range(16)
        ]
        workers, tasks, queues = await run_workers(engine, database_url, 2)
        try:
            for job in jobs:
                await queues[0].defer(job)
                await queues[1].defer(job)  # a duplicate defer from another process

            async def all_finished() -> bool:
                return all([await finished(engine, job) for job in jobs])

            await wait_until(all_finished, 60, "every job to finish")
        finally:
            await stop_workers(workers, tasks, queues)

        for job in jobs:
            state = await job_state(engine, job)
            assert (state["status"], state["attempts"]) == ("completed", 1)
            assert state["credits_charged"] == state["created"] + state["updated"]
        charges = [key for kind, _, _, key in await ledger(engine, who.group) if kind == "charge"]
        assert len(charges) == len(set(charges))
        assert sum(n for kind, n, _, _ in await ledger(engine, who.group) if kind == "charge") == (
            sum([(await job_state(engine, j))["credits_charged"] for j in jobs])
        )
        assert (await balance(engine, who.group))[1] == 0
