"""Jobs run by the worker's runner through the HTTP provider against the real fake provider
(tests/fakeprovider.py) and the real database: for each fault the fake can inject, the job's
final status, error, counts, charged credits (ledger) and rows; cancellation while the provider
is slow; and the same job against the sandbox and the fake, writing the same prospects."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api.db import Database
from sonarly_api.ids import new_id
from sonarly_api.linkedin import repository
from sonarly_api.linkedin.connections import account_resolver
from sonarly_api.prospecting.runner import JobRunner
from sonarly_api.providers.base import ProviderAccount
from sonarly_api.providers.calls import Backoff
from sonarly_api.providers.http import HttpProvider, HttpProviderOptions
from sonarly_api.providers.sandbox import SandboxProvider
from tests.conftest import Factory
from tests.fakeprovider import RAW_MESSAGE, FakeProvider, make_profiles, running_fake_provider
from tests.support import (
    SEARCH_URL,
    Tenant,
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
SIZE = 60  # three pages of 25, 25, 10
FAST = HttpProviderOptions(
    timeout_seconds=0.5,
    max_attempts=3,
    deadline_seconds=5.0,
    listing_deadline_seconds=2.0,
    backoff=Backoff(base_seconds=0.01, cap_seconds=0.05),
)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeProvider]:
    with running_fake_provider() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeProvider) -> FakeProvider:
    server.reset()
    return server


def http_runner(
    engine: AsyncEngine, fake: FakeProvider, options: HttpProviderOptions = FAST, **kw: Any
) -> JobRunner:
    provider = HttpProvider(
        fake.url, SecretStr(fake.token), options, resolve_account=account_resolver(Database(engine))
    )
    kw.setdefault("watch_seconds", 0.1)
    kw.setdefault("rate_limit_pause_seconds", 0.1)
    kw.setdefault("rate_limit_retries", 2)
    return JobRunner(engine, provider, **kw)


async def search_job(
    engine: AsyncEngine, factory: Factory, fake: FakeProvider, *, size: int = SIZE
) -> tuple[Tenant, str]:
    """A connected group whose provider account has a search of `size` people, each with an
    enrichment, and a queued job of that search."""
    who = await tenant(factory, credits=GRANT)
    account_id = f"acc-{new_id()}"
    async with engine.begin() as conn:
        await repository.connect(conn, who.group, account_id)
    tag = who.group[-8:]
    url = f"{SEARCH_URL}&q={tag}"
    people = make_profiles(tag, size)
    fake.account(account_id).searches[url] = people
    for p in people:
        fake.enrichments[p["memberId"]] = {"companyName": "Acme", "title": "CTO", "workEmail": None}
    job = await new_job(engine, who.group, search_source(url), max_results=100)
    return who, job


async def run(runner: JobRunner, job: str, seconds: float = 30) -> None:
    async with asyncio.timeout(seconds):
        await runner.run(job)


async def assert_outcome(
    engine: AsyncEngine,
    who: Tenant,
    job: str,
    *,
    status: str,
    found: int,
    code: str | None = None,
    failure: str | None = None,
) -> dict[str, Any]:
    """The job's row, rows written and ledger agree with `found` prospects written."""
    state = await job_state(engine, job)
    assert state["status"] == status
    assert state["error_code"] == code
    if failure is None:
        assert state["error_message"] is None
    else:
        assert state["error_message"].startswith(f"{failure}: ")
        assert RAW_MESSAGE not in state["error_message"]
    assert (state["found"], state["created"], state["credits_charged"]) == (found, found, found)
    assert state["credits_reserved"] == 100
    written = await job_prospects(engine, job)
    assert len(written) == found
    charges = [(n, key) for kind, n, j, key in await ledger(engine, who.group) if kind == "charge"]
    # One charge per committed round of pages, named by its first page: from page 0 on,
    # each page in one round only.
    first_pages = [int(str(key).removeprefix(f"{job}:page:")) for _, key in charges]
    assert first_pages == sorted(set(first_pages))
    assert first_pages[:1] == ([0] if found else [])
    assert all(n < -(-found // 25) for n in first_pages)
    assert sum(n for n, _ in charges) == found
    assert await balance(engine, who.group) == (GRANT - found, 0)  # the rest released
    return state


class TestTransientFaultsAreRetried:
    @pytest.mark.parametrize(
        ("kind", "options"),
        [
            ("slow", {"delay": 1.0}),  # longer than one attempt's timeout
            ("500", {}),
            ("drop", {}),
            ("429", {"retry_after": "0"}),
        ],
    )
    async def test_one_fault_on_a_page_and_the_job_completes(
        self,
        engine: AsyncEngine,
        factory: Factory,
        fake: FakeProvider,
        kind: Any,
        options: dict[str, Any],
    ) -> None:
        who, job = await search_job(engine, factory, fake)
        fake.fault(kind, path_contains="people/search", after=1, **options)

        await run(http_runner(engine, fake), job)

        state = await assert_outcome(engine, who, job, status="completed", found=SIZE)
        assert state["enrichment_status"] == "completed"
        searches = fake.requests_to("people/search")
        # Page 2 asked twice, with the same cursor: the fault, then the answer.
        assert len(searches) == 4
        assert searches[1].query == searches[2].query
        assert "cursor" in searches[1].query
        assert {p["company_name"] for p in await job_prospects(engine, job)} == {"Acme"}

    async def test_a_rate_limited_page_waits_retry_after_and_the_job_stays_running(
        self, engine: AsyncEngine, factory: Factory, fake: FakeProvider
    ) -> None:
        who, job = await search_job(engine, factory, fake)
        fake.fault("429", retry_after="1", path_contains="people/search", after=1)

        task = asyncio.create_task(run(http_runner(engine, fake), job))
        await wait_until(
            lambda: _asked(fake, "people/search", 2), 10, "the rate-limited page", every=0.02
        )
        during = await job_state(engine, job)
        await task

        assert during["status"] == "running"
        assert during["error_code"] is None
        await assert_outcome(engine, who, job, status="completed", found=SIZE)
        searches = fake.requests_to("people/search")
        assert searches[2].at - searches[1].at >= 1.0  # Retry-After honoured

    async def test_rate_limited_past_the_adapters_deadline_the_page_is_asked_again_later(
        self, engine: AsyncEngine, factory: Factory, fake: FakeProvider
    ) -> None:
        """Four 429s: the adapter gives up after three attempts; the runner pauses and asks
        for the same page again, which then succeeds."""
        who, job = await search_job(engine, factory, fake)
        fake.fault("429", retry_after="0", times=4, path_contains="people/search", after=1)

        await run(http_runner(engine, fake), job)

        await assert_outcome(engine, who, job, status="completed", found=SIZE)
        searches = fake.requests_to("people/search")
        assert len(searches) == 1 + 3 + 2 + 1  # page 1; page 2: 3 + 2 attempts; page 3
        assert len({tuple(sorted(r.query.items())) for r in searches[1:6]}) == 1


class TestFailuresFailTheJob:
    @pytest.mark.parametrize(
        ("kind", "options", "code", "failure", "attempts"),
        [
            ("500", {}, "UPSTREAM_ERROR", "bad_answer", 3),
            ("drop", {}, "UPSTREAM_ERROR", "refused", 3),
            ("slow", {"delay": 1.0}, "UPSTREAM_ERROR", "timeout", 3),
            ("malformed", {}, "UPSTREAM_ERROR", "bad_answer", 1),
            ("wrong_shape", {}, "UPSTREAM_ERROR", "bad_answer", 1),
            # Three pauses' worth: the adapter's 3 attempts, asked 1 + 2 times.
            ("429", {"retry_after": "0"}, "UPSTREAM_ERROR", "rate_limited", 9),
            ("disconnected", {}, "LINKEDIN_DISCONNECTED", "disconnected", 1),
            ("restricted", {}, "LINKEDIN_DISCONNECTED", "disconnected", 1),
            ("not_found", {}, "SOURCE_NOT_FOUND", "not_found", 1),
        ],
    )
    async def test_page_2_fails_for_good_and_page_1_is_kept_and_charged(
        self,
        engine: AsyncEngine,
        factory: Factory,
        fake: FakeProvider,
        kind: Any,
        options: dict[str, Any],
        code: str,
        failure: str,
        attempts: int,
    ) -> None:
        who, job = await search_job(engine, factory, fake)
        fake.fault(kind, times=None, path_contains="people/search", after=1, **options)

        await run(http_runner(engine, fake), job)

        state = await assert_outcome(
            engine, who, job, status="failed", found=25, code=code, failure=failure
        )
        assert (state["import_status"], state["enrichment_status"]) == ("failed", "queued")
        assert state["pages_done"] == 1
        assert len(fake.requests_to("people/search")) == 1 + attempts
        assert fake.requests_to("profiles/enrich") == []

    async def test_an_account_disconnected_at_the_provider_fails_the_job_at_once(
        self, engine: AsyncEngine, factory: Factory, fake: FakeProvider
    ) -> None:
        who, job = await search_job(engine, factory, fake)
        (account,) = fake.accounts.values()
        account.state = "disconnected"

        await run(http_runner(engine, fake), job)

        await assert_outcome(
            engine,
            who,
            job,
            status="failed",
            found=0,
            code="LINKEDIN_DISCONNECTED",
            failure="disconnected",
        )

    async def test_a_group_without_a_connected_account_fails_with_not_connected(
        self, engine: AsyncEngine, factory: Factory, fake: FakeProvider
    ) -> None:
        """Disconnected (`linkedin disconnect`) between the start and the run."""
        who, job = await search_job(engine, factory, fake)
        async with engine.begin() as conn:
            await repository.disconnect(conn, who.group)

        await run(http_runner(engine, fake), job)

        state = await job_state(engine, job)
        assert (state["status"], state["error_code"]) == ("failed", "LINKEDIN_NOT_CONNECTED")
        assert "no connected LinkedIn account" in state["error_message"]
        assert (state["found"], state["credits_charged"]) == (0, 0)
        assert await balance(engine, who.group) == (GRANT, 0)
        assert fake.requests == []


class TestCancel:
    async def test_a_cancel_stops_a_page_waiting_on_a_slow_provider_at_once(
        self, engine: AsyncEngine, factory: Factory, fake: FakeProvider
    ) -> None:
        who, job = await search_job(engine, factory, fake)
        patient = HttpProviderOptions(timeout_seconds=30, max_attempts=1, deadline_seconds=60)
        fake.fault("slow", delay=20, path_contains="people/search", after=1)
        task = asyncio.create_task(run(http_runner(engine, fake, patient), job))
        await wait_until(lambda: _asked(fake, "people/search", 2), 10, "the slow page")
        # Page 1 does not wait for page 2: its round commits once its time is up.
        await wait_until(lambda: _pages_done(engine, job, 1), 5, "page 1 committed")

        assert await cancel(engine, who.group, job)
        cancelled_at = time.monotonic()
        await asyncio.wait_for(task, 5)
        stopped_after = time.monotonic() - cancelled_at

        assert stopped_after < 2  # a few watch periods, not the provider's 20 s
        state = await job_state(engine, job)
        assert (state["status"], state["found"], state["pages_done"]) == ("cancelled", 25, 1)
        assert state["credits_charged"] == 25
        assert len(await job_prospects(engine, job)) == 25
        assert await balance(engine, who.group) == (GRANT - 25, 0)
        kinds = [kind for kind, _, j, _ in await ledger(engine, who.group) if j == job]
        assert kinds == ["reserve", "charge", "release"]

    async def test_a_cancel_stops_a_rate_limit_pause(
        self, engine: AsyncEngine, factory: Factory, fake: FakeProvider
    ) -> None:
        who, job = await search_job(engine, factory, fake)
        fake.fault("429", retry_after="0", times=None, path_contains="people/search", after=1)
        runner = http_runner(engine, fake, rate_limit_pause_seconds=30, rate_limit_retries=5)
        task = asyncio.create_task(run(runner, job))
        await wait_until(lambda: _asked(fake, "people/search", 4), 10, "the adapter to give up")
        await wait_until(lambda: _pages_done(engine, job, 1), 5, "page 1 committed")

        assert await cancel(engine, who.group, job)
        await asyncio.wait_for(task, 5)

        state = await job_state(engine, job)
        assert (state["status"], state["found"], state["error_code"]) == ("cancelled", 25, None)
        assert len(fake.requests_to("people/search")) == 4  # not asked again after the cancel


class TestParity:
    async def test_the_sandbox_and_the_http_provider_write_the_same_prospects(
        self, engine: AsyncEngine, factory: Factory, fake: FakeProvider
    ) -> None:
        """One interface, two implementations, one behaviour: the fake serves exactly what
        the sandbox makes up for a search, and both jobs write the same prospects."""
        sandboxed = await tenant(factory, credits=GRANT)
        url = sandbox_search(60, "parity")
        profiles = await sandbox_profiles(sandboxed.group, url)
        sandbox = SandboxProvider(page_delay_ms=0)
        enrichments = await sandbox.enrich(
            ProviderAccount(sandboxed.group, None), profiles, with_email=True
        )
        served = await tenant(factory, credits=GRANT)
        account_id = f"acc-{new_id()}"
        async with engine.begin() as conn:
            await repository.connect(conn, served.group, account_id)
        fake.account(account_id).searches[url] = [
            {
                "memberId": p.member_id,
                "publicIdentifier": p.public_identifier,
                "profileUrl": p.profile_url,
                "name": p.name,
                "headline": p.headline,
            }
            for p in profiles
        ]
        for e in enrichments:
            fake.enrichments[e.member_id] = {
                "companyName": e.company_name,
                "title": e.title,
                "workEmail": e.work_email,
            }
        source = search_source(url)
        one = await new_job(engine, sandboxed.group, source, max_results=100, search_emails=True)
        two = await new_job(engine, served.group, source, max_results=100, search_emails=True)

        await run(JobRunner(engine, sandbox), one)
        await run(http_runner(engine, fake), two)

        fields = (
            "provider_id",
            "public_identifier",
            "linkedin_url",
            "name",
            "company_name",
            "title",
            "work_email",
        )
        by_sandbox = [tuple(p[f] for f in fields) for p in await job_prospects(engine, one)]
        by_http = [tuple(p[f] for f in fields) for p in await job_prospects(engine, two)]
        assert len(by_sandbox) == 60
        assert by_http == by_sandbox
        counts = ("status", "found", "created", "updated", "unchanged", "credits_charged")
        state_one, state_two = await job_state(engine, one), await job_state(engine, two)
        assert [state_one[c] for c in counts] == [state_two[c] for c in counts]
        assert state_two["credits_charged"] == 120  # two credits each, with emails


async def _asked(fake: FakeProvider, path: str, n: int) -> bool:
    return len(fake.requests_to(path)) >= n


async def _pages_done(engine: AsyncEngine, job: str, n: int) -> bool:
    return int((await job_state(engine, job))["pages_done"]) >= n
