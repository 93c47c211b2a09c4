"""Summing up what the stall probe (bench/stallprobe) wrote during one run of one server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PROBE_PATH = Path(__file__).resolve().parent / "stallprobe"

Json = dict[str, Any]


def fresh_directory(root: Path, server: str) -> Path:
    """An empty directory for one server's probe files (an earlier run's are removed)."""
    directory = root / server
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.jsonl"):
        old.unlink()
    return directory


def summarize(directory: Path, start: float, end: float) -> Json:
    """The stalls of every worker between `start` and `end` (epoch seconds): how many, their
    total and worst length, and how their time splits between running, waiting for a core, and
    neither (blocked)."""
    gaps = []
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if start <= record["at"] <= end:
                gaps.append(record)
    total = sum(g["gap_ms"] for g in gaps)
    cpu = sum(g["cpu_ms"] for g in gaps)
    runq = sum(g["runq_ms"] for g in gaps)
    return {
        "count": len(gaps),
        "worst_ms": max((g["gap_ms"] for g in gaps), default=0.0),
        "total_ms": round(total, 1),
        "cpu_ms": round(cpu, 1),
        "runq_ms": round(runq, 1),
        "other_ms": round(max(0.0, total - cpu - runq), 1),
    }


def describe(summary: Json) -> str:
    if not summary["count"]:
        return "no event-loop stall over 10 ms"
    return (
        f"{summary['count']} event-loop stalls over 10 ms (worst {summary['worst_ms']:.0f} ms, "
        f"total {summary['total_ms']:.0f} ms: running {summary['cpu_ms']:.0f}, waiting for a "
        f"core {summary['runq_ms']:.0f}, blocked {summary['other_ms']:.0f})"
    )
