"""Running one prospecting job: the import stage page by page, then enrichment, then the end.

The provider's pages are gathered into rounds (gather.py: a few hundred profiles, or what a
quarter of a second of waiting brought) and each round commits in ONE transaction: the job
row locked (FOR UPDATE, short lock_timeout) and still `running` under this attempt, the
prospects written (pages.py), recorded as the job's, charged (ledger entry
`{job}:page:{first page}`, unique: a replayed round is never charged twice), and the job's
counts, progress and resume cursor moved on. A cancel commits before or after a round, never
inside one: once it has, no round commits. The provider is called with no transaction and
no connection held, so a slow provider never blocks a cancel.

A provider call is watched and made with patience (patience.py): a cancel stops it at once, a
rate-limited provider slows the job down; any other `ProviderError` fails the job with its code,
keeping (and charging) the pages before.

A job is resumable at any point: a worker killed mid-round leaves the job at its last
committed page; the next attempt (`attempts` + 1, which also fences off the old one should
it still be alive) fetches from `resume_cursor` on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sonarly_api.credits import service as credits
from sonarly_api.prospecting import run_repository as runs
from sonarly_api.prospecting.gather import CommitSize, Gathered, Gatherer
from sonarly_api.prospecting.job_database import JobDatabase
from sonarly_api.prospecting.metrics import JobMetrics
from sonarly_api.prospecting.pages import write_pages
from sonarly_api.prospecting.patience import (
    RATE_LIMIT_PAUSE_SECONDS,
    RATE_LIMIT_RETRIES,
    WATCH_SECONDS,
    JobGone,
    ProviderPatience,
)
from sonarly_api.prospecting.queue import DatabaseUnavailable, WorkerStopping
from sonarly_api.prospecting.sources import Source, fetch_page
from sonarly_api.prospecting.urls import profile_url_of
from sonarly_api.providers.base import Profile, Provider, ProviderAccount, ProviderError

logger = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_COMMIT_SIZE = CommitSize()
# Prospects per enrichment call: the provider's bound (docs/provider-api.md).
ENRICH_BATCH = 25
# A job picked up this many times without finishing (crashes, outages, restarts) fails
# with a clear error rather than looping forever.
MAX_ATTEMPTS = 25


class _Stop(Exception):
    """The job is no longer this attempt's to run: cancelled, finished, or taken over."""


@dataclass
class _Import:
    pages_done: int
    found: int
    cursor: str | None


@dataclass(frozen=True)
class _Fetched:
    """A provider page, cut to the job's limit."""

    profiles: list[Profile]
    found: int  # the job's profiles up to this page
    next_cursor: str | None
    last: bool  # the import stage's last page


_Update = tuple[str, str | None, str | None, str | None]  # prospect id, company, title, email


@dataclass(frozen=True)
class _Enriched:
    """The provider's answer for one enrichment batch of the job's prospects."""

    updates: list[_Update]
    count: int  # prospects asked about
    last_id: str  # the batch's last prospect id: where the next one starts
    last: bool  # the last batch of what was read


