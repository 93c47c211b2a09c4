"""The job queue: procrastinate on its own psycopg 3 pool (the API's engine stays on asyncpg).

The `prospecting_jobs` row is the source of truth; a queue entry only says "run job X". Its
queueing lock is the job id, so a job waits in the queue at most once however often it is
deferred (the API after its commit, the reconcile loop, a retry), and its lock is the job id
too, so two workers never run one job at the same time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import procrastinate
from procrastinate import exceptions as queue_errors
from procrastinate.jobs import Job
from procrastinate.retry import BaseRetryStrategy, RetryDecision
from psycopg_pool import AsyncConnectionPool

logger = logging.getLogger(__name__)

QUEUE = "prospecting"
TASK = "prospecting.run_job"
APPLICATION_NAME = "sonarly-api-queue"
# A worker that could not reach the database retries the job after this many seconds, at
# most this many times in a row (the job row keeps its own count, see runner.MAX_ATTEMPTS).
RETRY_UNAVAILABLE_SECONDS = 5

JobHandler = Callable[[str], Awaitable[None]]


class WorkerStopping(Exception):
    """Raised by a job between two pages when its worker is stopping: the job goes back to
    the queue at once and resumes, on any worker, from its last committed page."""


class DatabaseUnavailable(Exception):
    """The database stayed unreachable longer than a page waits for it: retried later."""


class _RetryPolicy(BaseRetryStrategy):
    """Requeue what an interruption stopped; never replay a job that failed on its own (the
    runner has then recorded the failure on the job row already)."""

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        if isinstance(exception, WorkerStopping | asyncio.CancelledError):
            return RetryDecision(retry_in={"seconds": 0})
        if isinstance(exception, DatabaseUnavailable):
            return RetryDecision(retry_in={"seconds": RETRY_UNAVAILABLE_SECONDS})
        return None


def queue_conninfo(database_url: str) -> str:
    """libpq's form of DATABASE_URL (postgresql+asyncpg://… and asyncpg's `ssl=` option)."""
    url = database_url
    for prefix in ("postgresql+asyncpg://", "postgres://"):
        if url.startswith(prefix):
            url = "postgresql://" + url.removeprefix(prefix)
    parts = urlsplit(url)
    query = [("sslmode" if k == "ssl" else k, v) for k, v in parse_qsl(parts.query)]
    return urlunsplit(parts._replace(query=urlencode(query)))


class JobQueue:
    """The procrastinate app of one process: `defer` from the API, and the task a worker runs
    (`handler`, set only in processes that run workers)."""

    def __init__(
        self,
        database_url: str,
        *,
        max_connections: int = 4,
        connect_timeout_seconds: float = 2.0,
        wait_seconds: float = 5.0,
    ) -> None:
        self._pool = AsyncConnectionPool(
            queue_conninfo(database_url),
            # Opened lazily: the API starts even while the database is down, as it does
            # without a queue.
            min_size=0,
            max_size=max_connections,
            timeout=wait_seconds,
            kwargs={
                "connect_timeout": max(1, round(connect_timeout_seconds)),
                "application_name": APPLICATION_NAME,
            },
            check=AsyncConnectionPool.check_connection,
            name="prospecting-queue",
            open=False,
        )
        self.app = procrastinate.App(connector=procrastinate.PsycopgConnector())
        self.handler: JobHandler | None = None
        self.app.task(name=TASK, queue=QUEUE, retry=_RetryPolicy(), pass_context=False)(self._run)

    async def open(self) -> None:
        await self._pool.open(wait=False)
        await self.app.open_async(self._pool)

    async def close(self) -> None:
        await self.app.close_async()
        await self._pool.close()

    async def defer(self, job_id: str) -> bool:
        """Queue job `job_id`; False when it is already waiting in the queue."""
        deferrer = self.app.configure_task(TASK, queue=QUEUE, lock=job_id, queueing_lock=job_id)
        try:
            await deferrer.defer_async(job_id=job_id)
        except queue_errors.AlreadyEnqueued:
            return False
        return True

    async def _run(self, job_id: str) -> None:
        if self.handler is None:
            raise RuntimeError("this process runs no prospecting worker")
        await self.handler(job_id)

    @property
    def manager(self) -> Any:
        """procrastinate's job manager (stalled jobs, retries): for the reconcile loop."""
        return self.app.job_manager
