"""Random sequences of start / cancel / worker steps against an in-memory model of the job
state machine and the credit ledger.

A worker step lets one job's runner fetch and commit one more page (the sandbox waits at a
gate per job); after every step the database must equal the model: no illegal transition,
counts and charges page by page, balance = grants - charges, reserved = what the unfinished
jobs still hold, and nothing reserved by a job in a final status."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api.ids import new_id
from sonarly_api.prospecting.gather import CommitSize
from sonarly_api.prospecting.runner import JobRunner
from sonarly_api.providers.base import Page, Profile, ProviderAccount
from sonarly_api.providers.sandbox import PAGE_SIZE, SandboxProvider
from tests.conftest import Factory
from tests.support import (
    balance,
    cancel,
    job_state,
    ledger,
    new_job,
    sandbox_profiles,
    sandbox_search,
    search_source,
    tenant,
    wait_until,
)

GRANT = 1_000_000
# What each status may be seen as next (a step may pass through `running` unseen); a
# final status never changes.
REACHABLE = {
    "queued": {"queued", "running", "completed", "failed", "cancelled"},
    "running": {"running", "completed", "failed", "cancelled"},
    "completed": {"completed"},
    "failed": {"failed"},
    "cancelled": {"cancelled"},
}
FINAL = ("completed", "failed", "cancelled")


class Gated(SandboxProvider):
    """The sandbox, one page per permit of the job's gate."""

    def __init__(self) -> None:
        super().__init__(page_delay_ms=0)
        self.gates: dict[str, asyncio.Semaphore] = {}

    async def search_page(self, account: ProviderAccount, url: str, cursor: str | None) -> Page:
        await self.gates[url].acquire()
        return await super().search_page(account, url, cursor)


@dataclass
class ModelJob:
    id: str
    url: str
    profiles: list[Profile]  # what the job will import, in page order
    emails: bool
    reserved: int
    status: str = "queued"
    pages_done: int = 0
    found: int = 0
    created: int = 0
    unchanged: int = 0
    charged: int = 0
    task: asyncio.Task[None] | None = None

    @property
    def pages(self) -> int:
        return max(1, math.ceil(len(self.profiles) / PAGE_SIZE))


@dataclass
class Model:
    group: str
    jobs: list[ModelJob] = field(default_factory=list)
    written: set[tuple[str, str]] = field(default_factory=set)  # (member id, handle)

    def page(self, job: ModelJob) -> None:
        """The model's page: what the runner must have committed for it."""
        chunk = job.profiles[job.pages_done * PAGE_SIZE : (job.pages_done + 1) * PAGE_SIZE]
        new = {(p.member_id, p.public_identifier) for p in chunk} - self.written
        self.written |= new
        job.pages_done += 1
        job.found += len(chunk)
        job.created += len(new)
        job.unchanged += len(chunk) - len(new)
        job.charged += len(new) * (2 if job.emails else 1)
        if job.pages_done == job.pages:
            job.status = "completed"


Op = tuple[str, int, int, int, bool]  # (kind, job index or size, max results, -, emails)
operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("start"),
            st.integers(0, 60),
            st.integers(1, 60),
            st.just(0),
            st.booleans(),
        ),
        st.tuples(st.just("step"), st.integers(0, 5), st.just(0), st.just(0), st.just(False)),
        st.tuples(st.just("cancel"), st.integers(0, 5), st.just(0), st.just(0), st.just(False)),
    ),
    min_size=1,
    max_size=14,
)