class JobRunner:
    def __init__(
        self,
        engine: AsyncEngine,
        provider: Provider,
        *,
        statement_timeout_ms: int = 30_000,
        stopping: asyncio.Event | None = None,
        metrics: JobMetrics | None = None,
        database_wait_seconds: float = 60.0,
        watch_seconds: float = WATCH_SECONDS,
        rate_limit_pause_seconds: float = RATE_LIMIT_PAUSE_SECONDS,
        rate_limit_retries: int = RATE_LIMIT_RETRIES,
        commit_size: CommitSize = DEFAULT_COMMIT_SIZE,
    ) -> None:
        self.database = JobDatabase(engine, statement_timeout_ms, database_wait_seconds)
        self.commit_size = commit_size
        self.provider = provider
        self.stopping = stopping or asyncio.Event()
        self.metrics = metrics or JobMetrics()
        self.patience = ProviderPatience(
            self.stopping, watch_seconds, rate_limit_pause_seconds, rate_limit_retries
        )

    async def run(self, job_id: str) -> None:
        """Run (or resume) the job; returns when it is final or no longer ours. Raises
        WorkerStopping / DatabaseUnavailable for the queue to run it again later."""
        job = await self.database.transaction(lambda conn: runs.claim(conn, job_id))
        if job is None:
            return  # finished meanwhile (e.g. cancelled while queued)
        started = time.monotonic()
        if job.attempts == 1:
            self.metrics.picked(job.queue_wait_seconds)
        logger.info("job %s picked up (attempt %d, page %d)", job.id, job.attempts, job.pages_done)
        try:
            if job.attempts > MAX_ATTEMPTS:
                raise _Failure(
                    "INTERNAL_ERROR",
                    f"the job was interrupted {MAX_ATTEMPTS} times; what it wrote is kept",
                )
            account = await self._account(job)
            if job.import_status != "completed":
                await self._import(job, account)
            await self._enrich(job, account)
            status = await self._finish(job, None)
        except _Stop:
            return
        except ProviderError as exc:
            status = await self._finish(job, _Failure(exc.code, exc.message))
        except _Failure as failure:
            status = await self._finish(job, failure)
        except (WorkerStopping, DatabaseUnavailable, asyncio.CancelledError):
            raise
        except Exception:
            # Logged by type only: an exception message may quote SQL or data.
            logger.exception("job %s stopped on an unexpected error", job.id)
            await self._finish(
                job,
                _Failure("INTERNAL_ERROR", "the job stopped on an unexpected error"),
            )
            raise
        if status is not None:
            self.metrics.finished(status, time.monotonic() - started)

    # --- import --------------------------------------------------------------------------

    async def _account(self, job: runs.RunningJob) -> ProviderAccount:
        account = await self.provider.is_connected(job.account_group_id)
        if account is not None:
            return account
        if job.source.get("source") == "url_upload":
            return ProviderAccount(job.account_group_id, None)
        raise _Failure(
            "LINKEDIN_NOT_CONNECTED", "the account group has no connected LinkedIn account"
        )

    async def _import(self, job: runs.RunningJob, account: ProviderAccount) -> None:
        state = _Import(job.pages_done, job.found, job.resume_cursor)
        source = Source.of(job.source, job.max_results)
        # Where the provider is asked next: ahead of `state` (what is committed) while a
        # round's pages wait for their transaction.
        found, cursor = state.found, state.cursor

        async def fetch() -> tuple[_Fetched, int, bool]:
            nonlocal found, cursor
            page = await self._provider_call(
                job, partial(fetch_page, self.provider, account, source, cursor)
            )
            remaining = source.limit - found
            profiles = page.profiles[:remaining]
            last = page.next_cursor is None or len(page.profiles) >= remaining
            found, cursor = found + len(profiles), page.next_cursor
            return _Fetched(profiles, found, cursor, last), len(profiles), last

        pages = Gatherer(fetch, self.commit_size, self.stopping)
        try:
            while not await self._import_round(job, source, state, await pages.next_round()):
                if self.stopping.is_set():
                    raise WorkerStopping
        finally:
            await pages.aclose()

    async def _import_round(
        self,
        job: runs.RunningJob,
        source: Source,
        state: _Import,
        gathered: Gathered[_Fetched],
    ) -> bool:
        """A round's pages committed in one transaction; `state` moved past them. True once
        the import stage is over."""
        n, k = state.pages_done, len(gathered.items)
        end = gathered.items[-1]
        pages = runs.PagesResult(
            pages=k,
            found=end.found - state.found,
            cursor=end.next_cursor,
            progress=source.progress(end.found, end.next_cursor),
            last=end.last,
        )

        async def commit(conn: AsyncConnection) -> None:
            locked = await self._lock(conn, job)
            if locked.pages_done == n + k:
                return  # committed already: the answer to our COMMIT was lost
            if locked.pages_done != n:
                raise _Stop
            profiles = [p for page in gathered.items for p in page.profiles]
            per_prospect = 2 if job.search_emails else 1
            group = job.account_group_id
            written = await write_pages(conn, group, job.id, n, profiles, per_prospect)
            await runs.pages_committed(conn, group, job.id, pages, written)
            self.metrics.written(written.created, written.updated, written.unchanged)

        await self.database.transaction(commit)
        state.pages_done, state.found, state.cursor = n + k, end.found, end.next_cursor
        if gathered.interrupted is not None:
            raise gathered.interrupted
        return end.last

    # --- enrichment ----------------------------------------------------------------------

    async def _enrich(self, job: runs.RunningJob, account: ProviderAccount) -> None:
        group = job.account_group_id
        after: str | None = None
        if job.resume_cursor is not None and job.resume_cursor.startswith(runs.ENRICH_CURSOR):
            after = job.resume_cursor.removeprefix(runs.ENRICH_CURSOR)

        async def read_position(conn: AsyncConnection) -> tuple[int, int]:
            total = await runs.count_job_prospects(conn, group, job.id)
            done = (
                0 if after is None else await runs.count_job_prospects(conn, group, job.id, after)
            )
            return total, done

        total, done = await self.database.read(read_position)
        # Read a few transactions' worth at a time, asked of the provider ENRICH_BATCH at a
        # time.
        read_size = max(ENRICH_BATCH, 4 * self.commit_size.rows)
        while True:
            if self.stopping.is_set():
                raise WorkerStopping
            todo = await self.database.read(
                partial(self._next_batch, group, job.id, after, read_size)
            )
            if not todo:
                return
            done = await self._enrich_read(job, account, todo, done, total)
            after = todo[-1].prospect_id

    async def _enrich_read(
        self,
        job: runs.RunningJob,
        account: ProviderAccount,
        todo: list[runs.ToEnrich],
        done: int,
        total: int,
    ) -> int:
        """The provider's enrichment of `todo`, committed round by round; returns `done` moved
        past it."""
        batches = iter([todo[i : i + ENRICH_BATCH] for i in range(0, len(todo), ENRICH_BATCH)])

        async def fetch() -> tuple[_Enriched, int, bool]:
            batch = next(batches)
            profiles = [
                Profile(
                    b.provider_id,
                    b.public_identifier or "",
                    profile_url_of(b.public_identifier),
                    None,
                    None,
                )
                for b in batch
            ]
            found = await self._provider_call(
                job, partial(self.provider.enrich, account, profiles, job.search_emails)
            )
            by_member = {e.member_id: e for e in found}
            updates = [
                (b.prospect_id, e.company_name, e.title, e.work_email)
                for b in batch
                if (e := by_member.get(b.provider_id)) is not None
            ]
            last = batch[-1] is todo[-1]
            return _Enriched(updates, len(batch), batch[-1].prospect_id, last), len(batch), last

        rounds = Gatherer(fetch, self.commit_size, self.stopping)
        try:
            while True:
                gathered = await rounds.next_round()
                done += sum(e.count for e in gathered.items)
                await self._enrich_commit(job, gathered.items, done, total)
                if gathered.interrupted is not None:
                    raise gathered.interrupted
                if gathered.items[-1].last:
                    return done
                if self.stopping.is_set():
                    raise WorkerStopping
        finally:
            await rounds.aclose()

    async def _enrich_commit(
        self, job: runs.RunningJob, enriched: list[_Enriched], done: int, total: int
    ) -> None:
        updates = [u for e in enriched for u in e.updates]
        last_id = enriched[-1].last_id
        progress = min(1.0, done / total) if total else 1.0

        async def commit(conn: AsyncConnection) -> None:
            await self._lock(conn, job)
            group = job.account_group_id
            await runs.enrich_prospects(conn, group, updates, job.search_emails)
            await runs.enrichment_done(conn, group, job.id, last_id, progress)

        await self.database.transaction(commit)

    @staticmethod
    async def _next_batch(
        group: str, job_id: str, after: str | None, limit: int, conn: AsyncConnection
    ) -> list[runs.ToEnrich]:
        return await runs.next_to_enrich(conn, group, job_id, after, limit)

    # --- waiting on the provider ----------------------------------------------------------

    async def _provider_call(self, job: runs.RunningJob, call: Callable[[], Awaitable[T]]) -> T:
        """`call()` made with patience (patience.py): watched for a cancel, paused and made
        again while the provider rate limits."""
        still_ours = partial(self.database.read, partial(self._still_ours, job))
        try:
            return await self.patience.call(job.id, still_ours, call)
        except JobGone:
            raise _Stop from None

    @staticmethod
    async def _still_ours(job: runs.RunningJob, conn: AsyncConnection) -> bool:
        return await runs.still_running(conn, job.account_group_id, job.id, job.attempts)

    # --- the end -------------------------------------------------------------------------

    async def _finish(self, job: runs.RunningJob, failure: _Failure | None) -> str | None:
        """Completed (failure None) or failed, and the rest of the reservation released, in
        one transaction; None when the job was no longer ours (a cancel won)."""

        async def end(conn: AsyncConnection) -> str | None:
            try:
                await self._lock(conn, job)
            except _Stop:
                return None
            group = job.account_group_id
            if failure is None:
                await runs.complete(conn, group, job.id)
            else:
                await runs.fail(conn, group, job.id, failure.code, failure.message)
            await credits.release(conn, group, job.id)
            return "completed" if failure is None else "failed"

        status = await self.database.transaction(end)
        if status is not None:
            logger.info("job %s %s", job.id, status)
        return status

    # --- plumbing ------------------------------------------------------------------------

    async def _lock(self, conn: AsyncConnection, job: runs.RunningJob) -> runs.LockedJob:
        locked = await runs.lock(conn, job.account_group_id, job.id)
        if locked is None or locked.status != "running" or locked.attempts != job.attempts:
            raise _Stop
        return locked


class _Failure(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
