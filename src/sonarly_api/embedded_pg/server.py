"""The embedded server's life cycle: its cluster, start, stop and databases, shared by every
process that uses it (see the package's docstring)."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shlex
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

from sonarly_api.embedded_pg.cluster import SUPERUSER, ensure_cluster
from sonarly_api.embedded_pg.process import (
    EmbeddedPostgresError,
    RunAs,
    cluster_processes,
    ensure_system_user,
    exclusive_lock,
    is_cluster_process,
    log_tail,
    make_ancestors_traversable,
    make_binaries_usable,
    open_lock,
    pg_bin_dir,
    run_program,
)

# The package's one logger name, as when it was a single module.
logger = logging.getLogger("sonarly_api.embedded_pg")

SERVER_SYSTEM_USER = "embedded_postgres"  # used only when we run as root
PORT = 5432  # only names the socket file; nothing listens on TCP
_SOCKET_NAME = f".s.PGSQL.{PORT}"
# sun_path is 108 bytes on Linux; keep a margin for the ".lock" sibling and the NUL byte.
_MAX_SOCKET_PATH = 100
_PRIVATE_SOCKET_PREFIX = "sonarly-pg-"

_START_LOCK_TIMEOUT = 180.0  # initdb + a 60 s start + orphan wait, with room to spare
_PG_CTL_START_TIMEOUT = 60
_PG_CTL_STOP_TIMEOUT = 60
_PSQL_TIMEOUT = 60.0
_ORPHAN_WAIT = 30.0

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


@dataclass(frozen=True)
class _Postmaster:
    pid: int
    socket_dir: Path
    status: str


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
            run_as = ensure_system_user(SERVER_SYSTEM_USER) if os.geteuid() == 0 else None
            with exclusive_lock(self._start_lock, _START_LOCK_TIMEOUT):
                if run_as is not None:
                    make_binaries_usable(bin_dir)
                    make_ancestors_traversable(self.cluster_dir)
                ensure_cluster(self.base_dir, self.cluster_dir, bin_dir, run_as)
                postmaster = self._live_postmaster()
                if postmaster is not None and postmaster.status != "ready":
                    postmaster = self._wait_ready()
                if postmaster is None:
                    postmaster = self._start_server(bin_dir, run_as)
                self._socket_dir = postmaster.socket_dir
                # Registered while still holding start.lock, so a concurrent stop() cannot
                # see "no users" between our liveness check and this line.
                if self._users_fd is None:
                    fd = open_lock(self._users_lock)
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
            with exclusive_lock(self._start_lock, _START_LOCK_TIMEOUT):
                probe = open_lock(self._users_lock)
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
        result = run_program(args, timeout=_PSQL_TIMEOUT)
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
        if not is_cluster_process(pid, self.cluster_dir):
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
            f"last server log lines:\n{log_tail(self.log_file)}"
        )

    def _start_server(self, bin_dir: Path, run_as: RunAs | None) -> _Postmaster:
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
        result = run_program(
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
                f"last lines of {self.log_file}:\n{log_tail(self.log_file)}"
            )
        return postmaster

    def _clear_stale_state(self) -> None:
        """Remove leftovers of a server that is gone (kill -9, reboot, pid reused)."""
        # Backends of a killed postmaster notice its death and exit within moments; starting
        # a new postmaster while they still touch the data files would risk corruption.
        deadline = time.monotonic() + _ORPHAN_WAIT
        while orphans := cluster_processes(self.cluster_dir):
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

    def _choose_socket_dir(self, run_as: RunAs | None) -> Path:
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
            make_ancestors_traversable(socket_dir)
        return socket_dir

    def _stop_server(self) -> None:
        postmaster = self._live_postmaster()
        if postmaster is None:
            return  # already gone (crashed or killed): nothing to stop
        run_as = ensure_system_user(SERVER_SYSTEM_USER) if os.geteuid() == 0 else None
        logger.info("stopping embedded PostgreSQL (pid %d)", postmaster.pid)
        result = run_program(
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
                f"last lines of {self.log_file}:\n{log_tail(self.log_file)}"
            )
        if postmaster.socket_dir != self.cluster_dir and self._is_private_socket_dir(
            postmaster.socket_dir
        ):
            shutil.rmtree(postmaster.socket_dir, ignore_errors=True)


def _validate_db_name(name: str) -> None:
    if not _DB_NAME_RE.fullmatch(name):
        raise ValueError(f"invalid database name {name!r}: must match {_DB_NAME_RE.pattern}")
