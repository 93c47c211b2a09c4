"""Keeping the queue in step with the job rows, which are the truth.

Each worker, at start and every `RECONCILE_EVERY` seconds:
- puts back in the queue the jobs of workers that stopped sending heartbeats (killed with
  kill -9, lost their machine): procrastinate keeps them `doing` until someone says so;
- defers every queued or running job that has no live queue entry: the API committed the job
  but crashed before deferring it, or a queue entry ended without the job (an outage).

Both are harmless when several workers do them at once: a retry of a job no longer `doing`
fails and is ignored, and the queueing lock keeps a job in the queue at most once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api.prospecting import run_repository as runs
from sonarly_api.prospecting.queue import QUEUE, JobQueue

logger = logging.getLogger(__name__)

# Worker heartbeats every HEARTBEAT_SECONDS; one silent for STALLED_AFTER_SECONDS is dead.
# A job of a killed worker is back in the queue within STALLED_AFTER + RECONCILE_EVERY
# seconds (25 s) and picked up at once by a free worker.
HEARTBEAT_SECONDS = 5.0
STALLED_AFTER_SECONDS = 20.0
RECONCILE_EVERY = 5.0


@dataclass(frozen=True)
class Reconciled:
    requeued: int  # jobs of dead workers put back in the queue
    deferred: int  # jobs that had no queue entry


async def reconcile_once(engine: AsyncEngine, queue: JobQueue) -> Reconciled:
    requeued = 0
    for entry in await queue.manager.get_stalled_jobs(
        queue=QUEUE, seconds_since_heartbeat=STALLED_AFTER_SECONDS
    ):
        try:
            await queue.manager.retry_job(entry)
        except Exception as exc:  # another worker was first, or the job just ended
            logger.debug("stalled queue entry %s not retried (%s)", entry.id, type(exc).__name__)
            continue
        requeued += 1
        logger.warning("job %s was on a worker that stopped responding: queued again", entry.lock)
    async with engine.connect() as conn:
        orphans = await runs.orphans(conn)
    deferred = 0
    for job_id in orphans:
        if await queue.defer(job_id):
            deferred += 1
            logger.info("job %s had no queue entry: queued", job_id)
    return Reconciled(requeued, deferred)
