"""Open-loop load: requests leave on a fixed schedule, whatever the server's speed.

wrk is closed-loop: a connection sends its next request only after the previous answer,
so a stalled server is simply asked less and its stall hides from the percentiles
("coordinated omission"). Debian has no wrk2, hence this small generator. Every request
has a scheduled send time (i / rate) and its latency runs from that time, not from when a
connection got round to sending it: waiting for a free connection or a late scheduler is
counted against the result, never in its favour. `lag` reports how late requests actually
left, so a generator that cannot keep up (it shares the machine's cores) is visible.

    python -m bench.openloop --port P --rate R --duration S --mix FILE

prints one JSON object. Stdlib only (plus uvloop when installed) so it starts fast.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

HOST = "127.0.0.1"


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    completed: int = 0
    non2xx: int = 0
    errors: int = 0
    timeouts: int = 0


def load_requests(mix_file: str, port: int) -> list[bytes]:
    requests = []
    with open(mix_file, encoding="ascii") as lines:
        for line in lines:
            path, _, key = line.rstrip("\n").partition("\t")
            requests.append(
                f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                f"Authorization: Bearer {key}\r\n\r\n".encode()
            )
    if not requests:
        raise SystemExit(f"{mix_file}: no request")
    return requests


async def read_response(reader: asyncio.StreamReader) -> int:
    """Reads one response (the servers always send Content-Length); returns its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def connection(
    port: int,
    requests: list[bytes],
    queue: asyncio.Queue[tuple[int, float] | None],
    stats: Stats,
    request_timeout: float,
) -> None:
    """One keep-alive connection taking scheduled requests from the queue."""
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while (item := await queue.get()) is not None:
        index, due = item
        if time.perf_counter() - due > request_timeout:
            # Already late by more than a client would wait: a timeout, not sent. Sending it
            # anyway would let an overloaded server's backlog run on long after the schedule.
            stats.latencies.append(time.perf_counter() - due)
            stats.timeouts += 1
            continue
        try:
            if conn is None:
                conn = await asyncio.wait_for(asyncio.open_connection(HOST, port), request_timeout)
            reader, writer = conn
            stats.lags.append(time.perf_counter() - due)
            writer.write(requests[index % len(requests)])
            status = await asyncio.wait_for(read_response(reader), request_timeout)
            stats.latencies.append(time.perf_counter() - due)
            stats.completed += 1
            if not 200 <= status < 300:
                stats.non2xx += 1
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            # A timed-out request still took at least this long: it stays in the latencies.
            stats.latencies.append(time.perf_counter() - due)
            if isinstance(exc, TimeoutError):
                stats.timeouts += 1
            else:
                stats.errors += 1
            if conn is not None:
                conn[1].close()
            conn = None
    if conn is not None:
        conn[1].close()
        with contextlib.suppress(OSError):
            await conn[1].wait_closed()


def percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def run(
    port: int,
    mix_file: str,
    rate: float,
    duration: float,
    connections: int,
    request_timeout: float,
) -> dict[str, object]:
    requests = load_requests(mix_file, port)
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    stats = Stats()
    workers = [
        asyncio.create_task(connection(port, requests, queue, stats, request_timeout))
        for _ in range(connections)
    ]
    total = max(1, int(rate * duration))
    start = time.perf_counter() + 0.05
    for index in range(total):
        due = start + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((index, due))
    for _ in workers:
        queue.put_nowait(None)
    # Bounded: whatever has not answered by then is counted as timed out.
    _done, pending = await asyncio.wait(workers, timeout=request_timeout + 5)
    for task in pending:
        task.cancel()
    wall = time.perf_counter() - start
    lost = total - stats.completed - stats.errors - stats.timeouts
    return {
        "rate": rate,
        "duration_s": duration,
        "scheduled": total,
        "completed": stats.completed,
        "achieved_rps": round(stats.completed / wall, 1),
        "p50_ms": round(percentile(stats.latencies, 0.50) * 1000, 3),
        "p90_ms": round(percentile(stats.latencies, 0.90) * 1000, 3),
        "p99_ms": round(percentile(stats.latencies, 0.99) * 1000, 3),
        "max_ms": round(max(stats.latencies, default=0.0) * 1000, 3),
        "non2xx": stats.non2xx,
        "errors": stats.errors,
        "timeouts": stats.timeouts + lost,
        "lag_p99_ms": round(percentile(stats.lags, 0.99) * 1000, 3),
        "generator_cpu_s": round(time.process_time(), 3),
        "wall_s": round(wall, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mix", required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, required=True, help="seconds")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=2.0, help="per request, seconds")
    args = parser.parse_args()
    if args.rate <= 0 or args.duration <= 0:
        parser.error("--rate and --duration must be positive")
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        import uvloop

        # The same loop as the servers: the generator's cost per request stays low.
        loop_factory = uvloop.new_event_loop
    except ImportError:
        pass
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        result = runner.run(
            run(args.port, args.mix, args.rate, args.duration, args.connections, args.timeout)
        )
    result["loop"] = "asyncio" if loop_factory is None else "uvloop"
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
