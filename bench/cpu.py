"""CPU time of process trees during a measurement (service, PostgreSQL, load generator…).

psutil reads /proc/<pid>/stat. A tree is re-walked on every sample because PostgreSQL
forks a backend per new connection and a backend may exit mid-run: a process seen at the
first sample counts from that value, one born later counts from zero, and one that died
keeps the last value sampled (so at most one interval of its CPU is lost).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import psutil

SAMPLE_INTERVAL = 0.2


@dataclass(frozen=True)
class Tree:
    """Processes to account together: each pid and, unless `children` is false, all its
    descendants."""

    pids: tuple[int, ...]
    children: bool = True

    @staticmethod
    def of(pid: int, children: bool = True) -> Tree:
        return Tree((pid,), children)


def _cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    # Only the process's own time: children_* would count exited children twice.
    return float(times.user + times.system)


def _tree_procs(tree: Tree) -> list[psutil.Process]:
    procs = []
    for pid in tree.pids:
        try:
            root = psutil.Process(pid)
            procs += [root, *root.children(recursive=True)] if tree.children else [root]
        except psutil.Error:
            continue
    return procs


class CpuMeter:
    """Samples named trees in a thread between `with` entry and exit; `.seconds` gives the
    CPU seconds each tree used and `.wall` the elapsed time."""

    def __init__(self, trees: Mapping[str, Tree], nested: Collection[str] = ()) -> None:
        """`nested`: trees whose processes another tree also counts (left out of `other`)."""
        self._trees = dict(trees)
        self._nested = frozenset(nested)
        # name -> pid -> [first, last]; first is None for processes born after the start.
        self._seen: dict[str, dict[int, list[float]]] = {name: {} for name in self._trees}
        self._first_sample = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cpu-meter", daemon=True)
        self._started = 0.0
        self._machine_start: Any = None
        self.machine: dict[str, float] = {}
        self.wall = 0.0

    def _sample(self) -> None:
        for name, tree in self._trees.items():
            seen = self._seen[name]
            for proc in _tree_procs(tree):
                try:
                    value = _cpu_seconds(proc)
                except psutil.Error:
                    continue
                entry = seen.get(proc.pid)
                if entry is None:
                    seen[proc.pid] = [value if self._first_sample else 0.0, value]
                else:
                    entry[1] = value
        self._first_sample = False

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL):
            self._sample()

    def __enter__(self) -> CpuMeter:
        self._sample()
        self._machine_start = psutil.cpu_times()
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.wall = time.monotonic() - self._started
        self.machine = _machine_cores(self._machine_start, psutil.cpu_times(), self.wall)

    @property
    def seconds(self) -> dict[str, float]:
        return {
            name: sum(last - first for first, last in seen.values())
            for name, seen in self._seen.items()
        }

    def cores(self) -> dict[str, float]:
        """Average cores busy per tree (CPU seconds / wall seconds), plus `other`: what the
        rest of the machine used meanwhile (other users' jobs skew a shared machine)."""
        wall = self.wall or 1.0
        cores = {name: round(value / wall, 3) for name, value in self.seconds.items()}
        busy = self.machine.get("busy", 0.0)
        ours = sum(v for k, v in cores.items() if k not in self._nested)
        cores["other"] = round(max(0.0, busy - ours), 3)
        # Always present (0 included): the report takes medians of every key over rounds.
        cores["steal"] = self.machine.get("steal", 0.0)
        return cores


def _machine_cores(before: Any, after: Any, wall: float) -> dict[str, float]:
    """Machine-wide busy and stolen cores between two psutil.cpu_times() readings."""
    idle = (after.idle - before.idle) + (
        getattr(after, "iowait", 0.0) - getattr(before, "iowait", 0.0)
    )
    steal = getattr(after, "steal", 0.0) - getattr(before, "steal", 0.0)
    total = sum(after) - sum(before)
    wall = wall or 1.0
    return {"busy": round((total - idle - steal) / wall, 3), "steal": round(steal / wall, 3)}


def postmaster_of(backend_pid: int) -> int | None:
    """The postmaster of a local PostgreSQL backend (its parent), if it runs on this host."""
    try:
        parent = psutil.Process(backend_pid).parent()
    except psutil.Error:
        return None
    return None if parent is None else parent.pid


def listener_pid(port: int) -> int | None:
    """The process listening on 127.0.0.1:`port` (e.g. Redis), if we may see it."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.Error:
        return None
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            return conn.pid
    return None


def busy_cores(seconds: float = 2.0) -> float:
    """Cores busy machine-wide over `seconds`: before a run, how much others are using."""
    percent = psutil.cpu_percent(interval=seconds)
    return round(percent / 100 * (psutil.cpu_count() or 1), 2)
