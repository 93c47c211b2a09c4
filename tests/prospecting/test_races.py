"""Concurrent requests: one Idempotency-Key, the last credits, cancel against completion."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api.credits import service as credits
from sonarly_api.prospecting.models import ProspectingJob
from tests.conftest import Factory
from tests.prospecting.test_start import error_of
from tests.support import (
    cancel_path,
    count_jobs,
    credits_view,
    job_row,
    search_body,
    set_job,
    start,
    started_job,
    tenant,
)


class TestIdempotencyRace:
    async def test_twenty_concurrent_requests_with_one_key_create_one_job(
        self, client: httpx.AsyncClient, factory: Factory, engine: AsyncEngine
    ) -> None:
        who = await tenant(factory, credits=10_000)

        responses = await asyncio.gather(
            *(start(client, who, search_body(maxResults=100), "one-key") for _ in range(20))
        )

        assert [r.status_code for r in responses] == [202] * 20, [r.text for r in responses]
        assert len({r.json()["data"]["jobId"] for r in responses}) == 1
        replayed = [r.headers.get("idempotent-replayed") for r in responses]
        assert replayed.count(None) == 1
        assert replayed.count("true") == 19
        assert await count_jobs(engine, who.group) == 1
        view = await credits_view(engine, who.group)
        assert view.reserved == 100
        assert [e.kind for e in view.entries].count("reserve") == 1

    async def test_twenty_concurrent_requests_with_one_key_and_just_enough_credits(
        self, client: httpx.AsyncClient, factory: Factory, engine: AsyncEngine
    ) -> None:
        """Losers must answer as replays, not with a 402 for the credits the winner took."""
        who = await tenant(factory, credits=100)

        responses = await asyncio.gather(
            *(start(client, who, search_body(maxResults=100), "k") for _ in range(20))
        )

        assert sorted(r.status_code for r in responses) == [202] * 20
        assert await count_jobs(engine, who.group) == 1

    async def test_concurrent_requests_with_distinct_keys_create_one_job_each(
        self, client: httpx.AsyncClient, factory: Factory, engine: AsyncEngine
    ) -> None:
        who = await tenant(factory, credits=10_000)

        responses = await asyncio.gather(
            *(start(client, who, search_body(maxResults=10), f"key-{i}") for i in range(10))
        )

        assert [r.status_code for r in responses] == [202] * 10
        assert len({r.json()["data"]["jobId"] for r in responses}) == 10
        assert (await credits_view(engine, who.group)).reserved == 100


class TestLastCreditsRace:
    async def test_two_starts_for_the_last_credits_exactly_one_is_accepted(
        self, client: httpx.AsyncClient, factory: Factory, engine: AsyncEngine
    ) -> None:
        for _ in range(5):
            who = await tenant(factory, credits=150)

            responses = await asyncio.gather(
                start(client, who, search_body(maxResults=100)),
                start(client, who, search_body(maxResults=100)),
            )

            assert sorted(r.status_code for r in responses) == [202, 402]
            refused = next(r for r in responses if r.status_code == 402)
            assert error_of(refused)["details"] == "requires 100 credits, 50 available"
            assert await count_jobs(engine, who.group) == 1
            view = await credits_view(engine, who.group)
            assert (view.balance, view.reserved) == (150, 100)


async def complete_like_a_worker(
    engine: AsyncEngine, group: str, job_id: str, *, after: float = 0.0, hold: float = 0.01
) -> bool:
    """A worker's last page: lock the row, go on only if still running, charge, finish and
    release in one transaction (the protocol of INTERFACES.md). True if it completed."""
    await asyncio.sleep(after)
    async with engine.begin() as conn:
        status = await conn.scalar(
            select(ProspectingJob.status).where(ProspectingJob.id == job_id).with_for_update()
        )
        if status != "running":
            return False
        await asyncio.sleep(hold)  # a page's work while holding the row
        await credits.charge(conn, group, job_id, f"{job_id}:page:1", 20)
        await conn.execute(
            update(ProspectingJob)
            .where(ProspectingJob.id == job_id)
            .values(status="completed", created=20, credits_charged=20)
        )
        await credits.release(conn, group, job_id)
    return True


class TestCancelAgainstCompletion:
    async def test_exactly_one_wins_and_the_answer_says_which(
        self, client: httpx.AsyncClient, factory: Factory, engine: AsyncEngine
    ) -> None:
        who = await tenant(factory, credits=100_000)
        outcomes = set()
        # Trial 0: the page holds the row when the cancel arrives (the cancel waits, then
        # finds the job completed); trial 1: the cancel commits before the page locks the
        # row; then both at once with small offsets, either may win.
        timings = [(0.0, 0.1, 0.03), (0.15, 0.0, 0.0)] + [
            (0.0, 0.005, 0.003 * (t % 4)) for t in range(10)
        ]
        for worker_after, hold, cancel_after in timings:
            job_id = await started_job(client, who, maxResults=50)
            await set_job(engine, job_id, status="running")

            async def cancel(job_id: str = job_id, delay: float = cancel_after) -> httpx.Response:
                await asyncio.sleep(delay)
                return await client.post(cancel_path(who.group, job_id), headers=who.headers)

            completed, response = await asyncio.gather(
                complete_like_a_worker(engine, who.group, job_id, after=worker_after, hold=hold),
                cancel(),
            )

            row = await job_row(engine, job_id)
            if response.status_code == 200:
                assert not completed
                assert (row["status"], row["credits_charged"]) == ("cancelled", 0)
            else:
                assert completed
                assert response.status_code == 422
                assert "the job is completed" in error_of(response)["details"]
                assert (row["status"], row["credits_charged"]) == ("completed", 20)
            outcomes.add(row["status"])
            async with engine.connect() as conn:
                assert await credits.job_credits(conn, who.group, job_id) == (
                    50,
                    20 if completed else 0,
                )
        view = await credits_view(engine, who.group)
        assert view.reserved == 0  # every job's reservation released exactly once
        assert outcomes == {"cancelled", "completed"}
