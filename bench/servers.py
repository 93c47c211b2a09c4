"""Starting the two servers under test: the service as deployed, and the baseline."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench import stalls
from bench.procs import Children, HarnessError, Log, free_port, log_tail
from sonarly_api.config import environment_variables

ROOT = Path(__file__).resolve().parents[1]
WORKERS = 2
DEFAULT_POOL_SIZE = 10  # the service's DB_POOL_SIZE default, also the baseline's
START_TIMEOUT = 60.0
STARTED_LINE = "Application startup complete."
# Settings the service reads: cleared from the inherited environment so that the bench
# measures the service's defaults plus exactly what it sets below.
SERVICE_SETTINGS = environment_variables()
# High enough never to trip: the limiter runs on every request, as in production, but the
# bench measures lookups, not 429s. The failed-authentication budget is raised too because
# the identity check sends a few 401s on purpose and shares the client address with the load.
RATE_LIMIT = "100000000/minute"
REDIS_URI = "redis://127.0.0.1:6379/14"
METRICS_TOKEN = "bench-metrics-token-not-a-secret"  # noqa: S105 - a bench-only token


@dataclass
class Server:
    name: str  # "service" or "baseline"
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    stall_dir: Path | None = None  # where its stall probe writes (--stall-probe)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def worker_pids(self) -> list[int]:
        try:
            return [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.Error:
            return []


def redis_reachable(host: str = "127.0.0.1", port: int = 6379) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def rate_limit_storage() -> str:
    """Redis: the service runs several workers, which `serve` refuses with memory://."""
    if not redis_reachable():
        raise HarnessError(
            "the service runs 2 workers, which need Redis for their rate-limit counters "
            "(RATE_LIMIT_STORAGE_URI): start one on 127.0.0.1:6379"
        )
    return REDIS_URI


@dataclass(frozen=True)
class Deployment:
    """What both servers are started with."""

    database_url: str
    pepper: str
    storage: str  # rate-limit storage URI (the service only)
    pool_size: int | None = None  # DB_POOL_SIZE; None keeps the service's default
    stall_probe: Path | None = None  # --stall-probe: the probes' root directory


def pool_size_for(max_connections: int, in_use: int) -> int | None:
    """Both servers run at once, 2 workers each: their pools must fit in the server's
    max_connections. None (the service's default, DEFAULT_POOL_SIZE) when they do;
    otherwise the largest size that fits, the same for both."""
    fitting = (max_connections - in_use - 10) // (2 * WORKERS)
    return None if fitting >= DEFAULT_POOL_SIZE else max(4, fitting)


def _env(deployment: Deployment) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_SETTINGS}
    if deployment.pool_size is not None:
        env["DB_POOL_SIZE"] = str(deployment.pool_size)
    env.update(
        DATABASE_URL=deployment.database_url,
        API_KEY_PEPPER=deployment.pepper,
        RATE_LIMIT=RATE_LIMIT,
        AUTH_FAILURE_RATE_LIMIT=RATE_LIMIT,
        RATE_LIMIT_STORAGE_URI=deployment.storage,
        # /metrics on, as docker-compose.yml deploys it when given a token: every request is
        # counted (the baseline counts nothing).
        METRICS_TOKEN=METRICS_TOKEN,
        # src/ for a plain checkout, the root for `bench.baseline` in uvicorn's workers.
        PYTHONPATH=os.pathsep.join(
            p for p in (str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")) if p
        ),
    )
    return env


def _service_argv(port: int) -> list[str]:
    # The console script, as deployed; a checkout run with PYTHONPATH=src has none.
    script = Path(sys.executable).with_name("sonarly-api")
    cli = (
        [str(script)]
        if script.exists()
        else [sys.executable, "-c", "from sonarly_api.cli import app; app()"]
    )
    return [*cli, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(WORKERS)]


def _baseline_argv(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.baseline:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(WORKERS),
        "--no-server-header",  # the service sets server_header=False
        "--no-access-log",
        "--log-level",
        "info",  # only start-up lines: they tell when both workers are ready
    ]


def launch(children: Children, name: str, tag: str, deployment: Deployment) -> Server:
    """Start `name` ("service" or "baseline"); `wait_ready` tells when it serves."""
    port = free_port()
    argv = _service_argv(port) if name == "service" else _baseline_argv(port)
    env = _env(deployment)
    stall_dir = None
    if deployment.stall_probe is not None:
        stall_dir = stalls.fresh_directory(deployment.stall_probe, f"{name}-{tag}")
        env["PYTHONPATH"] = os.pathsep.join((str(stalls.PROBE_PATH), env["PYTHONPATH"]))
        env["STALL_PROBE_DIR"] = str(stall_dir)
    proc = children.spawn(f"{name}-{tag}", argv, env=env, cwd=ROOT)
    return Server(name, port, proc, children.log_path(f"{name}-{tag}"), stall_dir)


def _answers(server: Server) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=2)
    try:
        conn.request("GET", "/v1/accounts/0/prospects/by-provider-id/ready")
        conn.getresponse().read()
        return True
    except OSError:
        return False
    finally:
        conn.close()


def wait_ready(server: Server, log: Log) -> None:
    """Until both workers have started and the server answers (bounded)."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if server.proc.poll() is not None:
            raise HarnessError(
                f"{server.name} exited with {server.proc.returncode} while starting; "
                f"log {server.log}:\n{log_tail(server.log)}"
            )
        started = server.log.read_text(errors="replace").count(STARTED_LINE)
        if started >= WORKERS and _answers(server):
            return
        if time.monotonic() > deadline:
            if _answers(server):
                # Answers, but its log format changed: go on, the warm-up covers the rest.
                log(f"  {server.name}: startup lines not seen in its log; it answers, going on")
                return
            raise HarnessError(
                f"{server.name} did not answer within {START_TIMEOUT:.0f} s; "
                f"log {server.log}:\n{log_tail(server.log)}"
            )
        time.sleep(0.2)
