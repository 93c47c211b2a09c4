"""A job run by the worker's runner against the real database and the sandbox: the prospects it
writes (and the lookup then finds), its counts, stages and credits, and how it stops (provider
failure, cancel, worker stopping, a crash and its resumption)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api.prospecting.gather import EVERY_PAGE, CommitSize
from sonarly_api.prospecting.queue import WorkerStopping
from sonarly_api.prospecting.runner import DEFAULT_COMMIT_SIZE, JobRunner
from sonarly_api.providers.base import Page, Profile, ProviderAccount
from sonarly_api.providers.sandbox import SandboxProvider
from tests.conftest import Factory, bearer
from tests.support import (
    balance,
    cancel,
    job_prospects,
    job_state,
    ledger,
    new_job,
    sandbox_profiles,
    sandbox_search,
    search_source,
    tenant,
    wait_until,
)

GRANT = 10_000


def runner(
    engine: AsyncEngine,
    provider: SandboxProvider | None = None,
    commit_size: CommitSize = DEFAULT_COMMIT_SIZE,
) -> JobRunner:
    return JobRunner(engine, provider or SandboxProvider(page_delay_ms=0), commit_size=commit_size)


class Interrupting(SandboxProvider):
    """The sandbox, plus something happening before page `at` (1-based) is fetched."""

    def __init__(self, at: int, what: str, engine: AsyncEngine | None = None) -> None:
        super().__init__(page_delay_ms=0)
        self.at, self.what, self.engine, self.calls = at, what, engine, 0
        self.job: tuple[str, str] | None = None  # (group, job id) for "cancel"
        self.stopping: asyncio.Event | None = None

    async def search_page(self, account: ProviderAccount, url: str, cursor: str | None) -> Page:
        self.calls += 1
        if self.calls == self.at:
            if self.what == "crash":
                raise asyncio.CancelledError  # the task dies here, as in a killed worker
            if self.what == "cancel":
                assert self.engine is not None
                assert self.job is not None
                assert await cancel(self.engine, *self.job)
            if self.what == "stop":
                assert self.stopping is not None
                self.stopping.set()
        return await super().search_page(account, url, cursor)


class TestRun:
    async def test_end_to_end(
        self, engine: AsyncEngine, factory: Factory, client: httpx.AsyncClient
    ) -> None:
        who = await tenant(factory, credits=GRANT)
        url = sandbox_search(60, "e2e")
        job = await new_job(engine, who.group, search_source(url), max_results=100)

        await runner(engine).run(job)

        state = await job_state(engine, job)
        assert state["status"] == "completed"
        assert (state["import_status"], state["import_progress"]) == ("completed", 1)
        assert (state["enrichment_status"], state["enrichment_progress"]) == ("completed", 1)
        assert (state["found"], state["created"], state["updated"]) == (60, 60, 0)
        assert (state["unchanged"], state["failed"]) == (0, 0)
        assert (state["credits_reserved"], state["credits_charged"]) == (100, 60)
        assert (state["pages_done"], state["attempts"]) == (3, 1)
        assert state["started_at"] <= state["finished_at"]
        assert state["error_code"] is None
        assert state["resume_cursor"] is None
        entries = await ledger(engine, who.group)
        # A provider this fast: its three pages committed (and charged) together.
        assert [(kind, n, key) for kind, n, _, key in entries if kind != "grant"] == [
            ("reserve", 100, f"{job}:reserve"),
            ("charge", 60, f"{job}:page:0"),
            ("release", 40, f"{job}:release"),
        ]
        assert await balance(engine, who.group) == (GRANT - 60, 0)

        expected = await sandbox_profiles(who.group, url)
        written = await job_prospects(engine, job)
        assert sorted((p["provider_id"], p["public_identifier"]) for p in written) == sorted(
            (p.member_id, p.public_identifier) for p in expected
        )
        assert sum(p["company_name"] is not None for p in written) >= 50  # enriched
        assert all(p["work_email"] is None for p in written)  # not asked for

        # The lookup finds what the job brought in, company and title included.
        _, key = await factory.key([who.group])
        sample = expected[0]
        response = await client.get(
            f"/v1/accounts/{who.group}/prospects/by-provider-id/{sample.member_id}",
            headers=bearer(key),
        )
        assert response.status_code == 200, response.text
        matches = response.json()["data"]["matches"]
        mine = [m for m in matches if m["publicIdentifier"] == sample.public_identifier]
        assert len(mine) == 1
        assert mine[0]["linkedinUrl"] == sample.profile_url
        assert mine[0]["name"] == sample.name
        row = next(p for p in written if p["public_identifier"] == sample.public_identifier)
        assert (mine[0]["companyName"], mine[0]["title"]) == (row["company_name"], row["title"])

    @pytest.mark.parametrize(
        ("commit_size", "delay_ms", "charges"),
        [
            # Pages gathered until 50 profiles: pages 0-1, 2-3, then the last one.
            (CommitSize(rows=50, seconds=60), 0, [(0, 50), (2, 50), (4, 10)]),
            # A provider slower than the time budget: every page its own commit.
            (CommitSize(rows=500, seconds=0.01), 20, [(n, 25) for n in range(4)] + [(4, 10)]),
        ],
        ids=["by-rows", "by-time"],
    )
    async def test_pages_are_committed_together_up_to_the_commit_size(
        self,
        engine: AsyncEngine,
        factory: Factory,
        commit_size: CommitSize,
        delay_ms: int,
        charges: list[tuple[int, int]],
    ) -> None:
        who = await tenant(factory, credits=GRANT)
        url = sandbox_search(110, f"gather-{delay_ms}")
        job = await new_job(engine, who.group, search_source(url), max_results=110)

        await runner(engine, SandboxProvider(page_delay_ms=delay_ms), commit_size).run(job)

        state = await job_state(engine, job)
        assert (state["status"], state["found"], state["created"]) == ("completed", 110, 110)
        assert (state["pages_done"], state["credits_charged"]) == (5, 110)
        entries = await ledger(engine, who.group)
        assert [(key, n) for kind, n, _, key in entries if kind == "charge"] == [
            (f"{job}:page:{page}", n) for page, n in charges
        ]
        assert len(await job_prospects(engine, job)) == 110

    async def test_max_results_caps_the_profiles(
        self, engine: AsyncEngine, factory: Factory
    ) -> None:
        who = await tenant(factory, credits=GRANT)
        url = sandbox_search(200, "cap")
        job = await new_job(engine, who.group, search_source(url), max_results=30)

        await runner(engine).run(job)

        state = await job_state(engine, job)
        assert (state["status"], state["found"], state["created"]) == ("completed", 30, 30)
        assert state["pages_done"] == 2
        first_30 = (await sandbox_profiles(who.group, url))[:30]
        assert {p["public_identifier"] for p in await job_prospects(engine, job)} == {
            p.public_identifier for p in first_30
        }

    async def test_emails_cost_two_credits(self, engine: AsyncEngine, factory: Factory) -> None:
        who = await tenant(factory, credits=GRANT)
        url = sandbox_search(20, "emails")
        job = await new_job(
            engine, who.group, search_source(url), max_results=50, search_emails=True
        )

        await runner(engine).run(job)

        state = await job_state(engine, job)
        assert (state["credits_reserved"], state["credits_charged"]) == (100, 40)
        assert await balance(engine, who.group) == (GRANT - 40, 0)
        assert any(p["work_email"] for p in await job_prospects(engine, job))

    async def test_a_re_import_is_unchanged_and_free(
        self, engine: AsyncEngine, factory: Factory
    ) -> None:
        who = await tenant(factory, credits=GRANT)
        url = sandbox_search(30, "again")
        first = await new_job(engine, who.group, search_source(url), max_results=100)
        await runner(engine).run(first)
        second = await new_job(engine, who.group, search_source(url), max_results=100)

        await runner(engine).run(second)

        state = await job_state(engine, second)
        assert (state["status"], state["found"], state["unchanged"]) == ("completed", 30, 30)
        assert (state["created"], state["updated"], state["credits_charged"]) == (0, 0, 0)
        assert await balance(engine, who.group) == (GRANT - 30, 0)

    async def test_url_upload(self, engine: AsyncEngine, factory: Factory) -> None:
        who = await tenant(factory, credits=GRANT)
        urls = [f"https://www.linkedin.com/in/person-{i}-{who.group[:6]}" for i in range(30)]
        urls[3] = "https://www.linkedin.com/in/unknown-somebody"
        job = await new_job(
            engine, who.group, {"source": "url_upload", "profileUrls": urls}, max_results=1000
        )

        await runner(engine).run(job)

        state = await job_state(engine, job)
        assert (state["status"], state["found"], state["created"]) == ("completed", 29, 29)
        assert (state["credits_reserved"], state["credits_charged"]) == (30, 29)
        handles = {p["public_identifier"] for p in await job_prospects(engine, job)}
        assert handles == {u.rsplit("/", 1)[1] for u in urls} - {"unknown-somebody"}

    async def test_an_empty_source_completes(self, engine: AsyncEngine, factory: Factory) -> None:
        who = await tenant(factory, credits=GRANT)
        job = await new_job(engine, who.group, search_source(sandbox_search(0)), max_results=10)

        await runner(engine).run(job)

        state = await job_state(engine, job)
        assert (state["status"], state["found"], state["credits_charged"]) == ("completed", 0, 0)
        assert state["enrichment_status"] == "completed"
        assert await balance(engine, who.group) == (GRANT, 0)


class TestStops:
    async def test_provider_failure_fails_the_job_and_keeps_its_pages(
        self, engine: AsyncEngine, factory: Factory
    ) -> None:
        who = await tenant(factory, credits=GRANT)
        url = sandbox_search(100, "fail", sandboxFailAtPage=3)
        job = await new_job(engine, who.group, search_source(url), max_results=100)

        await runner(engine).run(job)

        state = await job_state(engine, job)
        assert state["status"] == "failed"
        assert (state["error_code"], state["import_status"]) == ("UPSTREAM_ERROR", "failed")
        assert state["error_message"] == "the LinkedIn data provider did not answer in time"
        assert (state["found"], state["created"], state["credits_charged"]) == (50, 50, 50)
        assert len(await job_prospects(engine, job)) == 50
        assert await balance(engine, who.group) == (GRANT - 50, 0)
        assert (await ledger(engine, who.group))[-1][0::2] == ("release", job)

    async def test_a_cancel_stops_the_job_at_once(
        self, engine: AsyncEngine, factory: Factory
    ) -> None:
        who = await tenant(factory, credits=GRANT)
        job = await new_job(
            engine, who.group, search_source(sandbox_search(100, "cancel")), max_results=100
        )
        provider = Interrupting(3, "cancel", engine)
        provider.job = (who.group, job)

        await runner(engine, provider, EVERY_PAGE).run(job)

        state = await job_state(engine, job)
        assert state["status"] == "cancelled"
        assert (state["found"], state["pages_done"], state["credits_charged"]) == (50, 2, 50)
        assert len(await job_prospects(engine, job)) == 50
        assert await balance(engine, who.group) == (GRANT - 50, 0)
        kinds = [kind for kind, _, j, _ in await ledger(engine, who.group) if j == job]
        assert kinds == ["reserve", "charge", "charge", "release"]

    async def test_a_job_cancelled_while_queued_never_runs(
        self, engine: AsyncEngine, factory: Factory
    ) -> None:
        who = await tenant(factory, credits=GRANT)
        job = await new_job(engine, who.group, search_source(sandbox_search(10)), max_results=10)
        assert await cancel(engine, who.group, job)

        await runner(engine).run(job)

        state = await job_state(engine, job)
        assert (state["status"], state["attempts"], state["found"]) == ("cancelled", 0, 0)

    @pytest.mark.parametrize(
        ("interruption", "commit_size", "halfway_pages", "charged_pages"),
        [
            # A crash loses what is not committed: the page in flight, or all the gathered
            # pages; a stop commits the page it is on (page 3), with those gathered before.
            ("crash", EVERY_PAGE, 2, [0, 1, 2, 3, 4]),
            ("stop", EVERY_PAGE, 3, [0, 1, 2, 3, 4]),
            ("crash", DEFAULT_COMMIT_SIZE, 0, [0]),
            ("stop", DEFAULT_COMMIT_SIZE, 3, [0, 3]),
        ],
        ids=["crash-every-page", "stop-every-page", "crash-gathered", "stop-gathered"],
    )
    async def test_an_interrupted_job_resumes_where_it_stopped(
        self,
        engine: AsyncEngine,
        factory: Factory,
        interruption: str,
        commit_size: CommitSize,
        halfway_pages: int,
        charged_pages: list[int],
    ) -> None:
        who = await tenant(factory, credits=GRANT)
        url = sandbox_search(110, f"resume-{interruption}-{halfway_pages}")
        job = await new_job(engine, who.group, search_source(url), max_results=110)
        provider = Interrupting(3, interruption)
        first = runner(engine, provider, commit_size)
        provider.stopping = first.stopping

        expected: type[BaseException] = (
            asyncio.CancelledError if interruption == "crash" else WorkerStopping
        )
        with pytest.raises(expected):
            await first.run(job)
        halfway = await job_state(engine, job)
        await runner(engine, commit_size=commit_size).run(job)

        assert halfway["pages_done"] == halfway_pages
        assert halfway["found"] == min(110, 25 * halfway_pages)
        assert (halfway["status"], halfway["attempts"]) == ("running", 1)
        state = await job_state(engine, job)
        assert (state["status"], state["attempts"]) == ("completed", 2)
        assert (state["found"], state["created"], state["credits_charged"]) == (110, 110, 110)
        expected_profiles = await sandbox_profiles(who.group, url)
        written = await job_prospects(engine, job)
        assert sorted(p["public_identifier"] for p in written) == sorted(
            p.public_identifier for p in expected_profiles
        )
        charges = [key for kind, _, j, key in await ledger(engine, who.group) if kind == "charge"]
        assert charges == [f"{job}:page:{n}" for n in charged_pages]  # each page once
        assert await balance(engine, who.group) == (GRANT - 110, 0)

    async def test_an_older_attempt_writes_nothing_more(
        self, engine: AsyncEngine, factory: Factory
    ) -> None:
        """A worker thought dead (its job handed to another) that comes back stops at its
        next page: the newer attempt owns the job."""
        who = await tenant(factory, credits=GRANT)
        url = sandbox_search(75, "fence")
        job = await new_job(engine, who.group, search_source(url), max_results=75)
        taken_over = asyncio.Event()

        class Slow(SandboxProvider):
            async def search_page(
                self, account: ProviderAccount, url: str, cursor: str | None
            ) -> Page:
                if cursor == "o:25":
                    await taken_over.wait()
                return await super().search_page(account, url, cursor)

        old = asyncio.create_task(runner(engine, Slow(page_delay_ms=0), EVERY_PAGE).run(job))
        await wait_until(lambda: _pages_done(engine, job, 1), 10, "the first page")
        await runner(engine).run(job)  # the newer attempt runs the job to its end
        taken_over.set()
        await old

        state = await job_state(engine, job)
        assert (state["status"], state["attempts"], state["found"]) == ("completed", 2, 75)
        assert state["credits_charged"] == 75


def members(profiles: Sequence[Profile]) -> set[str]:
    return {p.member_id for p in profiles}


async def _pages_done(engine: AsyncEngine, job: str, n: int) -> bool:
    return int((await job_state(engine, job))["pages_done"]) >= n
