"""Cancel racing the job's own end, many times: exactly one wins, the answer says which, and
the ledger agrees."""

from __future__ import annotations

import asyncio
import random
import time

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api.prospecting.runner import JobRunner
from sonarly_api.providers.sandbox import SandboxProvider
from tests.conftest import Factory
from tests.support import (
    balance,
    cancel_path,
    job_state,
    ledger,
    new_job,
    sandbox_search,
    search_source,
    tenant,
)

TRIALS = 30
GRANT = 10_000


class TestCancelVersusCompletion:
    async def test_exactly_one_wins(
        self, engine: AsyncEngine, factory: Factory, client: httpx.AsyncClient
    ) -> None:
        who = await tenant(factory, credits=GRANT)
        rng = random.Random(7)
        outcomes = []
        # How long a job takes here: the cancels are spread over that span.
        started = time.perf_counter()
        probe = await new_job(
            engine, who.group, search_source(sandbox_search(30, "p")), max_results=30
        )
        await JobRunner(engine, SandboxProvider(page_delay_ms=0)).run(probe)
        span = (time.perf_counter() - started) * 1.3
        spent = (await job_state(engine, probe))["credits_charged"]
        for trial in range(TRIALS):
            url = sandbox_search(rng.choice((5, 30)), f"race-{trial}")
            job = await new_job(engine, who.group, search_source(url), max_results=30)
            runner = JobRunner(engine, SandboxProvider(page_delay_ms=0))

            async def cancel_soon(job: str = job) -> httpx.Response:
                await asyncio.sleep(rng.uniform(0, span))
                return await client.post(cancel_path(who.group, job), headers=who.headers)

            _, answer = await asyncio.gather(runner.run(job), cancel_soon())

            state = await job_state(engine, job)
            if answer.status_code == 200:
                assert answer.json()["data"] == {"jobId": job, "status": "cancelled"}
                assert state["status"] == "cancelled"
                outcomes.append("cancel")
            else:
                assert answer.status_code == 422, answer.text
                assert "completed" in answer.json()["error"]["details"]
                assert state["status"] == "completed"
                assert state["enrichment_status"] == "completed"
                outcomes.append("completion")
            # Either way: charged for what it wrote, the rest released, once.
            assert state["credits_charged"] == state["created"] + state["updated"]
            mine = [(kind, n) for kind, n, j, _ in await ledger(engine, who.group) if j == job]
            assert [kind for kind, _ in mine].count("release") <= 1
            charged = sum(n for kind, n in mine if kind == "charge")
            released = sum(n for kind, n in mine if kind == "release")
            assert charged == state["credits_charged"]
            assert charged + released == 30
            spent += charged
            assert await balance(engine, who.group) == (GRANT - spent, 0)
        # Both sides won some trials (the delays spread over a job's run time).
        assert set(outcomes) == {"cancel", "completion"}, outcomes
