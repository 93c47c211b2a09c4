"""`--profile`: where a service worker spends its CPU at saturation, sampled by py-spy.

py-spy runs `--nonblocking` (it does not pause the worker to read its stack, so the
worker runs at full speed) during an extra saturation run. The raw stacks are kept in
.data/bench-profile.txt (feed them to flamegraph.pl or speedscope); the report gets a
summary: the share of samples in which each library appears, and the hottest leaf frames.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.procs import HarnessError, Log

if TYPE_CHECKING:
    from bench.run import Bench
    from bench.servers import Server

OUTPUT = Path(".data/bench-profile.txt")
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]+)(?::\d+)?\)$")


def _component(path: str) -> str:
    """A frame's library. py-spy names files relative to their sys.path entry
    (`uvicorn/server.py`, `asyncio/runners.py`): the first segment is the package; for our
    own code, the module (`sonarly_api.tracing`)."""
    parts = path.split("/")
    if parts[0] == "sonarly_api" and len(parts) > 1:
        return "sonarly_api." + parts[1].removesuffix(".py")
    return parts[0].removesuffix(".py")


# In (nearly) every sample: the process bootstrap and the event loop, which say nothing.
_EVERYWHERE = 0.95


def summarize(raw: str, top: int = 15) -> dict[str, Any]:
    """Shares of samples: per library anywhere on the stack (inclusive), per library of the
    leaf frame (self), and per function of our own code (inclusive)."""
    inclusive: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [m for m in (_FRAME.match(f) for f in stack.split(";")) if m]
        for component in {_component(m["file"]) for m in frames}:
            inclusive[component] += count
        for function in {m["func"] for m in frames if m["file"].startswith("sonarly_api/")}:
            ours[function] += count
        if frames:
            self_time[_component(frames[-1]["file"])] += count
    share = 100.0 / max(total, 1)

    def shares(counter: Counter[str]) -> dict[str, float]:
        kept = [(k, v) for k, v in counter.most_common() if v < _EVERYWHERE * total]
        return {k: round(v * share, 1) for k, v in kept[:top]}

    return {
        "samples": total,
        "inclusive_pct": shares(inclusive),
        "self_pct": shares(self_time),
        "sonarly_api_inclusive_pct": shares(ours),
        "raw_stacks": str(OUTPUT),
    }


def profile_service(
    bench: Bench,
    service: Server,
    mix: Path,
    pg_pid: int | None,
    url: str,
    log: Log,
    output: Path = OUTPUT,
) -> dict[str, Any]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        raise HarnessError("--profile needs py-spy (pip install py-spy: the bench extra has it)")
    workers = service.worker_pids()
    if not workers:
        raise HarnessError("no service worker to profile")
    duration = bench.plan.duration
    output.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        py_spy,
        "record",
        "--nonblocking",
        "--format",
        "raw",
        "--duration",
        str(max(1, round(duration))),
        "--output",
        str(output),
        "--pid",
        str(workers[-1]),
    ]
    log(f"profiling service worker {workers[-1]} with py-spy for {duration:g} s")
    spy = bench.children.spawn("py-spy", argv)
    run = bench.saturate(service, mix, duration, pg_pid, url)
    try:
        spy.wait(timeout=duration + 30)
    finally:
        bench.children.release(spy)
    if not output.exists():
        raise HarnessError(
            "py-spy wrote no profile:\n" + bench.children.log_path("py-spy").read_text()[-1000:]
        )
    summary = summarize(output.read_text(errors="replace"))
    summary["raw_stacks"] = str(output)
    summary["rps_while_profiled"] = run["rps"]
    for title in ("inclusive_pct", "self_pct", "sonarly_api_inclusive_pct"):
        log(f"  {title}: " + ", ".join(f"{k} {v}%" for k, v in summary[title].items()))
    return summary
