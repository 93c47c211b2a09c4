"""Soak: minutes of mixed traffic at a fixed rate against a real server, watching for what only
time shows — errors, lost requests, memory growth, leaked database connections.

    python -m bench.soak [--minutes 10] [--rate 100] [--smoke]

The server is `sonarly-api serve` on an embedded PostgreSQL under .data/soak-pg, with its own
dataset (groups, a key, a few thousand prospects) made through the admin CLI. The load is
open-loop: request i leaves at start + i/rate whether or not earlier ones have answered (at
most --concurrency in flight; a request waiting for a slot is late, and its latency counts from
its scheduled time), so a stall shows as latency and as lost requests instead of slowing the
client down. The mix: lookups of each resolution, a group the key is not granted, bad keys,
invalid parameters, unknown routes, an unlisted method and GET /v1/accounts — each with the
status the contract gives it.

Checks (the exit status is 1 if any fails):
  - no 5xx, and every answer has the status its request should get;
  - no lost request: every scheduled request was sent and answered (no timeout, no reset);
  - server RSS flat: growth after warm-up < 10%;
  - no connection leak: the service's backends in pg_stat_activity never exceed the pool size,
    and once the load is over the pool has no connection checked out (/metrics).

The full run writes its figures to docs/reliability.md (between the soak markers); --smoke
(30 s, CI) prints them only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

import asyncpg
import psutil

from bench.live import (
    ROOT,
    Dataset,
    HarnessError,
    exit_cleanly_on_sigterm,
    free_port,
    make_dataset,
    serve,
    service_env,
)
from bench.soak_report import DOC, Samples, Tally, judge, markdown, write_docs
from sonarly_api.auth import keys as key_format
from sonarly_api.embedded_pg import EmbeddedPostgres

PG_DIR = ROOT / ".data" / "soak-pg"
LOG_DIR = ROOT / ".data" / "soak-logs"
POOL_SIZE = 10
SAMPLE_EVERY = 5.0  # seconds between RSS / backend samples
REQUEST_TIMEOUT = 10.0  # an answer later than this counts as lost
# The mix sends bad keys on purpose, all from 127.0.0.1; the per-key budget would cut the
# valid traffic at 600/minute. Both limits are exercised by tests/test_rate_limits.py.
UNLIMITED = "100000000/minute"


@dataclass(frozen=True)
class Kind:
    """One kind of request in the mix: how often, what to send, what the contract answers."""

    name: str
    weight: int
    expected: int
    request: Callable[[Dataset, random.Random], tuple[str, str, str | None]]
    resolution: bytes | None = None  # for lookups answered 200: the body must say it


def _lookup(group: str, provider_id: str) -> str:
    return f"/v1/accounts/{group}/prospects/by-provider-id/{quote(provider_id, safe='')}"


def _forged_keys(count: int) -> list[str]:
    """Half well formed but unknown (one query, then cached as unknown), half with a bad
    checksum (refused without a query). Made once: key generation is not what is measured."""
    forged = []
    for i in range(count):
        key = key_format.generate_key()
        forged.append(key if i % 2 else key[:-1] + ("A" if key[-1] != "A" else "B"))
    return forged


FORGED = _forged_keys(200)

MIX = (
    Kind(
        "unique",
        30,
        200,
        lambda d, r: ("GET", _lookup(d.group, r.choice(d.unique_ids)), d.key),
        b"unique",
    ),
    Kind(
        "ambiguous",
        10,
        200,
        lambda d, r: ("GET", _lookup(d.group, r.choice(d.ambiguous_ids)), d.key),
        b"ambiguous",
    ),
    Kind(
        "none",
        15,
        200,
        lambda d, r: ("GET", _lookup(d.group, f"nobody-{r.random()}"), d.key),
        b"none",
    ),
    Kind(
        "other-group",
        5,
        403,
        lambda d, r: ("GET", _lookup(d.foreign_group, d.unique_ids[0]), d.key),
    ),
    Kind(
        "bad-key",
        10,
        401,
        lambda d, r: ("GET", _lookup(d.group, d.unique_ids[0]), r.choice(FORGED)),
    ),
    Kind("no-key", 3, 401, lambda d, r: ("GET", "/v1/accounts", None)),
    Kind("bad-group-id", 5, 422, lambda d, r: ("GET", _lookup(d.group[:-1], "x"), d.key)),
    Kind(
        "bad-provider-id",
        5,
        422,
        lambda d, r: ("GET", _lookup(d.group, r.choice(["a/b", "a b", "x" * 257])), d.key),
    ),
    Kind("unknown-route", 5, 404, lambda d, r: ("GET", f"/v1/nothing-{r.randrange(1000)}", d.key)),
    Kind("wrong-method", 2, 405, lambda d, r: ("POST", _lookup(d.group, d.unique_ids[0]), d.key)),
    Kind("accounts", 10, 200, lambda d, r: ("GET", "/v1/accounts", d.key)),
)


def tree_rss(pid: int) -> float:
    """RSS of the server and its children (uvicorn workers), MiB."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
        return sum(p.memory_info().rss for p in processes) / 2**20
    except psutil.Error:
        return 0.0


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of the server and its children."""
    try:
        root = psutil.Process(pid)
        times = [p.cpu_times() for p in (root, *root.children(recursive=True))]
        return sum(t.user + t.system for t in times)
    except psutil.Error:
        return 0.0


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 response (the server always sends Content-Length): status and body."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length) if length else b""
    return status, body


Item = tuple[Kind, bytes, float]  # what, the request's bytes, when it was due


async def connection(port: int, queue: asyncio.Queue[Item | None], tally: Tally) -> None:
    """One keep-alive connection taking due requests from the queue, in order.

    A small client of its own rather than httpx: the load generator shares two cores with
    the server, and httpx's per-request CPU made the generator, not the server, the limit."""
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while (item := await queue.get()) is not None:
        kind, request, due = item
        try:
            if conn is None:
                conn = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port), REQUEST_TIMEOUT
                )
            reader, writer = conn
            tally.lags.append(time.perf_counter() - due)
            writer.write(request)
            status, body = await asyncio.wait_for(read_response(reader), REQUEST_TIMEOUT)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            tally.lost[type(exc).__name__] += 1
            if conn is not None:
                conn[1].close()
            conn = None
            continue
        tally.answered += 1
        tally.latencies.append(time.perf_counter() - due)
        tally.by_kind[kind.name] += 1
        if status >= 500:
            tally.server_errors += 1
        if status != kind.expected:
            tally.unexpected[f"{kind.name}: {status}"] += 1
        elif kind.resolution is not None and b'"resolution":"' + kind.resolution not in body:
            tally.unexpected[f"{kind.name}: wrong resolution"] += 1
    if conn is not None:
        conn[1].close()


