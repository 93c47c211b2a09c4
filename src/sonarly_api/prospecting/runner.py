"""Running one prospecting job: the import stage page by page, then enrichment, then the end.

Each page commits in ONE transaction: the job row locked (FOR UPDATE, short lock_timeout)
and still `running` under this attempt, the prospects written (`write_rows`), recorded as
the job's, charged (ledger entry `{job}:page:{n}`, unique: a replayed page is never charged
twice), and the job's counts, progress and resume cursor moved on. A cancel commits before
or after a page, never inside one: once it has, no page commits. The provider is called
with no transaction and no connection held, so a slow provider never blocks a cancel.

A provider call is watched and made with patience (patience.py): a cancel stops it at once, a
rate-limited provider slows the job down; any other `ProviderError` fails the job with its code,
keeping (and charging) the pages before.

A job is resumable at any point: a worker killed mid-page leaves the job at its last
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

import asyncpg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sonarly_api.credits import service as credits
from sonarly_api.db import is_unavailable
from sonarly_api.prospecting import run_repository as runs
from sonarly_api.prospecting.metrics import JobMetrics
from sonarly_api.prospecting.patience import (
    RATE_LIMIT_PAUSE_SECONDS,
    RATE_LIMIT_RETRIES,
    WATCH_SECONDS,
    JobGone,
    ProviderPatience,
)
from sonarly_api.prospecting.queue import DatabaseUnavailable, WorkerStopping
from sonarly_api.prospecting.sources import Source, fetch_page
from sonarly_api.prospects.import_rows import StagedRow
from sonarly_api.prospects.validation import MAX_PROVIDER_ID_LENGTH
from sonarly_api.prospects.writer import write_rows
from sonarly_api.providers.base import Profile, Provider, ProviderAccount, ProviderError

logger = logging.getLogger(__name__)
T = TypeVar("T")

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
    ) -> None:
        self.engine = engine
        self.provider = provider
        self.statement_timeout_ms = statement_timeout_ms
        self.stopping = stopping or asyncio.Event()
        self.metrics = metrics or JobMetrics()
        self.database_wait_seconds = database_wait_seconds
        self.patience = ProviderPatience(
            self.stopping, watch_seconds, rate_limit_pause_seconds, rate_limit_retries
        )

    async def run(self, job_id: str) -> None:
        """Run (or resume) the job; returns when it is final or no longer ours. Raises
        WorkerStopping / DatabaseUnavailable for the queue to run it again later."""
        job = await self._transaction(lambda conn: runs.claim(conn, job_id))
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
        per_prospect = 2 if job.search_emails else 1
        while True:
            page = await self._provider_call(
                job, partial(fetch_page, self.provider, account, source, state.cursor)
            )
            remaining = source.limit - state.found
            profiles = page.profiles[:remaining]
            last = page.next_cursor is None or len(page.profiles) >= remaining
            progress = source.progress(state.found + len(profiles), page.next_cursor)
            n = state.pages_done

            async def commit(
                conn: AsyncConnection,
                n: int = n,
                profiles: list[Profile] = profiles,
                cursor: str | None = page.next_cursor,
                last: bool = last,
                progress: float = progress,
            ) -> bool:
                locked = await self._lock(conn, job)
                if locked.pages_done == n + 1:
                    return False  # committed already: the answer to our COMMIT was lost
                if locked.pages_done != n:
                    raise _Stop
                result = await self._write_page(
                    conn, job, n, profiles, cursor, last, progress, per_prospect
                )
                await runs.page_done(conn, job.account_group_id, job.id, result)
                self.metrics.written(result.created, result.updated, result.unchanged)
                return True

            await self._transaction(commit)
            state.pages_done, state.found = n + 1, state.found + len(profiles)
            state.cursor = page.next_cursor
            if last:
                return
            if self.stopping.is_set():
                raise WorkerStopping

    async def _write_page(
        self,
        conn: AsyncConnection,
        job: runs.RunningJob,
        n: int,
        profiles: list[Profile],
        cursor: str | None,
        last: bool,
        progress: float,
        per_prospect: int,
    ) -> runs.PageResult:
        group = job.account_group_id
        valid = [p for p in profiles if 0 < len(p.member_id) <= MAX_PROVIDER_ID_LENGTH]
        pairs = ([p.member_id for p in valid], [p.public_identifier for p in valid])
        # Company and title come from enrichment, later: a page keeps what the prospect has,
        # so re-importing an enriched prospect leaves it unchanged (and free).
        known = {
            (e.provider_id, e.public_identifier): e
            for e in await runs.prospects_of(conn, group, *pairs)
        }
        rows: list[StagedRow] = []
        for line, p in enumerate(valid, start=1):
            before = known.get((p.member_id, p.public_identifier))
            company = before.company_name if before is not None else None
            title = before.title if before is not None else None
            rows.append(
                (
                    line,
                    p.member_id,
                    None,
                    p.public_identifier,
                    p.profile_url,
                    p.name,
                    company,
                    title,
                )
            )
        counts = await write_rows(conn, group, rows)
        written = await runs.prospects_of(conn, group, *pairs)
        await runs.record_prospects(conn, group, job.id, [e.prospect_id for e in written])
        amount = (counts.created + counts.updated) * per_prospect
        charged = await credits.charge(conn, group, job.id, f"{job.id}:page:{n}", amount)
        return runs.PageResult(
            found=len(profiles),
            created=counts.created,
            updated=counts.updated,
            unchanged=counts.unchanged,
            charged=amount if charged else 0,
            cursor=cursor,
            progress=progress,
            last=last,
        )

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

        total, done = await self._read(read_position)
        while True:
            if self.stopping.is_set():
                raise WorkerStopping
            batch = await self._read(partial(self._next_batch, group, job.id, after))
            if not batch:
                return
            profiles = [
                Profile(
                    b.provider_id, b.public_identifier or "", b.linkedin_url or "", b.name, None
                )
                for b in batch
            ]
            found = await self._provider_call(
                job, partial(self.provider.enrich, account, profiles, job.search_emails)
            )
            by_member = {e.member_id: e for e in found}
            updates = []
            for b in batch:
                e = by_member.get(b.provider_id)
                if e is not None:
                    updates.append((b.prospect_id, e.company_name, e.title, e.work_email))
            done += len(batch)
            last_id = batch[-1].prospect_id
            progress = min(1.0, done / total) if total else 1.0

            async def commit(
                conn: AsyncConnection,
                updates: list[tuple[str, str | None, str | None, str | None]] = updates,
                last_id: str = last_id,
                progress: float = progress,
            ) -> None:
                await self._lock(conn, job)
                await runs.enrich_prospects(conn, group, updates, job.search_emails)
                await runs.enrichment_done(conn, group, job.id, last_id, progress)

            await self._transaction(commit)
            after = last_id

    @staticmethod
    async def _next_batch(
        group: str, job_id: str, after: str | None, conn: AsyncConnection
    ) -> list[runs.ToEnrich]:
        return await runs.next_to_enrich(conn, group, job_id, after, ENRICH_BATCH)

    # --- waiting on the provider ----------------------------------------------------------

    async def _provider_call(self, job: runs.RunningJob, call: Callable[[], Awaitable[T]]) -> T:
        """`call()` made with patience (patience.py): watched for a cancel, paused and made
        again while the provider rate limits."""
        still_ours = partial(self._read, partial(self._still_ours, job))
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

        status = await self._transaction(end)
        if status is not None:
            logger.info("job %s %s", job.id, status)
        return status

    # --- plumbing ------------------------------------------------------------------------

    async def _lock(self, conn: AsyncConnection, job: runs.RunningJob) -> runs.LockedJob:
        locked = await runs.lock(conn, job.account_group_id, job.id)
        if locked is None or locked.status != "running" or locked.attempts != job.attempts:
            raise _Stop
        return locked

    async def _transaction(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """`work` in one bounded transaction. While the database is unreachable (or the job
        row stays locked), wait and run it again, from the start: nothing of a transaction
        that did not commit remains, and one that did is recognised by `work` itself."""
        return await self._retrying(work, transaction=True)

    async def _read(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        return await self._retrying(work, transaction=False)

    async def _retrying(
        self, work: Callable[[AsyncConnection], Awaitable[T]], *, transaction: bool
    ) -> T:
        deadline = time.monotonic() + self.database_wait_seconds
        delay = 0.1
        while True:
            try:
                if transaction:
                    async with self.engine.begin() as conn:
                        await runs.bound_transaction(conn, self.statement_timeout_ms)
                        return await work(conn)
                async with self.engine.connect() as conn:
                    return await work(conn)
            except (_Stop, _Failure):
                raise
            except Exception as exc:
                if not _transient(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    raise DatabaseUnavailable from exc
                logger.warning("job database work retried (%s)", type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)


class _Failure(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _transient(exc: BaseException) -> bool:
    """Worth a retry: the database is unreachable, or the job row stayed locked (55P03)."""
    if isinstance(exc, DBAPIError):
        orig = exc.orig
        if isinstance(orig, asyncpg.LockNotAvailableError) or isinstance(
            getattr(orig, "__cause__", None), asyncpg.LockNotAvailableError
        ):
            return True
    return is_unavailable(exc)
