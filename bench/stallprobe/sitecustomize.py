"""Stall probe, for diagnosis (`make bench BENCH_ARGS=--stall-probe`): where the event loop's
time went when it was late.

Python imports `sitecustomize` at start-up from the first directory of PYTHONPATH that has one;
the bench puts this directory first, and STALL_PROBE_DIR in the environment, for both servers.
Each uvicorn worker then runs a task that sleeps a millisecond at a time on its event loop.
When a wake-up comes more than STALL_MS late, the gap is written to STALL_PROBE_DIR/<pid>.jsonl,
split with the thread's scheduler statistics (/proc/self/task/<tid>/schedstat):

- `cpu_ms`: the thread ran: a long callback, or the backlog of a stall being worked off;
- `runq_ms`: the thread was ready to run but waited for a core (other processes had them);
- the rest: it was blocked in a system call (a disk write, a lock) or the kernel itself.

A stall that is mostly run-queue wait is the machine's, not the code's. Both servers run the
probe alike; its ticking costs each worker about 1% of a core.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

STALL_MS = 10.0
_TICK = 0.001


def _schedstat() -> tuple[float, float]:
    """(seconds on a CPU, seconds waiting on a run queue) of the calling thread."""
    path = f"/proc/self/task/{threading.get_native_id()}/schedstat"
    with open(path, encoding="ascii") as stat:
        on_cpu, waiting, _ = stat.read().split()
    return int(on_cpu) / 1e9, int(waiting) / 1e9


async def _watch(out: Path) -> None:
    with out.open("a", encoding="utf-8", buffering=1) as log:
        last = time.perf_counter()
        last_cpu, last_wait = _schedstat()
        while True:
            await asyncio.sleep(_TICK)
            now = time.perf_counter()
            on_cpu, waiting = _schedstat()
            gap_ms = (now - last) * 1000
            if gap_ms > STALL_MS:
                record = {
                    "at": round(time.time(), 3),
                    "gap_ms": round(gap_ms, 2),
                    "cpu_ms": round((on_cpu - last_cpu) * 1000, 2),
                    "runq_ms": round((waiting - last_wait) * 1000, 2),
                }
                log.write(json.dumps(record) + "\n")
            last, last_cpu, last_wait = now, on_cpu, waiting


def _install(directory: str) -> None:
    import uvicorn.server

    serve = uvicorn.server.Server.serve

    async def serve_watched(self: uvicorn.server.Server, *args: Any, **kwargs: Any) -> None:
        out = Path(directory) / f"{os.getpid()}.jsonl"
        watcher = asyncio.get_running_loop().create_task(_watch(out))
        try:
            await serve(self, *args, **kwargs)
        finally:
            watcher.cancel()

    uvicorn.server.Server.serve = serve_watched  # type: ignore[method-assign]


if os.environ.get("STALL_PROBE_DIR"):
    _install(os.environ["STALL_PROBE_DIR"])
