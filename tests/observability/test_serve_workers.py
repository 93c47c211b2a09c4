"""End to end: `sonarly-api serve --workers 2` as deployed — metrics add up across worker
processes whichever one answers the scrape, and stderr is one JSON line per event with an
access line per request and never a key."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sonarly_api.config import Settings
from tests.conftest import PEPPER, Factory, bearer
from tests.observability.test_metrics import LOOKUP, requests_total
from tests.outages import redis_url

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 120  # seconds; worker start-up is slow on a loaded machine
REQUESTS = 20  # per batch
MAX_BATCHES = 50


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _children(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _environment(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(): v.decode(errors="replace") for k, v in pairs}


class Server:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"
        self.log = log

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    def fail(self, why: str) -> None:
        pytest.fail(f"{why}; server log:\n" + "\n".join(self.lines()[-40:]))


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    if not Path("/proc/self/environ").exists():
        pytest.skip("needs /proc to find the workers' metrics directory")
    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    env.update(
        DATABASE_URL=database_url,
        API_KEY_PEPPER=PEPPER,
        METRICS="open",
        LOG_FORMAT="json",
        RATE_LIMIT="100000/minute",
        AUTH_FAILURE_RATE_LIMIT="100000/minute",
        # Several workers need shared counters (serve refuses memory:// with --workers 2).
        RATE_LIMIT_STORAGE_URI=redis_url(),
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p),
    )
    port = _free_port()
    log = tmp_path / "serve.log"
    argv = [sys.executable, "-c", "from sonarly_api.cli import app; app()"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            # --no-demo: run alone, on an empty database, serve would print the demo's
            # curl lines (plain text, on stdout) among the JSON log lines this test reads.
            [*argv, "serve", "--port", str(port), "--workers", "2", "--no-demo"],
            cwd=tmp_path,  # no .env of the repository
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(proc, port, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while sum("Application startup complete." in line for line in server.lines()) < 2:
            if proc.poll() is not None:
                server.fail(f"serve exited with {proc.returncode}")
            if time.monotonic() > deadline:
                server.fail("both workers did not start")
            time.sleep(0.2)
        yield server
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return response.text


async def test_two_workers_add_up_and_log_json(server: Server, factory: Factory) -> None:
    group = await factory.group()
    key_id, key = await factory.key([group])
    path = f"/v1/accounts/{group}/prospects/by-provider-id/crm-9"
    workers = _children(server.proc.pid)
    directories = {_environment(pid).get("PROMETHEUS_MULTIPROC_DIR") for pid in workers}
    directories.discard(None)
    assert len(directories) == 1, directories  # one fresh directory, shared by the workers
    directory = Path(str(directories.pop()))

    # No keep-alive: every request a new connection, for the kernel to spread over workers.
    # Which worker accepts is the kernel's choice, and one woken worker may accept a whole
    # burst: batches go out until both have counted requests (each worker's counters are a
    # file of its own), within a bound.
    limits = httpx.Limits(max_keepalive_connections=0)
    responses: list[httpx.Response] = []
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as client:
        for _ in range(MAX_BATCHES):
            responses += await asyncio.gather(
                *(client.get(path, headers=bearer(key)) for _ in range(REQUESTS))
            )
            if len(list(directory.glob("counter_*.db"))) == 2:  # noqa: ASYNC240 - a listing
                break
            await asyncio.sleep(0.05)
        assert [r.status_code for r in responses] == [200] * len(responses)
        sent = len(responses)

        deadline = time.monotonic() + 10
        while requests_total(await _scrape(client), "GET", LOOKUP, 200) != sent:
            if time.monotonic() > deadline:
                server.fail("the scrapes never added up to every worker's requests")
            await asyncio.sleep(0.2)
        # Whichever worker answers, the sum is the same.
        for _ in range(6):
            assert requests_total(await _scrape(client), "GET", LOOKUP, 200) == sent
        exposition = await _scrape(client)

    # Both workers served and counted. (A directory listing: blocking is harmless here.)
    assert len(list(directory.glob("counter_*.db"))) == 2  # noqa: ASYNC240
    assert 'sonarly_db_pool_connections{state="idle"}' in exposition
    assert group not in exposition

    server.proc.send_signal(signal.SIGINT)
    server.proc.wait(timeout=30)
    assert not directory.exists()  # noqa: ASYNC240 - removed with the server

    lines = server.lines()
    records = [json.loads(line) for line in lines]  # every line is JSON
    access = [r for r in records if r.get("logger") == "sonarly_api.access"]
    lookups = [r for r in access if r["route"] == LOOKUP]
    assert len(lookups) == sent
    assert {r["traceId"] for r in lookups} == {r.headers["x-trace-id"] for r in responses}
    assert {(r["keyId"], r["accountGroupId"], r["status"]) for r in lookups} == {
        (key_id, group, 200)
    }
    assert sum(r["event"] == "Application startup complete." for r in records) == 2
    text = "\n".join(lines)
    assert key.removeprefix("sk_live_") not in text
    assert "crm-9" not in text  # uvicorn's own access lines (raw paths) are off
    assert PEPPER not in text
