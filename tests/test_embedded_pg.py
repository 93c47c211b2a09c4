"""Tests for the embedded PostgreSQL manager (real server processes, no mocks)."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sonarly_api.embedded_pg import (
    EmbeddedPostgres,
    EmbeddedPostgresError,
    read_or_create_secret,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
SRC_DIR = REPO_ROOT / "src"
_counter = itertools.count()


@pytest.fixture
def base_dir() -> Iterator[Path]:
    base = REPO_ROOT / ".data" / f"t{os.getpid()}-{next(_counter)}"
    yield base
    _cleanup(base)


def _cleanup(base: Path) -> None:
    # A fresh instance that starts then stops is the last user, so it shuts the server down.
    leftover = EmbeddedPostgres(base)
    if leftover.running:
        leftover.start()
        leftover.stop()
    shutil.rmtree(base, ignore_errors=True)


def _postmaster_pid(pg: EmbeddedPostgres) -> int:
    return int((pg.cluster_dir / "postmaster.pid").read_text().splitlines()[0])


def _databases(pg: EmbeddedPostgres) -> set[str]:
    return set(pg.psql("SELECT datname FROM pg_database").split())


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Wait until ``pid`` has exited (a zombie counts as gone: it may never be reaped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} still alive")


def test_start_stop_restart_keeps_data(base_dir: Path) -> None:
    pg = EmbeddedPostgres(base_dir)
    pg.start()
    pg.start()  # idempotent
    assert pg.running
    assert (base_dir / "cluster" / "PG_VERSION").is_file()
    pg.ensure_database("persist_db")
    pg.ensure_database("persist_db")  # already there: no error
    assert pg.psql("SHOW max_connections").strip() == "200"
    assert pg.psql("SHOW listen_addresses").strip() == ""  # Unix socket only
    pg.stop()
    pg.stop()  # idempotent
    assert not pg.running

    with EmbeddedPostgres(base_dir) as again:
        assert "persist_db" in _databases(again)
        again.drop_database("persist_db")
        again.drop_database("persist_db")  # IF EXISTS
        assert "persist_db" not in _databases(again)
    assert not again.running


def test_url_points_at_the_socket_dir(base_dir: Path) -> None:
    pg = EmbeddedPostgres(base_dir)
    with pytest.raises(EmbeddedPostgresError, match="start"):
        pg.url()
    with pg:
        socket_dir = pg.cluster_dir
        assert (socket_dir / ".s.PGSQL.5432").is_socket()
        assert pg.url() == f"postgresql+asyncpg://postgres@/postgres?host={socket_dir}"
        assert pg.url("app_test").startswith("postgresql+asyncpg://postgres@/app_test?host=/")
        # Trust auth: the socket dir must not be reachable by other users.
        assert stat.S_IMODE(socket_dir.stat().st_mode) & 0o077 == 0


@pytest.mark.parametrize("name", ["", "Bad", "a-b", "x; DROP", '"q"', "a" * 64, "1abc"])
def test_invalid_database_names_are_rejected(base_dir: Path, name: str) -> None:
    pg = EmbeddedPostgres(base_dir)
    for call in (pg.ensure_database, pg.drop_database, pg.url):
        with pytest.raises(ValueError, match="invalid database name"):
            call(name)


def test_long_base_dir_uses_private_socket_dir(base_dir: Path) -> None:
    deep = base_dir / ("d" * 60) / ("e" * 40)
    with EmbeddedPostgres(deep) as pg:
        url = pg.url()
        socket_dir = Path(url.split("host=", 1)[1])
        assert socket_dir != pg.cluster_dir
        assert stat.S_IMODE(socket_dir.stat().st_mode) == 0o700
        assert (socket_dir / ".s.PGSQL.5432").is_socket()
        pg.ensure_database("deep_db")
    assert not socket_dir.exists()  # removed once the server stopped


def test_two_instances_in_one_process_share_the_server(base_dir: Path) -> None:
    first = EmbeddedPostgres(base_dir)
    second = EmbeddedPostgres(base_dir)
    first.start()
    pid = _postmaster_pid(first)
    second.start()
    assert _postmaster_pid(second) == pid  # reused, not restarted
    second.stop()
    assert first.running  # first still holds it
    assert first.psql("SELECT 1").strip() == "1"
    first.stop()
    assert not first.running


@contextlib.contextmanager
def _holder(base: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process that starts the server and keeps using it until stdin closes."""
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from sonarly_api.embedded_pg import EmbeddedPostgres

        with EmbeddedPostgres(Path({str(base)!r})):
            print("ready", flush=True)
            sys.stdin.read()
        """
    )
    pythonpath = [str(SRC_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(pythonpath)}
    with subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
            yield proc
        finally:
            proc.kill()  # no-op if it already exited


def test_other_process_keeps_server_alive_until_it_stops(base_dir: Path) -> None:
    with _holder(base_dir) as holder:
        pg = EmbeddedPostgres(base_dir)
        pg.start()
        pg.stop()
        assert pg.running  # the holder still uses it
        assert holder.stdin is not None
        holder.stdin.close()  # holder leaves its `with` block: it is the last user now
        assert holder.wait(timeout=60) == 0
        assert not pg.running


def test_kill_9_of_a_user_process_releases_its_claim(base_dir: Path) -> None:
    pg = EmbeddedPostgres(base_dir)
    with _holder(base_dir) as holder:
        pg.start()
        holder.kill()  # SIGKILL: no cleanup code runs, the kernel drops its flock
        holder.wait()
    assert pg.running
    pg.stop()  # now the only user: stops the server
    assert not pg.running


def test_kill_9_of_postmaster_then_start_works(base_dir: Path) -> None:
    pg = EmbeddedPostgres(base_dir)
    pg.start()
    pg.ensure_database("survivor")
    pid = _postmaster_pid(pg)
    os.kill(pid, signal.SIGKILL)
    _wait_gone(pid)
    assert not pg.running
    assert (pg.cluster_dir / "postmaster.pid").exists()  # stale file left behind

    pg.start()  # same instance notices the dead server and restarts it
    assert pg.running
    assert _postmaster_pid(pg) != pid
    assert "survivor" in _databases(pg)  # crash recovery kept committed data
    pg.stop()

    with EmbeddedPostgres(base_dir) as fresh:  # and a new instance copes too
        assert fresh.psql("SELECT 1").strip() == "1"


@pytest.mark.parametrize("impostor", ["pytest", "sleep", "other_cluster_postmaster"])
def test_stale_pid_file_naming_a_live_unrelated_process(base_dir: Path, impostor: str) -> None:
    pg = EmbeddedPostgres(base_dir)
    pg.start()
    pg.stop()  # cluster exists, server down

    with contextlib.ExitStack() as stack:
        if impostor == "pytest":
            fake_pid = os.getpid()
        elif impostor == "sleep":
            sleeper = stack.enter_context(subprocess.Popen(["sleep", "60"]))
            stack.callback(sleeper.kill)
            fake_pid = sleeper.pid
        else:  # the hardest case: a real, live postmaster, but of another cluster
            other = stack.enter_context(EmbeddedPostgres(base_dir / "other"))
            fake_pid = _postmaster_pid(other)
        # What a kill -9'd server leaves behind once its pid has been reused.
        (pg.cluster_dir / "postmaster.pid").write_text(
            f"{fake_pid}\n{pg.cluster_dir}\n1700000000\n5432\n{pg.cluster_dir}\n\n"
            "  5432001    123456\nready   \n"
        )
        (pg.cluster_dir / ".s.PGSQL.5432.lock").write_text(
            f"{fake_pid}\n{pg.cluster_dir}\n1700000000\n5432\n{pg.cluster_dir}\n"
        )
        assert not pg.running

        pg.start()
        assert pg.running
        assert _postmaster_pid(pg) != fake_pid
        assert pg.psql("SELECT 1").strip() == "1"
        pg.stop()
        assert not pg.running


def test_read_or_create_secret_is_stable_and_private(base_dir: Path) -> None:
    path = base_dir / "nested" / "api-key-pepper"
    secret = read_or_create_secret(path)
    assert len(secret) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_or_create_secret(path) == secret
    assert [p.name for p in path.parent.iterdir()] == ["api-key-pepper"]  # no temp leftovers

    other = base_dir / "given"
    other.write_text("  handmade-secret \n")
    assert read_or_create_secret(other) == "handmade-secret"
