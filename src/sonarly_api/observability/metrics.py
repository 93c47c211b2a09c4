"""Prometheus metrics: requests and latency by route template, method and status; requests
refused by a rate limit; the database pool.

`observe` runs on every request, so it only adds to plain in-process numbers (about a
microsecond; prometheus_client's own `inc`/`observe` take a lock each and cost several).
prometheus_client reads them when scraped:

- single process: a collector turns them into metric families at scrape time;
- several workers (`PROMETHEUS_MULTIPROC_DIR` set — `serve --workers N` sets it to a fresh
  directory before the workers start): each worker adds its increments, once a second and
  before answering a scrape, to prometheus_client's memory-mapped files, and a scrape —
  answered by whichever worker — sums every worker's files. Another worker's last second
  may be missing from a scrape; it is in the next one.
"""

from __future__ import annotations

import asyncio
import os
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.utils import floatToGoString
from prometheus_client.values import ValueClass

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "<unmatched>"  # the route label of a request no route matched (a 404)
OTHER_METHOD = "OTHER"
# Seconds. The lookup answers in about a millisecond: resolution where it lives.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LE = (*(floatToGoString(b) for b in BUCKETS), "+Inf")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LABELS = ("method", "route", "status")

REQUESTS = "sonarly_http_requests"
REQUESTS_HELP = "HTTP requests answered, by route template, method and status."
DURATION = "sonarly_http_request_duration_seconds"
DURATION_HELP = "Time from the request reaching the app to the end of its response."
RATE_LIMITED = "sonarly_rate_limited_requests"
RATE_LIMITED_HELP = (
    "Requests refused with 429 (per-key budget, or failed authentications per address)."
)
STORAGE_FAILURES = "sonarly_rate_limit_storage_failures"
STORAGE_FAILURES_HELP = (
    "Rate-limit storage calls that failed or timed out; their requests went through uncounted."
)
POOL = "sonarly_db_pool_connections"
POOL_HELP = "Database connections of the pool, by state (in_use, idle); summed over workers."
_HELP = {
    REQUESTS: REQUESTS_HELP,
    DURATION: DURATION_HELP,
    RATE_LIMITED: RATE_LIMITED_HELP,
    STORAGE_FAILURES: STORAGE_FAILURES_HELP,
}

PoolSource = Callable[[], tuple[int, int] | None]  # (in use, idle)
SeriesKey = tuple[str, str, int]  # method, route template, status


def multiprocess_dir() -> str | None:
    path = os.environ.get(MULTIPROC_ENV) or None
    # prometheus_client picks its value storage when first imported: the variable must be
    # set before that, or the values stay in this process and every scrape misses them.
    if path is not None and not getattr(ValueClass, "_multiprocess", False):
        raise RuntimeError(f"{MULTIPROC_ENV} was set after prometheus_client was imported")
    return path


class _Series:
    """One label combination: the latency sum and the count per bucket (not cumulative;
    the last slot is +Inf). The request count is their total."""

    __slots__ = ("buckets", "total")

    def __init__(self) -> None:
        self.total = 0.0
        self.buckets = [0] * len(_LE)


