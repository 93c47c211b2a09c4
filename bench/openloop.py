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
import collections
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

HOST = "127.0.0.1"


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)  # what each latency counts from
    lags: list[float] = field(default_factory=list)
    lag_due: list[float] = field(default_factory=list)  # when each lagging request was due
    completed: int = 0
    non2xx: int = 0
    errors: int = 0
    timeouts: int = 0

    def record(self, sent_at: float, latency: float) -> None:
        self.sent_at.append(sent_at)
        self.latencies.append(latency)

    def worst_seconds(self, start: float, count: int = 5) -> list[dict[str, float]]:
        """The seconds of the run whose slowest answer was slowest: when a tail comes from
        a few stalls, they show here (and at what second of the run), with the generator's
        own worst send lag in that second: a stall of the generator, not of the server,
        shows there too."""
        seconds: dict[int, list[float]] = {}
        for sent_at, latency in zip(self.sent_at, self.latencies, strict=True):
            seconds.setdefault(int(sent_at - start), []).append(latency)
        lag_max: dict[int, float] = {}
        for due, lag in zip(self.lag_due, self.lags, strict=True):
            second = int(due - start)
            lag_max[second] = max(lag, lag_max.get(second, 0.0))
        worst = sorted(seconds.items(), key=lambda item: max(item[1]), reverse=True)[:count]
        return [
            {
                "second": second,
                "requests": len(values),
                "p50_ms": round(percentile(values, 0.5) * 1000, 3),
                "max_ms": round(max(values) * 1000, 3),
                "lag_max_ms": round(lag_max.get(second, 0.0) * 1000, 3),
            }
            for second, values in worst
        ]


def load_requests(mix_file: str, port: int) -> list[bytes]:
    """One request per line of the mix: "path<TAB>key" is a GET, "path<TAB>key<TAB>body" a
    POST of that JSON body (bench/batch.py)."""
    requests = []
    with open(mix_file, encoding="ascii") as lines:
        for line in lines:
            path, key, *body = line.rstrip("\n").split("\t", 2)
            head = f"{HOST}:{port}\r\nAuthorization: Bearer {key}\r\n"
            if body:
                content = body[0].encode()
                requests.append(
                    f"POST {path} HTTP/1.1\r\nHost: {head}Content-Type: application/json\r\n"
                    f"Content-Length: {len(content)}\r\n\r\n".encode()
                    + content
                )
            else:
                requests.append(f"GET {path} HTTP/1.1\r\nHost: {head}\r\n".encode())
    if not requests:
        raise SystemExit(f"{mix_file}: no request")
    return requests


def parse_response(buffer: bytes) -> tuple[int, int] | None:
    """(status, length of the whole response) once `buffer` holds a complete one (the
    servers always send Content-Length), else None."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buffer[:end]
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    total = end + 4 + length
    return (int(head[9:12]), total) if len(buffer) >= total else None


class Client(asyncio.Protocol):
    """One keep-alive connection. An answer is timed in `data_received`, the moment its last
    byte arrives, without waking a task for it."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.started = 0.0  # when the request in flight counts from
        self.deadline: asyncio.TimerHandle | None = None  # set while a request is in flight

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.pool.live.add(self)

    def send(self, request: bytes, started: float) -> None:
        assert self.transport is not None
        self.started = started
        self.transport.write(request)
        loop = asyncio.get_running_loop()
        self.deadline = loop.call_later(self.pool.timeout, self.timed_out)

    def _finish(self) -> float:
        latency = time.perf_counter() - self.started
        self.pool.stats.record(self.started, latency)
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        self.pool.answered()
        return latency

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        parsed = parse_response(self.buffer)
        if parsed is None:
            return
        status, length = parsed
        self.buffer = self.buffer[length:]
        self._finish()
        self.pool.stats.completed += 1
        if not 200 <= status < 300:
            self.pool.stats.non2xx += 1
        self.pool.idle.append(self)

    def timed_out(self) -> None:
        # A timed-out request still took at least this long: it stays in the latencies. The
        # connection is dropped (its answer may still come) and replaced.
        self.deadline = None
        self.pool.stats.timeouts += 1
        self.pool.stats.record(self.started, time.perf_counter() - self.started)
        self.pool.answered()
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.deadline is not None:  # an answer was due: the server dropped the connection
            self._finish()
            self.pool.stats.errors += 1
        self.transport = None
        self.pool.live.discard(self)
        if self in self.pool.idle:
            self.pool.idle.remove(self)


