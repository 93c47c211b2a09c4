"""The service as an operator runs it, for `make fuzz` and `make soak*`: an embedded PostgreSQL
in a directory of its own, data made through the admin CLI, and `sonarly-api serve`.

Every setting the service reads is cleared from the inherited environment, so a run measures
the defaults plus exactly what its caller sets.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from sonarly_api.config import environment_variables

ROOT = Path(__file__).resolve().parents[1]
SERVICE_SETTINGS = environment_variables()
CLI_TIMEOUT = 300.0
START_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0


class HarnessError(RuntimeError):
    """The harness cannot go on (a CLI command failed, the server did not start)."""


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (the server binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def exit_cleanly_on_sigterm() -> None:
    """SIGTERM raises SystemExit, so `finally` blocks stop the server and the database."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Signal the process group (uvicorn may have workers), then SIGKILL what is left."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(STOP_TIMEOUT)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(STOP_TIMEOUT)


@contextlib.contextmanager
def spawned(
    argv: Sequence[str], env: Mapping[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A child in its own process group, its output in `log`, always stopped on exit."""
    log.parent.mkdir(parents=True, exist_ok=True)
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
    try:
        yield proc
    finally:
        stop(proc)


def service_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_SETTINGS}
    env.update(settings)
    # src/ for a checkout without an installed package; the root for `bench.*` modules.
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    return env


def cli_argv() -> list[str]:
    """The console script, as an operator runs it; a checkout run with PYTHONPATH has none."""
    script = Path(sys.executable).with_name("sonarly-api")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from sonarly_api.cli import app; app()"]


def run_cli(env: Mapping[str, str], *args: str) -> str:
    result = subprocess.run(
        [*cli_argv(), *args],
        env=dict(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        raise HarnessError(f"sonarly-api {' '.join(args[:2])} failed: {result.stderr.strip()}")
    return result.stdout


def cli_json(env: Mapping[str, str], *args: str) -> Any:
    return json.loads(run_cli(env, *args, "--json"))


@dataclass(frozen=True)
class Dataset:
    group: str  # holds the prospects; the key is granted it
    other_group: str  # granted too, empty: /v1/accounts has two items
    foreign_group: str  # not granted; carries the same provider ids
    key: str  # prospects:read on group and other_group
    unique_ids: list[str]
    ambiguous_ids: list[str]  # each carried by two persons of `group`


def make_dataset(env: Mapping[str, str], work_dir: Path, prospects: int, tag: str) -> Dataset:
    """Groups, a key and `prospects` rows (1% of provider ids ambiguous) through the CLI."""
    group = cli_json(env, "account-groups", "create", "--name", f"{tag} A")["id"]
    other = cli_json(env, "account-groups", "create", "--name", f"{tag} B")["id"]
    foreign = cli_json(env, "account-groups", "create", "--name", f"{tag} foreign")["id"]
    key = cli_json(
        env,
        "keys",
        "create",
        "--name",
        tag,
        "--account-group",
        group,
        "--account-group",
        other,
        "--permission",
        "prospects:read",
        # The Sales Navigator listings (`make fuzz` covers them).
        "--permission",
        "prospecting:read",
    )["key"]
    ambiguous = [f"{tag}-amb-{i}" for i in range(max(1, prospects // 200))]
    unique = [f"{tag}-uni-{i}-ü" for i in range(prospects - 2 * len(ambiguous))]
    work_dir.mkdir(parents=True, exist_ok=True)
    rows = [(pid, f"{tag}-p{i}") for i, pid in enumerate(unique)]
    rows += [(pid, f"{tag}-a{i}-{n}") for i, pid in enumerate(ambiguous) for n in (1, 2)]
    csv = work_dir / f"{tag}-prospects.csv"
    lines = ["providerId,publicIdentifier,name,companyName,title"]
    lines += [
        f"{pid},{person},Name {person},Company {i % 97},Title"
        for i, (pid, person) in enumerate(rows)
    ]
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    run_cli(env, "prospects", "import", "--account-group", group, str(csv))
    foreign_csv = work_dir / f"{tag}-foreign.csv"
    foreign_csv.write_text(
        "providerId,publicIdentifier\n"
        + "".join(f"{pid},{tag}-f{i}\n" for i, pid in enumerate(unique[:10] + ambiguous[:10])),
        encoding="utf-8",
    )
    run_cli(env, "prospects", "import", "--account-group", foreign, str(foreign_csv))
    return Dataset(group, other, foreign, key, unique, ambiguous)


def answers(port: int, path: str = "/openapi.json") -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


@contextlib.contextmanager
def serve(
    env: Mapping[str, str], port: int, log: Path, extra: Sequence[str] = ()
) -> Iterator[subprocess.Popen[bytes]]:
    """`sonarly-api serve` on 127.0.0.1:port, answering; stopped (SIGTERM) on exit."""
    argv = [*cli_argv(), "serve", "--host", "127.0.0.1", "--port", str(port), *extra]
    with spawned(argv, env, log) as proc:
        deadline = time.monotonic() + START_TIMEOUT
        while not answers(port):
            if proc.poll() is not None:
                raise HarnessError(f"the server exited with {proc.returncode}:\n{log_tail(log)}")
            if time.monotonic() > deadline:
                raise HarnessError(f"the server did not answer in {START_TIMEOUT:g} s")
            time.sleep(0.2)
        yield proc
