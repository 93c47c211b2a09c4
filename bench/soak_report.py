"""The soak test's figures: what the load counted and sampled, judged against its limits, and
written to docs/reliability.md."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import psutil

from bench.live import ROOT

DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"
RSS_GROWTH_LIMIT = 0.10


@dataclass
class Tally:
    scheduled: int = 0
    answered: int = 0
    server_errors: int = 0
    unexpected: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # from the scheduled time
    lags: list[float] = field(default_factory=list)  # how late requests left
    lost: Counter[str] = field(default_factory=Counter)  # no answer, by reason


@dataclass
class Samples:
    rss_mb: list[tuple[float, float]] = field(default_factory=list)  # (elapsed s, MiB)
    backends: list[tuple[float, int]] = field(default_factory=list)
    elapsed: float = 0.0  # from the first scheduled request to the last answer
    in_use_after: int | None = None  # pool connections checked out once the load is over


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def judge(
    tally: Tally, samples: Samples, warmup: float, pool_size: int, cpu: dict[str, float]
) -> tuple[dict[str, Any], list[str]]:
    failures = []
    lost = tally.scheduled - tally.answered
    lags = tally.lags
    if tally.server_errors:
        failures.append(f"{tally.server_errors} answers were 5xx")
    if tally.unexpected:
        failures.append(f"unexpected statuses: {dict(tally.unexpected)}")
    if lost:
        failures.append(f"{lost} requests lost ({dict(tally.lost)})")
    steady_rss = [mb for t, mb in samples.rss_mb if t >= warmup]
    if len(steady_rss) < 2:
        failures.append("too few RSS samples after warm-up")
        baseline = final = growth = 0.0
    else:
        # Medians of the first and last few samples: one GC-timed sample cannot decide.
        head, tail = steady_rss[:3], steady_rss[-3:]
        baseline, final = statistics.median(head), statistics.median(tail)
        growth = (final - baseline) / baseline
        if growth >= RSS_GROWTH_LIMIT:
            failures.append(
                f"RSS grew {growth:.1%} after warm-up ({baseline:.1f} → {final:.1f} MiB)"
            )
    counts = [n for _, n in samples.backends]
    steady_counts = [n for t, n in samples.backends if t >= warmup]
    if counts and max(counts) > pool_size:
        failures.append(f"{max(counts)} backends for a pool of {pool_size}")
    # The pool opens connections as concurrency peaks and keeps them (a latency spike on a
    # shared machine can take it from 6 to 10), so growth up to the pool size is not a leak.
    # A leak is a connection never given back: the pool then runs dry (503s, counted above),
    # or the pool still has connections checked out once the load is over.
    if samples.in_use_after is None:
        failures.append("the pool's in-use count could not be read from /metrics")
    elif samples.in_use_after != 0:
        failures.append(f"{samples.in_use_after} connections still checked out after the load")
    figures: dict[str, Any] = {
        "duration_s": round(samples.elapsed, 1),
        "scheduled": tally.scheduled,
        "answered": tally.answered,
        "lost": lost,
        "server_errors": tally.server_errors,
        "unexpected": sum(tally.unexpected.values()),
        "by_kind": dict(sorted(tally.by_kind.items())),
        "latency_p50_ms": round(percentile(tally.latencies, 0.50) * 1000, 1),
        "latency_p99_ms": round(percentile(tally.latencies, 0.99) * 1000, 1),
        "latency_max_ms": round(max(tally.latencies, default=0.0) * 1000, 1),
        # How late requests left: a generator that cannot keep to its schedule shows here.
        "send_lag_p99_ms": round(percentile(lags, 0.99) * 1000, 1),
        "rss_after_warmup_mib": round(baseline, 1),
        "rss_final_mib": round(final, 1),
        "rss_growth_pct": round(growth * 100, 2),
        "backends_max": max(counts, default=0),
        "backends_after_warmup": f"{min(steady_counts, default=0)}–{max(steady_counts, default=0)}",
        "pool_in_use_after_load": samples.in_use_after,
        "pool_size": pool_size,
        # Where the machine's time went (it is shared): the load generator and the server.
        **cpu,
    }
    return figures, failures


def markdown(figures: dict[str, Any], failures: list[str], rate: float, minutes: float) -> str:
    load = psutil.getloadavg()
    lines = [
        BEGIN,
        f"Last full soak: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{minutes:g} min at {rate:g} req/s (open loop), pool {figures['pool_size']}, "
        f"machine load {load[0]:.1f} (2 cores shared with other work). "
        f"Result: **{'PASS' if not failures else 'FAIL'}**.",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    lines += [f"| {name} | {value} |" for name, value in figures.items() if name != "by_kind"]
    lines.append(f"| answers by kind | {figures['by_kind']} |")
    lines += [f"| failure | {failure} |" for failure in failures]
    lines.append(END)
    return "\n".join(lines)


def write_docs(block: str) -> None:
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    if BEGIN in text and END in text:
        before, rest = text.split(BEGIN, 1)
        _, after = rest.split(END, 1)
        text = before + block + after
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOC.write_text(text, encoding="utf-8")