class RequestMetrics:
    def __init__(
        self,
        pool_source: PoolSource,
        directory: str | None = None,
        storage_failures: Callable[[], int] = lambda: 0,
    ) -> None:
        self.directory = directory
        self._pool_source = pool_source
        # This process's count of failed rate-limit storage calls, and how much of it the
        # files already hold (multiprocess mode).
        self._storage_failures = storage_failures
        self._storage_failures_flushed = 0
        self._series: dict[SeriesKey, _Series] = {}
        self._rate_limited: dict[str, int] = {}
        self._files: dict[tuple[str, ...], Any] = {}  # multiprocess values, by series
        self._pool_gauge: Gauge | None = None
        # Other features' metrics (prospecting jobs): collectors asked at every scrape, those
        # of this process only (in multiprocess mode their values are in the shared files
        # already), and what to refresh before a scrape.
        self.collectors: list[Any] = []
        self.process_collectors: list[Any] = []
        self.before_scrape: list[Callable[[], Awaitable[None]]] = []
        if directory is not None:
            # Another worker's pool cannot be read at scrape time: each worker publishes its
            # own, and the scrape sums the live workers' values.
            self._pool_gauge = Gauge(
                POOL, POOL_HELP, ("state",), multiprocess_mode="livesum", registry=None
            )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        if method not in _METHODS:
            method = OTHER_METHOD  # the client chooses the method: keep the labels bounded
        series = self._series.get((method, route, status))
        if series is None:
            # Bounded: methods, route templates and statuses are all finite.
            series = self._series[(method, route, status)] = _Series()
        series.total += seconds
        series.buckets[bisect_left(BUCKETS, seconds)] += 1
        if status == 429:
            self._rate_limited[route] = self._rate_limited.get(route, 0) + 1

    # --- single process ----------------------------------------------------------------

    def collect(self) -> Iterable[Metric]:
        """prometheus_client's collector protocol (single-process mode). Runs on the event
        loop, like `observe`: it reads numbers nothing changes meanwhile."""
        requests = CounterMetricFamily(REQUESTS, REQUESTS_HELP, labels=LABELS)
        duration = HistogramMetricFamily(DURATION, DURATION_HELP, labels=LABELS)
        for (method, route, status), series in self._series.items():
            labels = (method, route, str(status))
            cumulative, buckets = 0, []
            for le, count in zip(_LE, series.buckets, strict=True):
                cumulative += count
                buckets.append((le, float(cumulative)))
            requests.add_metric(labels, cumulative)
            duration.add_metric(labels, buckets, series.total)
        limited = CounterMetricFamily(RATE_LIMITED, RATE_LIMITED_HELP, labels=("route",))
        for route, count in self._rate_limited.items():
            limited.add_metric((route,), count)
        pool = GaugeMetricFamily(POOL, POOL_HELP, labels=("state",))
        connections = self._pool_source()
        if connections is not None:
            pool.add_metric(("in_use",), connections[0])
            pool.add_metric(("idle",), connections[1])
        failures = CounterMetricFamily(
            STORAGE_FAILURES, STORAGE_FAILURES_HELP, value=self._storage_failures()
        )
        return [requests, duration, limited, pool, failures]

    # --- several workers ---------------------------------------------------------------

    def flush(self) -> None:
        """Move this worker's increments since the last flush into its files, and publish
        its pool (multiprocess mode; on the event loop, between requests)."""
        if self.directory is None:
            return
        for (method, route, status), series in self._series.items():
            count = sum(series.buckets)
            if not count:
                continue
            labels = (method, route, str(status))
            self._add("counter", REQUESTS, "_total", LABELS, labels, count)
            self._add("histogram", DURATION, "_sum", LABELS, labels, series.total)
            for le, n in zip(_LE, series.buckets, strict=True):
                if n:
                    bucket = (*LABELS, "le"), (*labels, le)
                    self._add("histogram", DURATION, "_bucket", *bucket, n)
            series.total, series.buckets = 0.0, [0] * len(_LE)
        for route, n in self._rate_limited.items():
            if n:
                self._add("counter", RATE_LIMITED, "_total", ("route",), (route,), n)
                self._rate_limited[route] = 0
        failures = self._storage_failures()
        if failures > self._storage_failures_flushed:
            n = failures - self._storage_failures_flushed
            self._add("counter", STORAGE_FAILURES, "_total", (), (), n)
            self._storage_failures_flushed = failures
        if self._pool_gauge is not None:
            connections = self._pool_source()
            if connections is not None:
                self._pool_gauge.labels("in_use").set(connections[0])
                self._pool_gauge.labels("idle").set(connections[1])

    def _add(
        self,
        kind: str,
        metric: str,
        suffix: str,
        names: tuple[str, ...],
        values: tuple[str, ...],
        n: float,
    ) -> None:
        # The storage prometheus_client's own Counter and Histogram write to (the same file
        # entries, so MultiProcessCollector reads them), minus their per-call locking.
        key = (metric + suffix, *values)
        value = self._files.get(key)
        if value is None:
            value = ValueClass(kind, metric, metric + suffix, names, values, _HELP[metric])
            self._files[key] = value
        value.inc(n)

    async def flush_forever(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            self.flush()

    def close(self) -> None:
        """A stopping worker writes its last increments and withdraws its pool gauges."""
        if self.directory is not None:
            self.flush()
            mark_process_dead(os.getpid(), self.directory)

    # --- scrape ------------------------------------------------------------------------

    async def exposition(self) -> bytes:
        """Every metric in the text format (every worker's, in multiprocess mode)."""
        for refresh in self.before_scrape:
            await refresh()
        registry = CollectorRegistry()
        for collector in self.collectors:
            registry.register(collector)
        if self.directory is None:
            registry.register(self)
            for collector in self.process_collectors:
                registry.register(collector)
            return generate_latest(registry)
        self.flush()
        MultiProcessCollector(registry, path=self.directory)
        # Reads every worker's files: off the event loop.
        return await asyncio.to_thread(generate_latest, registry)
