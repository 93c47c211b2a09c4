"""install_observability(): what create_app adds for operators — the access-log and metrics
middleware, GET /metrics, and the multiprocess flush in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from sonarly_api.config import Settings
from sonarly_api.observability.metrics import RequestMetrics, multiprocess_dir
from sonarly_api.observability.middleware import ObservabilityMiddleware
from sonarly_api.observability.router import metrics_router


def install_observability(app: FastAPI, settings: Settings) -> RequestMetrics | None:
    """Call before adding TraceMiddleware, which must stay the outermost layer. Returns the
    metrics (None with METRICS=off: then nothing is counted and /metrics is a 404)."""
    metrics: RequestMetrics | None = None
    if settings.metrics_mode != "off":

        def pool() -> tuple[int, int] | None:
            state = getattr(app.state, "sonarly", None)  # set by the lifespan
            return state.db.pool_status() if state is not None else None

        def storage_failures() -> int:
            state = getattr(app.state, "sonarly", None)
            return state.rate_limits.storage.failures if state is not None else 0

        metrics = RequestMetrics(pool, multiprocess_dir(), storage_failures)
        _add_job_metrics(app, metrics)
        token = settings.metrics_token
        app.include_router(
            metrics_router(metrics, token.get_secret_value() if token is not None else None)
        )
        if metrics.directory is not None:
            _flush_during_lifespan(app, metrics)
    app.add_middleware(ObservabilityMiddleware, metrics=metrics, log_access=settings.access_log)
    return metrics


def _flush_during_lifespan(app: FastAPI, metrics: RequestMetrics) -> None:
    # Wraps create_app's lifespan rather than editing it: the periodic flush reads the pool
    # the lifespan creates, and exists only in multiprocess mode.
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with inner(app):
            task = asyncio.create_task(metrics.flush_forever())
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                metrics.close()

    app.router.lifespan_context = lifespan


def _add_job_metrics(app: FastAPI, metrics: RequestMetrics) -> None:
    """Prospecting jobs: per status from the database, and this process's worker's own."""
    from sonarly_api.prospecting.metrics import REGISTRY, StatusCounts, read_status_counts

    counts = StatusCounts()

    async def refresh() -> None:
        state = getattr(app.state, "sonarly", None)  # set by the lifespan
        counts.counts = None if state is None else await read_status_counts(state.db.engine)

    metrics.collectors.append(counts)
    metrics.process_collectors.append(REGISTRY)
    metrics.before_scrape.append(refresh)
