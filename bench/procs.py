"""Child processes of a bench run: each in its own process group, always stopped.

Servers fork workers (uvicorn) and wrk runs threads; killing only the direct child would
leave orphans holding ports and database connections. So every child starts a new session
and is stopped by signalling its whole group, on normal exit, on an exception, on Ctrl-C
and on SIGTERM.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType

STOP_TIMEOUT = 10.0

Log = Callable[[str], None]


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (the server binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    # The child is its own group leader (start_new_session), so its pid is the group id.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM the process group, then SIGKILL it if it has not exited in `timeout` s."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    # Even when the leader has exited, workers of its group may linger.
    _signal_group(proc, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout)


def _raise_system_exit(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def install_signal_handlers() -> None:
    """SIGTERM raises SystemExit and SIGINT KeyboardInterrupt, so that `finally` blocks and
    context managers stop every child. SIGINT is set explicitly: a shell starts background
    jobs with it ignored, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGTERM, _raise_system_exit)
    signal.signal(signal.SIGINT, signal.default_int_handler)


class Children:
    """Tracks started processes; stops them all (newest first) when the context exits, and
    at interpreter exit as a last resort."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._procs: list[subprocess.Popen[bytes]] = []
        atexit.register(self.stop_all)

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        capture_stdout: bool = False,
    ) -> subprocess.Popen[bytes]:
        """Start `argv`; stderr (and stdout unless captured) go to `<log_dir>/<name>.log`
        (truncated), never to a pipe nobody reads: a full pipe would stall a server."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if capture_stdout else log,
                stderr=log,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
        self._procs.append(proc)
        return proc

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def release(self, proc: subprocess.Popen[bytes]) -> None:
        """Stop one process now and forget it."""
        stop(proc)
        if proc in self._procs:
            self._procs.remove(proc)

    def stop_all(self) -> None:
        while self._procs:
            stop(self._procs.pop())

    def __enter__(self) -> Children:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_all()


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll `predicate` until it returns true or `timeout` s pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


class HarnessError(RuntimeError):
    """The harness itself cannot go on (a missing tool, a server that does not start, a
    baseline that no longer answers like the service): `make bench*` exits non-zero."""