async def pool_in_use(port: int) -> int | None:
    """The pool's checked-out connections, from the service's /metrics (METRICS=open)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        status, body = await asyncio.wait_for(read_response(reader), REQUEST_TIMEOUT)
    finally:
        writer.close()
    if status != 200:
        return None
    for line in body.decode().splitlines():
        if line.startswith('sonarly_db_pool_connections{state="in_use"}'):
            return int(float(line.rsplit(" ", 1)[1]))
    return None


async def sample(
    pid: int, admin_url: str, samples: Samples, started: float, stop: asyncio.Event
) -> None:
    conn = await asyncpg.connect(admin_url, server_settings={"application_name": "soak-monitor"})
    try:
        while True:
            count = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sonarly-api'"
            )
            elapsed = time.perf_counter() - started
            samples.backends.append((elapsed, int(count)))
            samples.rss_mb.append((elapsed, tree_rss(pid)))
            try:
                await asyncio.wait_for(stop.wait(), SAMPLE_EVERY)
                return
            except TimeoutError:
                pass
    finally:
        await conn.close()


async def drive(
    port: int,
    pid: int,
    admin_url: str,
    data: Dataset,
    seconds: float,
    rate: float,
    concurrency: int,
) -> tuple[Tally, Samples]:
    """Open loop: request i is queued at start + i/rate whatever happened before; at most
    `concurrency` are in flight (one per connection)."""
    rng = random.Random(20261126)  # a reproducible mix
    kinds = [k for k in MIX for _ in range(k.weight)]
    tally, samples = Tally(), Samples()
    queue: asyncio.Queue[Item | None] = asyncio.Queue()
    stop = asyncio.Event()
    started = time.perf_counter()
    monitor = asyncio.create_task(sample(pid, admin_url, samples, started, stop))
    workers = [asyncio.create_task(connection(port, queue, tally)) for _ in range(concurrency)]
    host = f"Host: 127.0.0.1:{port}\r\n"
    for index in range(int(seconds * rate)):
        due = started + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        kind = rng.choice(kinds)
        method, path, key = kind.request(data, rng)
        auth = f"Authorization: Bearer {key}\r\n" if key is not None else ""
        request = f"{method} {path} HTTP/1.1\r\n{host}{auth}Content-Length: 0\r\n\r\n"
        queue.put_nowait((kind, request.encode(), due))
        tally.scheduled += 1
    for _ in workers:
        queue.put_nowait(None)
    # Bounded: a backlog still queued by then was never sent, and counts as lost.
    _, pending = await asyncio.wait(workers, timeout=REQUEST_TIMEOUT * 3)
    for task in pending:
        task.cancel()
    unsent = sum(1 for _ in range(queue.qsize()) if queue.get_nowait() is not None)
    if unsent:
        tally.lost["never sent (backlog)"] += unsent
    samples.elapsed = time.perf_counter() - started
    samples.in_use_after = await pool_in_use(port)
    stop.set()
    await monitor
    return tally, samples


def run(minutes: float, rate: float, concurrency: int, smoke: bool) -> int:
    seconds = minutes * 60
    warmup = min(60.0, seconds / 3)
    server = EmbeddedPostgres(PG_DIR)
    server.start()  # owned by this run; the CLI commands and the server join it
    try:
        env = service_env(
            EMBEDDED_PG_DIR=str(PG_DIR),
            RATE_LIMIT=UNLIMITED,
            AUTH_FAILURE_RATE_LIMIT=UNLIMITED,
            DB_POOL_SIZE=str(POOL_SIZE),
            METRICS="open",  # the pool's in-use count, read once the load is over
            LOG_LEVEL="warning",
        )
        print("soak: making the dataset through the CLI …", flush=True)
        data = make_dataset(env, LOG_DIR, prospects=3000, tag="soak")
        port = free_port()
        with serve(env, port, LOG_DIR / "server.log") as proc:
            print(f"soak: {minutes:g} min at {rate:g} req/s against :{port}", flush=True)
            admin_url = server.url("postgres").replace("postgresql+asyncpg://", "postgresql://")
            client_cpu = time.process_time()
            tally, samples = asyncio.run(
                drive(port, proc.pid, admin_url, data, seconds, rate, concurrency)
            )
            cpu = {
                "client_cpu_s": round(time.process_time() - client_cpu, 1),
                "server_cpu_s": round(tree_cpu(proc.pid), 1),
            }
            if proc.poll() is not None:
                print(f"FAILED: the server exited during the soak ({proc.returncode})")
                return 1
    finally:
        server.stop()
    figures, failures = judge(tally, samples, warmup, POOL_SIZE, cpu)
    print(json.dumps(figures, indent=2, ensure_ascii=False))
    print(f"RSS samples (s, MiB): {[(round(t), round(mb, 1)) for t, mb in samples.rss_mb]}")
    print(f"backend samples (s, n): {[(round(t), n) for t, n in samples.backends]}")
    for failure in failures:
        print(f"FAILED: {failure}")
    if not smoke:
        write_docs(markdown(figures, failures, rate, minutes))
        print(f"figures written to {DOC.relative_to(ROOT)}")
    print("soak:", "PASS" if not failures else "FAIL")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight, at most")
    parser.add_argument("--smoke", action="store_true", help="30 s, figures printed only (CI)")
    args = parser.parse_args()
    exit_cleanly_on_sigterm()
    minutes = 0.5 if args.smoke else args.minutes
    try:
        return run(minutes, args.rate, args.concurrency, args.smoke)
    except HarnessError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
