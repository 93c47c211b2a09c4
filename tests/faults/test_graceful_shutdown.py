"""SIGTERM to `sonarly-api serve` (embedded PostgreSQL in its own directory) while requests are
in flight: they finish, new connections are refused, the pool closes, the embedded database
stops and the process exits within SHUTDOWN_GRACE_SECONDS."""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.faults.conftest import DATA, wait_for
from tests.servers import cli_argv, free_port, pid_alive, running, serve_argv, service_env

GRACE = 8  # SHUTDOWN_GRACE_SECONDS
IN_FLIGHT = 6


@pytest.fixture
def pg_dir() -> Iterator[Path]:
    path = DATA / f"g{secrets.token_hex(3)}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def cli_json(env: dict[str, str], *args: str) -> dict[str, str]:
    result = subprocess.run(
        [*cli_argv(), *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    data: dict[str, str] = json.loads(result.stdout)
    return data


def postmaster(pg_dir: Path) -> tuple[int, str]:
    """The pid of the embedded server and the directory of its socket (postmaster.pid)."""
    lines = (pg_dir / "cluster" / "postmaster.pid").read_text().splitlines()
    return int(lines[0]), lines[4].strip()


async def test_sigterm_finishes_in_flight_requests_then_stops_everything(
    pg_dir: Path, tmp_path: Path
) -> None:
    env = service_env(
        EMBEDDED_PG_DIR=str(pg_dir),
        SHUTDOWN_GRACE_SECONDS=str(GRACE),
        DEMO_DATA="false",
        # Longer than the test holds its lock: the lookups must wait, not time out.
        DB_STATEMENT_TIMEOUT_MS="30000",
        LOG_LEVEL="info",
    )
    # Through the CLI, as an operator would; it starts and stops the embedded server itself.
    group = (await asyncio.to_thread(cli_json, env, "account-groups", "create", "--name", "g"))[
        "id"
    ]
    key = (
        await asyncio.to_thread(
            cli_json,
            env,
            "keys",
            "create",
            "--name",
            "k",
            "--account-group",
            group,
            "--permission",
            "prospects:read",
        )
    )["key"]
    lookup = f"/v1/accounts/{group}/prospects/by-provider-id/crm-1"
    headers = {"Authorization": f"Bearer {key}"}
    port = free_port()
    with running(serve_argv(port), env, tmp_path / "serve.log", port) as server:
        pg_pid, socket_dir = postmaster(pg_dir)
        # Not registered as a user of the embedded server (no EmbeddedPostgres.start()): the
        # server must be free to stop it. This session makes the lookups wait on a lock.
        admin = await asyncpg.connect(host=socket_dir, user="postgres", database="sonarly")
        # Each session's end in the server log, with its application name: the service's
        # sessions must end (pool closed) before the shutdown request reaches PostgreSQL.
        await admin.execute("ALTER SYSTEM SET log_disconnections = on")
        await admin.execute("ALTER SYSTEM SET log_line_prefix = '%m [%p] app=%a '")
        await admin.execute("SELECT pg_reload_conf()")
        await asyncio.sleep(0.5)  # new sessions (the warm-up's, the requests') read it
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as warm:
            assert (await warm.get(lookup, headers=headers)).status_code == 200
        # Watched from another session: inside the locking transaction, pg_stat_activity
        # would keep showing the snapshot of its first read.
        monitor = await asyncpg.connect(host=socket_dir, user="postgres", database="sonarly")
        await admin.execute("BEGIN; LOCK TABLE prospects IN ACCESS EXCLUSIVE MODE")

        async def one_request() -> httpx.Response:
            # A connection of its own per request: none may be reset by the shutdown.
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                return await http.get(lookup, headers=headers)

        in_flight = [asyncio.create_task(one_request()) for _ in range(IN_FLIGHT)]

        async def all_waiting() -> bool:
            waiting = await monitor.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sonarly-api'"
                " AND wait_event_type = 'Lock'"
            )
            return bool(waiting >= IN_FLIGHT)

        await wait_for(all_waiting, 20, "every request to be in flight")
        server.signal(signal.SIGTERM)
        sent_at = time.monotonic()
        await asyncio.sleep(1.0)  # uvicorn closes its listening socket first

        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient(base_url=server.url, timeout=5) as late:
                await late.get(lookup, headers=headers)
        assert not any(task.done() for task in in_flight), "in-flight requests were cut"

        await admin.execute("ROLLBACK")  # the in-flight lookups can now finish

        answers = await asyncio.gather(*in_flight)
        await admin.close(timeout=2)
        await monitor.close(timeout=2)
        exit_code = await asyncio.to_thread(server.proc.wait, GRACE + 10)
        exited_after = time.monotonic() - sent_at
        output = server.output()

    assert [r.status_code for r in answers] == [200] * IN_FLIGHT
    assert all(r.json()["data"]["resolution"] == "none" for r in answers)
    # 128 + SIGTERM: `serve` turns uvicorn's re-raised SIGTERM into SystemExit so that its
    # cleanup (stopping the embedded PostgreSQL) runs; -15 would mean it was skipped.
    assert exit_code == 143, output
    assert exited_after <= GRACE + 5, f"exited {exited_after:.1f} s after SIGTERM"
    assert not pid_alive(pg_pid), "the embedded PostgreSQL outlived the server"
    assert not (pg_dir / "cluster" / "postmaster.pid").exists()
    assert "Traceback" not in output
    # The server's last life in its log: from the last start to the last shutdown request.
    pg_log = (pg_dir / "postgres.log").read_text(errors="replace")
    life, _, after_request = pg_log.rpartition("received fast shutdown request")
    life = life.rpartition("database system is ready to accept connections")[2]
    closed = [line for line in life.splitlines() if "app=sonarly-api" in line]
    assert len(closed) >= IN_FLIGHT, "the pool did not close its connections first"
    assert all("disconnection:" in line for line in closed), closed
    assert "app=sonarly-api" not in after_request, "a service session outlived the pool"
