"""Real `sonarly-api worker` processes under the faults a deployment meets: one killed with
kill -9 in the middle of a job, one stopped with SIGTERM, and the database restarted under a
running job. Each time the job ends with exactly the prospects it should have and every
page charged once; nothing is half-written."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from sonarly_api.embedded_pg import EmbeddedPostgres
from sonarly_api.prospecting.queue import JobQueue
from tests.conftest import Factory
from tests.faults.conftest import DATABASE
from tests.support import (
    balance,
    job_prospects,
    job_state,
    ledger,
    new_job,
    sandbox_profiles,
    sandbox_search,
    search_source,
    tenant,
    wait_until,
    worker_process,
)

GRANT = 100_000
RESULTS = 1_000  # 40 pages
PICKED_UP_WITHIN = 60.0  # seconds from kill -9 to the job running again (the bound)


@dataclass
class Setup:
    url: str
    engine: AsyncEngine
    factory: Factory


@pytest.fixture
async def setup(own_pg: EmbeddedPostgres) -> AsyncIterator[Setup]:
    url = own_pg.url(DATABASE)
    engine = create_async_engine(url, pool_pre_ping=True)
    try:
        yield Setup(url, engine, Factory(engine))
    finally:
        await engine.dispose()


async def queued_job(setup: Setup, tag: str) -> tuple[str, str, str]:
    """(group, job id, search URL): a job of RESULTS profiles, in the queue."""
    who = await tenant(setup.factory, credits=GRANT)
    url = sandbox_search(RESULTS, tag)
    job = await new_job(setup.engine, who.group, search_source(url), max_results=RESULTS)
    queue = JobQueue(setup.url)
    await queue.open()
    try:
        assert await queue.defer(job)
    finally:
        await queue.close()
    return who.group, job, url


async def pages_done(engine: AsyncEngine, job: str) -> int:
    return int((await job_state(engine, job))["pages_done"])


async def finished(engine: AsyncEngine, job: str) -> bool:
    return (await job_state(engine, job))["status"] in ("completed", "failed", "cancelled")


async def queue_statuses(engine: AsyncEngine, job: str) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT status::text FROM procrastinate_jobs WHERE lock = :j ORDER BY id"),
            {"j": job},
        )
        return [r[0] for r in rows]


async def assert_exactly_right(setup: Setup, group: str, job: str, url: str) -> dict[str, object]:
    """Completed with every profile once, each page charged once, nothing left reserved."""
    state = await job_state(setup.engine, job)
    assert state["status"] == "completed", state
    assert (state["found"], state["created"], state["updated"]) == (RESULTS, RESULTS, 0)
    assert state["credits_charged"] == RESULTS
    assert state["pages_done"] == RESULTS // 25
    expected = await sandbox_profiles(group, url)
    written = await job_prospects(setup.engine, job)
    assert sorted((p["provider_id"], p["public_identifier"]) for p in written) == sorted(
        (p.member_id, p.public_identifier) for p in expected
    )
    charges = [
        (key, n) for kind, n, j, key in await ledger(setup.engine, group) if kind == "charge"
    ]
    # One charge per committed round of pages, named by its first page: every page in one
    # round only, whatever the attempts.
    first_pages = sorted(int(str(key).removeprefix(f"{job}:page:")) for key, _ in charges)
    assert len(set(first_pages)) == len(first_pages)
    assert first_pages[0] == 0
    assert first_pages[-1] < RESULTS // 25
    assert sum(n for _, n in charges) == RESULTS
    assert await balance(setup.engine, group) == (GRANT - RESULTS, 0)
    return state


class TestWorkerFaults:
    async def test_kill_9_mid_job_is_picked_up_again(self, setup: Setup, tmp_path: Path) -> None:
        group, job, url = await queued_job(setup, "kill")
        log = tmp_path / "workers.log"
        with worker_process(setup.url, log, SANDBOX_PAGE_DELAY_MS="150") as first:
            await wait_until(lambda: _at_least(setup.engine, job, 3), 60, "a few pages")
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(10)
            killed_at = time.monotonic()
        stalled = await pages_done(setup.engine, job)
        assert (await job_state(setup.engine, job))["status"] == "running"

        with worker_process(setup.url, log) as second:
            await wait_until(
                lambda: _attempts(setup.engine, job, 2), PICKED_UP_WITHIN, "the job to run again"
            )
            picked_up_after = time.monotonic() - killed_at
            await wait_until(lambda: finished(setup.engine, job), 60, "the job to finish")
            assert second.poll() is None

        assert picked_up_after < PICKED_UP_WITHIN
        state = await assert_exactly_right(setup, group, job, url)
        assert state["attempts"] == 2
        assert stalled < RESULTS // 25

    async def test_sigterm_finishes_the_page_and_requeues_the_job(
        self, setup: Setup, tmp_path: Path
    ) -> None:
        group, job, url = await queued_job(setup, "term")
        log = tmp_path / "workers.log"
        with worker_process(setup.url, log, SANDBOX_PAGE_DELAY_MS="150") as first:
            await wait_until(lambda: _at_least(setup.engine, job, 2), 60, "a few pages")
            first.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(first.wait, 20) == 0
        state = await job_state(setup.engine, job)
        assert (state["status"], state["attempts"]) == ("running", 1)
        assert 2 <= state["pages_done"] < RESULTS // 25
        assert await queue_statuses(setup.engine, job) == ["todo"]  # back in the queue
        assert "job worker stopped" in log.read_text()

        with worker_process(setup.url, log):
            await wait_until(lambda: finished(setup.engine, job), 60, "the job to finish")

        state = await assert_exactly_right(setup, group, job, url)
        assert state["attempts"] == 2

    async def test_database_restart_under_a_running_job(
        self, setup: Setup, own_pg: EmbeddedPostgres, tmp_path: Path
    ) -> None:
        group, job, url = await queued_job(setup, "restart")
        log = tmp_path / "workers.log"
        with worker_process(setup.url, log, SANDBOX_PAGE_DELAY_MS="100") as worker:
            await wait_until(lambda: _at_least(setup.engine, job, 3), 60, "a few pages")
            await asyncio.to_thread(own_pg.stop)
            await asyncio.sleep(3)
            await asyncio.to_thread(own_pg.start)
            await setup.engine.dispose()  # its pooled connections died with the server
            await wait_until(lambda: finished(setup.engine, job), 90, "the job to finish")
            assert worker.poll() is None, "the worker process died"

        await assert_exactly_right(setup, group, job, url)
        written = log.read_text()
        assert "job database work retried" in written  # the outage was seen, and waited out
        for driver_text in ("FATAL", ".s.PGSQL", "shutting down", "Traceback"):
            assert driver_text not in written


async def _at_least(engine: AsyncEngine, job: str, pages: int) -> bool:
    return await pages_done(engine, job) >= pages


async def _attempts(engine: AsyncEngine, job: str, n: int) -> bool:
    return int((await job_state(engine, job))["attempts"]) >= n
