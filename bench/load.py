"""Closed-loop saturation with wrk: how many lookups per second a server sustains."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.procs import Children, HarnessError, Log

LUA = Path(__file__).resolve().parent / "wrk" / "mix.lua"
MARKER = "BENCH_JSON "


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    non2xx: int
    socket_errors: int  # connect + read + write
    timeouts: int

    @property
    def errors(self) -> int:
        return self.non2xx + self.socket_errors


def ensure_wrk(log: Log) -> str:
    """wrk's path; installs Debian's package when missing and running as root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("wrk not found: installing it with apt-get (Debian package 'wrk')")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "wrk"]
        if subprocess.run(install, env=env, check=False, timeout=600).returncode != 0:
            # A fresh machine may not have package lists yet.
            subprocess.run(["apt-get", "update", "-q"], env=env, check=False, timeout=600)
            subprocess.run(install, env=env, check=False, timeout=600)
        found = shutil.which("wrk")
        if found:
            return found
    raise HarnessError(
        "wrk is required and was not found. Install it (Debian/Ubuntu: `apt-get install wrk`, "
        "macOS: `brew install wrk`) or run `make bench` as root on Debian to install it."
    )


def start_wrk(
    children: Children,
    wrk: str,
    base_url: str,
    mix_file: Path,
    *,
    duration: float,
    connections: int,
    threads: int,
    timeout: float,
) -> subprocess.Popen[bytes]:
    argv = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        f"--timeout={max(1, round(timeout))}s",
        "--latency",
        "-s",
        str(LUA),
        base_url,
        "--",
        str(mix_file),
    ]
    return children.spawn("wrk", argv, capture_stdout=True)


def finish_wrk(children: Children, proc: subprocess.Popen[bytes], duration: float) -> WrkResult:
    """Wait for wrk (bounded) and parse the line mix.lua's done() printed."""
    try:
        stdout, _ = proc.communicate(timeout=duration + 30)
    except subprocess.TimeoutExpired:
        children.release(proc)
        raise HarnessError("wrk did not finish in time") from None
    children.release(proc)
    text = stdout.decode(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith(MARKER)), None)
    if proc.returncode != 0 or line is None:
        raise HarnessError(
            f"wrk failed (exit {proc.returncode}):\n{text[-2000:]}\n"
            f"{children.log_path('wrk').read_text(errors='replace')[-2000:]}"
        )
    raw = json.loads(line.removeprefix(MARKER))
    seconds = raw["duration_us"] / 1e6
    return WrkResult(
        requests=raw["requests"],
        seconds=round(seconds, 3),
        rps=round(raw["requests"] / seconds, 1) if seconds else 0.0,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        mean_ms=round(raw["mean_us"] / 1000, 3),
        non2xx=raw["non2xx"],
        socket_errors=raw["connect_errors"] + raw["read_errors"] + raw["write_errors"],
        timeouts=raw["timeouts"],
    )
