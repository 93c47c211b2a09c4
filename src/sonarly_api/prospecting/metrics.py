"""Prometheus metrics of prospecting jobs.

- `sonarly_prospecting_jobs{status}`: jobs per status, read from the database at scrape time
  (the job rows are the truth, whichever process ran them);
- what workers observe, in the process that runs them (`serve`'s in-process worker, or
  `sonarly-api worker --metrics-port`): queue wait (creation to pick-up), run time (pick-up
  to a final status), jobs finished per status, prospects written per outcome.

Jobs are few next to requests: prometheus_client's own Counter and Histogram are cheap enough
here, and in multiprocess mode (`serve --workers N`) they write to its shared files by
themselves.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy.ext.asyncio import AsyncEngine

JOB_STATUSES = ("queued", "running", "completed", "failed", "cancelled")
# Seconds: a job waits milliseconds for a free worker, or minutes behind others; it runs
# from under a second (sandbox, no delay) to many minutes (a real provider).
WAIT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
RUN_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)

REGISTRY = CollectorRegistry(auto_describe=True)
QUEUE_WAIT = Histogram(
    "sonarly_prospecting_job_queue_wait_seconds",
    "Time from a job's creation to a worker picking it up (first attempt).",
    buckets=WAIT_BUCKETS,
    registry=REGISTRY,
)
RUN_TIME = Histogram(
    "sonarly_prospecting_job_run_seconds",
    "Time from a worker picking a job up to its final status (jobs finished by a worker).",
    ("status",),
    buckets=RUN_BUCKETS,
    registry=REGISTRY,
)
FINISHED = Counter(
    "sonarly_prospecting_jobs_finished",
    "Jobs a worker brought to a final status, by status.",
    ("status",),
    registry=REGISTRY,
)
PROSPECTS_WRITTEN = Counter(
    "sonarly_prospecting_prospects",
    "Prospects written by job pages, by outcome (created, updated, unchanged).",
    ("outcome",),
    registry=REGISTRY,
)


class JobMetrics:
    """What the runner reports; one instance per process."""

    def picked(self, queue_wait_seconds: float) -> None:
        QUEUE_WAIT.observe(max(0.0, queue_wait_seconds))

    def finished(self, status: str, run_seconds: float) -> None:
        FINISHED.labels(status).inc()
        RUN_TIME.labels(status).observe(max(0.0, run_seconds))

    def written(self, created: int, updated: int, unchanged: int) -> None:
        for outcome, n in (("created", created), ("updated", updated), ("unchanged", unchanged)):
            if n:
                PROSPECTS_WRITTEN.labels(outcome).inc(n)


class StatusCounts:
    """A collector of the last jobs-per-status reading (refreshed before each scrape)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] | None = None

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "sonarly_prospecting_jobs", "Prospecting jobs per status.", labels=("status",)
        )
        if self.counts is not None:
            for status in JOB_STATUSES:
                family.add_metric((status,), self.counts.get(status, 0))
        return [family]


async def read_status_counts(engine: AsyncEngine) -> dict[str, int] | None:
    """Jobs per status now; None when the database does not answer (the scrape still works)."""
    from sonarly_api.prospecting.run_repository import status_counts

    try:
        async with engine.connect() as conn:
            return await status_counts(conn)
    except Exception:
        return None
