"""A job worker inside a process (`sonarly-api worker`, or `serve`'s in-process one):
procrastinate's worker running `JobRunner`, plus the reconcile loop, kept alive through
database outages.

Stopping (`stop()`, on SIGTERM) lets every running job finish the page it is on; the job then
goes back to the queue and resumes elsewhere from its last committed page. Jobs still running
after `grace_seconds` are cancelled, which requeues them the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from procrastinate.worker import Worker
from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api.config import Settings
from sonarly_api.db import create_engine
from sonarly_api.prospecting.metrics import JobMetrics
from sonarly_api.prospecting.queue import QUEUE, JobQueue
from sonarly_api.prospecting.reconcile import (
    HEARTBEAT_SECONDS,
    RECONCILE_EVERY,
    STALLED_AFTER_SECONDS,
    reconcile_once,
)
from sonarly_api.prospecting.runner import JobRunner
from sonarly_api.providers.base import Provider

logger = logging.getLogger(__name__)

POLL_SECONDS = 2.0  # a job requeued by a retry is not notified: found by this poll
RESTART_SECONDS = 2.0


class JobWorker:
    def __init__(
        self,
        engine: AsyncEngine,
        queue: JobQueue,
        provider: Provider,
        *,
        concurrency: int,
        statement_timeout_ms: int,
        grace_seconds: float | None = None,
        name: str = "prospecting",
    ) -> None:
        self.queue = queue
        self.engine = engine
        self.concurrency = concurrency
        self.grace_seconds = grace_seconds
        self.name = name
        self.stopping = asyncio.Event()
        self.runner = JobRunner(
            engine,
            provider,
            statement_timeout_ms=statement_timeout_ms,
            stopping=self.stopping,
            metrics=JobMetrics(),
        )
        queue.handler = self.runner.run
        self._worker: Worker | None = None

    def stop(self) -> None:
        """Finish the current pages, requeue the jobs, and return from `run`."""
        if not self.stopping.is_set():
            logger.info(
                "job worker stopping: current pages finish, their jobs go back to the queue"
            )
        self.stopping.set()
        if self._worker is not None:
            self._worker.stop()  # type: ignore[no-untyped-call]

    async def run(self) -> None:
        reconciler = asyncio.create_task(self._reconcile_forever(), name="reconcile jobs")
        try:
            while not self.stopping.is_set():
                self._worker = Worker(
                    self.queue.app,
                    queues=[QUEUE],
                    name=self.name,
                    concurrency=self.concurrency,
                    fetch_job_polling_interval=POLL_SECONDS,
                    shutdown_graceful_timeout=self.grace_seconds,
                    delete_jobs="successful",
                    install_signal_handlers=False,
                    update_heartbeat_interval=HEARTBEAT_SECONDS,
                    stalled_worker_timeout=STALLED_AFTER_SECONDS,
                )
                try:
                    await self._worker.run()  # type: ignore[no-untyped-call]
                except Exception as exc:
                    # procrastinate's worker stops when it loses the database (its heartbeat
                    # or listener fails): start a new one once it is back.
                    logger.warning("job worker lost the database (%s)", type(exc).__name__)
                if self.stopping.is_set():
                    break
                logger.warning("job worker restarting in %g s", RESTART_SECONDS)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), RESTART_SECONDS)
        finally:
            reconciler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reconciler

    async def _reconcile_forever(self) -> None:
        while True:
            try:
                await reconcile_once(self.engine, self.queue)
            except Exception as exc:
                logger.warning("reconciling jobs failed (%s); trying again", type(exc).__name__)
            # Jittered, so that many workers started together do not reconcile in step.
            await asyncio.sleep(RECONCILE_EVERY * random.uniform(0.8, 1.2))


WORKER_APPLICATION_NAME = "sonarly-api-worker"


def worker_engine(settings: Settings, database_url: str, concurrency: int) -> AsyncEngine:
    """A worker's own engine: a connection per running job and a few for its reads, named
    apart from the API's in pg_stat_activity, and never taken from the lookups' pool."""
    sized = settings.model_copy(update={"db_pool_size": concurrency + 2})
    return create_engine(sized, database_url, application_name=WORKER_APPLICATION_NAME)


class InProcessWorker:
    """`serve`'s job worker (JOB_WORKER=true, which `serve` sets unless --no-worker): it
    shares the API's queue and provider, and stops with the app, within the shutdown
    grace."""

    def __init__(
        self,
        job_worker: JobWorker | None,
        task: asyncio.Task[None] | None,
        engine: AsyncEngine | None,
    ) -> None:
        self._worker = job_worker
        self._task = task
        self._engine = engine

    @classmethod
    def start(
        cls, settings: Settings, database_url: str, queue: JobQueue, provider: Provider
    ) -> InProcessWorker:
        if not settings.job_worker:
            return cls(None, None, None)
        engine = worker_engine(settings, database_url, settings.worker_concurrency)
        job_worker = JobWorker(
            engine,
            queue,
            provider,
            concurrency=settings.worker_concurrency,
            statement_timeout_ms=settings.job_statement_timeout_ms,
            grace_seconds=float(settings.shutdown_grace_seconds),
        )
        task = asyncio.create_task(job_worker.run(), name="job worker")
        return cls(job_worker, task, engine)

    async def stop(self) -> None:
        if self._worker is None or self._task is None or self._engine is None:
            return
        self._worker.stop()
        try:
            await self._task
        except Exception:
            logger.exception("the job worker stopped on an error")
        await self._engine.dispose()