class Pool:
    """Keep-alive connections, the idle ones in a LIFO stack (the warmest first), and the
    count of requests still to be answered."""

    def __init__(self, port: int, size: int, timeout: float, stats: Stats, total: int) -> None:
        self.port = port
        self.size = size
        self.timeout = timeout
        self.stats = stats
        self.live: set[Client] = set()
        self.idle: list[Client] = []
        self.connecting = 0
        self.opening: set[asyncio.Task[None]] = set()
        self.unanswered = total
        self.all_answered = asyncio.Event()

    def answered(self) -> None:
        self.unanswered -= 1
        if self.unanswered <= 0:
            self.all_answered.set()

    async def open_one(self) -> None:
        self.connecting += 1
        loop = asyncio.get_running_loop()
        try:
            _, client = await asyncio.wait_for(
                loop.create_connection(lambda: Client(self), HOST, self.port), self.timeout
            )
            self.idle.append(client)
        except (TimeoutError, OSError):
            await asyncio.sleep(0.05)  # retried by `top_up` on the next wake-up
        finally:
            self.connecting -= 1

    def top_up(self) -> None:
        for _ in range(self.size - len(self.live) - self.connecting):
            task = asyncio.get_running_loop().create_task(self.open_one())
            self.opening.add(task)
            task.add_done_callback(self.opening.discard)

    def take(self) -> Client | None:
        while self.idle:
            client = self.idle.pop()
            if client.transport is not None and not client.transport.is_closing():
                return client
        return None


# The event loop's timers count in milliseconds (libuv, epoll): a shorter sleep returns at
# once. Above ~1,000 req/s the gap between two requests is under a millisecond, and sleeping
# until the next one made the generator poll the loop without pause, burning a whole core
# that the servers share (0.9 cores at 2,300 req/s, its own send lag p99 25 ms). So a
# wake-up sleeps at least a millisecond and sends every request due within the next two:
# timers fire up to a millisecond late, so nothing leaves late because of the sleep. A
# request's latency runs from the EARLIER of its scheduled and actual send times: lateness
# of the generator or of the server (no free connection) always counts against the result;
# earliness never counts in its favour.
_TICK = 0.001
_EARLY = 2 * _TICK


async def run(
    port: int,
    mix_file: str,
    rate: float,
    duration: float,
    connections: int,
    request_timeout: float,
) -> dict[str, object]:
    requests = load_requests(mix_file, port)
    stats = Stats()
    total = max(1, int(rate * duration))
    pool = Pool(port, connections, request_timeout, stats, total)
    await asyncio.gather(*(pool.open_one() for _ in range(connections)))
    backlog: collections.deque[tuple[int, float]] = collections.deque()
    start = time.perf_counter() + 0.05
    index = 0
    while index < total or backlog:
        now = time.perf_counter()
        while index < total and start + index / rate <= now + _EARLY:
            backlog.append((index, start + index / rate))
            index += 1
        while backlog and (client := pool.take()) is not None:
            request_index, due = backlog.popleft()
            now = time.perf_counter()
            if now - due > request_timeout:
                # Waited longer than a client would for a free connection: a timeout, not
                # sent (sending it anyway would let an overloaded server's backlog run on).
                stats.record(due, now - due)
                stats.timeouts += 1
                pool.answered()
                pool.idle.append(client)
                continue
            stats.lags.append(max(0.0, now - due))
            stats.lag_due.append(due)
            client.send(requests[request_index % len(requests)], min(now, due))
        pool.top_up()
        if index < total:
            next_wake = start + index / rate - _EARLY
            await asyncio.sleep(max(_TICK, next_wake - time.perf_counter()))
        else:
            await asyncio.sleep(_TICK)  # the backlog waits for a free connection
    # Bounded: whatever has not answered by then is counted as timed out.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(pool.all_answered.wait(), request_timeout + 1)
    for client in list(pool.live):
        if client.transport is not None:
            client.transport.close()
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
        "timeouts": stats.timeouts + max(0, lost),
        "lag_p99_ms": round(percentile(stats.lags, 0.99) * 1000, 3),
        "worst_seconds": stats.worst_seconds(start),
        "generator_cpu_s": round(time.process_time(), 3),
        "wall_s": round(wall, 3),
    }


def percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


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