@settings(
    max_examples=20,
    deadline=None,  # real PostgreSQL on a shared machine: time is not the property
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
    phases=[Phase.explicit, Phase.generate],  # each example costs real transactions
)
@given(ops=operations)
async def test_jobs_and_ledger_follow_the_model(
    ops: list[Op], engine: AsyncEngine, factory: Factory
) -> None:
    who = await tenant(factory, credits=GRANT)
    model = Model(who.group)
    provider = Gated()
    seen: dict[str, str] = {}
    try:
        for kind, n, max_results, _, emails in ops:
            if kind == "start":
                await start(engine, model, provider, n, max_results, emails)
            elif model.jobs:
                job = model.jobs[n % len(model.jobs)]
                if kind == "step":
                    await step(engine, model, provider, job)
                else:
                    await cancel_job(engine, model, job)
            await check(engine, model, seen)
    finally:
        for job in model.jobs:  # leave nothing running in the shared database
            if job.status not in FINAL:
                await cancel_job(engine, model, job)
            if job.task is not None:
                provider.gates[job.url].release()
                await asyncio.wait_for(job.task, 10)
    await check(engine, model, seen)
    assert (await balance(engine, who.group))[1] == 0


async def start(
    engine: AsyncEngine, model: Model, provider: Gated, size: int, max_results: int, emails: bool
) -> None:
    url = sandbox_search(size, new_id())
    job_id = await new_job(
        engine, model.group, search_source(url), max_results=max_results, search_emails=emails
    )
    profiles = (await sandbox_profiles(model.group, url))[:max_results]
    reserved = max_results * (2 if emails else 1)
    model.jobs.append(ModelJob(job_id, url, profiles, emails, reserved))
    provider.gates[url] = asyncio.Semaphore(0)


async def step(engine: AsyncEngine, model: Model, provider: Gated, job: ModelJob) -> None:
    if job.task is None:
        # Rounds end on time (the next page waits on its gate): one page per round, and the
        # page that opens the next round is already asked for.
        runner = JobRunner(engine, provider, commit_size=CommitSize(rows=10_000, seconds=0.05))
        job.task = asyncio.create_task(runner.run(job.id))
        if job.status == "queued":
            job.status = "running"
    if job.status != "running":
        # A finished job: its runner (if any) ends without another page.
        provider.gates[job.url].release()
        await asyncio.wait_for(job.task, 10)
        return
    provider.gates[job.url].release()
    model.page(job)
    if job.status == "completed":
        await asyncio.wait_for(job.task, 10)  # enrichment and the end follow the last page
        return

    async def committed() -> bool:
        return int((await job_state(engine, job.id))["pages_done"]) >= job.pages_done

    await wait_until(committed, 10, "the page to commit")


async def cancel_job(engine: AsyncEngine, model: Model, job: ModelJob) -> None:
    was_active = job.status in ("queued", "running")
    assert await cancel(engine, model.group, job.id) == was_active
    if was_active:
        job.status = "cancelled"


async def check(engine: AsyncEngine, model: Model, seen: dict[str, str]) -> None:
    for job in model.jobs:
        state = await job_state(engine, job.id)
        before = seen.get(job.id, "queued")
        assert state["status"] in REACHABLE[before], (before, state["status"])
        seen[job.id] = state["status"]
        # A job started but not yet at its first page is queued for the model too.
        expected_status = job.status
        if job.status == "running" and state["status"] == "queued":
            expected_status = "queued"
        assert state["status"] == expected_status
        assert (state["pages_done"], state["found"]) == (job.pages_done, job.found)
        assert (state["created"], state["unchanged"], state["updated"]) == (
            job.created,
            job.unchanged,
            0,
        )
        assert state["credits_charged"] == job.charged
    entries = await ledger(engine, model.group)
    grants = sum(n for kind, n, _, _ in entries if kind == "grant")
    charges = sum(n for kind, n, _, _ in entries if kind == "charge")
    assert charges == sum(job.charged for job in model.jobs)
    holding = sum(job.reserved - job.charged for job in model.jobs if job.status not in FINAL)
    assert await balance(engine, model.group) == (grants - charges, holding)
    for job in model.jobs:
        released = [n for kind, n, j, _ in entries if kind == "release" and j == job.id]
        if job.status in FINAL:
            assert sum(released) == job.reserved - job.charged
        else:
            assert released == []
