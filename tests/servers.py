"""Real server processes for the tests that need what only a real server shows (headers it adds
or drops, signals, outages): `sonarly-api serve` or `python -m uvicorn`, each in its own process
group, its output in a file the test can read, always stopped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from sonarly_api.config import environment_variables

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 60.0  # generous: CI shares two cores with other work
STOP_TIMEOUT = 30.0
# Every setting the service reads: cleared from the inherited environment, so a test server
# runs with the defaults plus exactly what the test sets.
SERVICE_SETTINGS = environment_variables()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def service_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_SETTINGS}
    env.update(settings)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    return env


def cli_argv() -> list[str]:
    """The console script as deployed; a checkout run with PYTHONPATH=src has none."""
    script = Path(sys.executable).with_name("sonarly-api")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from sonarly_api.cli import app; app()"]


def serve_argv(port: int, *extra: str) -> list[str]:
    return [*cli_argv(), "serve", "--host", "127.0.0.1", "--port", str(port), *extra]


def uvicorn_argv(port: int) -> list[str]:
    """The app alone under uvicorn: the settings come from the environment."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "sonarly_api.app:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-server-header",
    ]


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        """To the server process only (uvicorn's own handling is what is tested)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, sig)


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the group (uvicorn may have workers), SIGKILL to whatever is left."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(STOP_TIMEOUT)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(STOP_TIMEOUT)


@contextlib.contextmanager
def running(argv: Sequence[str], env: Mapping[str, str], log: Path, port: int) -> Iterator[Server]:
    """Start `argv`, wait until it serves /openapi.json on `port`, stop it on exit."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=ROOT,
            start_new_session=True,
        )
    server = Server(proc, port, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(port):
            if proc.poll() is not None:
                raise AssertionError(f"server exited with {proc.returncode}:\n{server.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"server did not answer in {START_TIMEOUT:g} s")
            time.sleep(0.1)
        yield server
    finally:
        stop(proc)


def pid_alive(pid: int) -> bool:
    """True while `pid` is a live process (not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"
