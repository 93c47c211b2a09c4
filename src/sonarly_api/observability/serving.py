"""What `sonarly-api serve` adds around uvicorn: each worker's logging, and the directory
prometheus_client shares between workers."""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import FastAPI

from sonarly_api.app import create_app
from sonarly_api.config import get_settings
from sonarly_api.observability.logs import configure_logging
from sonarly_api.observability.metrics import MULTIPROC_ENV


def create_served_app() -> FastAPI:
    """uvicorn's factory: it runs in every worker process, before uvicorn's own start-up
    lines, so logging is configured there before anything is written."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    # What exists now (modules, routes, schemas, SQLAlchemy's metadata: ~150,000 objects) lives
    # as long as the worker. Frozen, the collector stops re-scanning it: a full collection took
    # 140-330 ms with it and 10-35 ms without, and each one stalled every request in flight
    # (seen in the benchmark's open-loop test as p99 in the hundreds of ms; docs/performance.md).
    # Not in create_app: tests build many apps, and frozen garbage is never freed.
    gc.collect()
    gc.freeze()
    # A young-generation collection every 10,000 net allocations instead of 700: a request's
    # objects die by reference counting, but the ~30 requests in flight per worker kept
    # ~700 alive, so the collector ran every few requests (~450 collections in 20 s at
    # 1,200 req/s, pauses up to 10 ms) promoting in-flight objects to older generations.
    # With 10,000: three in 30 s. Cyclic garbage is still collected, just in larger batches.
    gc.set_threshold(10_000, 10, 10)
    return app


@contextmanager
def metrics_multiprocess_dir(workers: int) -> Iterator[str | None]:
    """With several workers, a fresh directory for prometheus_client's multiprocess mode,
    named in the environment the workers inherit (it must be set before they import
    prometheus_client) and removed at exit. Fresh, because files left by an earlier run
    would be added to this run's counters. One worker: single-process mode, unless the
    variable is already set (several `serve` processes sharing a directory)."""
    if workers <= 1:
        yield os.environ.get(MULTIPROC_ENV) or None
        return
    path = tempfile.mkdtemp(prefix="sonarly-metrics-")
    os.environ[MULTIPROC_ENV] = path
    try:
        yield path
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(path, ignore_errors=True)
