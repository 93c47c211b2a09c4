"""Where the counts live: fixed-window counters in this process (memory://) or in Redis,
shared by every worker."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from sonarly_api.ratelimit.health import STORAGE_TIMEOUT_SECONDS


class Counters(Protocol):
    """Fixed-window counters, one per key: a window starts at the first increment of its key
    and lasts `expiry` seconds. A count never exceeds its limit."""

    async def add(
        self, key: str, amount: int, expiry: int, *, need: int = 1, limit: int
    ) -> tuple[int, int, float]:
        """Grant up to `amount` of what the key's current window has left under `limit`, but
        only if that is at least `need` (else nothing: a request spending several units at
        once is granted all of them or none). Returns the count after the grant, the amount
        granted and when the window ends (epoch seconds); a window starts with its first
        grant."""
        ...

    async def close(self) -> None: ...


class MemoryCounters:
    """In this process only (memory://). A dict of windows, the ended ones swept whenever it
    has doubled since the last sweep: O(1) per call. (limits' memory storage scans every key
    on each increment, which with a thousand keys cost more than the request itself.)"""

    _MIN_SWEEP = 1024

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._windows: dict[str, list[float]] = {}  # key -> [count, end (epoch seconds)]
        self._sweep_at = self._MIN_SWEEP

    def __len__(self) -> int:
        return len(self._windows)

    async def add(
        self, key: str, amount: int, expiry: int, *, need: int = 1, limit: int
    ) -> tuple[int, int, float]:
        now = self._clock()
        window = self._windows.get(key)
        if window is None or window[1] <= now:
            if need > limit:
                return 0, 0, now + expiry  # could never be granted: no window started
            if len(self._windows) >= self._sweep_at:
                self._windows = {k: w for k, w in self._windows.items() if w[1] > now}
                self._sweep_at = max(self._MIN_SWEEP, 2 * len(self._windows))
            window = self._windows[key] = [0, now + expiry]
        granted = min(amount, limit - int(window[0]))
        if granted < need:
            granted = 0
        window[0] += granted
        return int(window[0]), granted, window[1]

    async def close(self) -> None:
        return None


# For each key (with its amount, need, limit and window length in ARGV): grant what the window
# has left, up to the amount, if that is at least the need (else nothing, and the count stays);
# start the window on its first grant; return the count, the grant and the time left in
# milliseconds. One script for a whole batch of keys, so one round trip and one command for
# all of them (see RedisCounters).
_ADD_SCRIPT = """
local out = {}
for i, key in ipairs(KEYS) do
    local amount = tonumber(ARGV[4 * i - 3])
    local need = tonumber(ARGV[4 * i - 2])
    local limit = tonumber(ARGV[4 * i - 1])
    local expiry = tonumber(ARGV[4 * i])
    local count = tonumber(redis.call('GET', key) or '0')
    local granted = math.min(amount, limit - count)
    if granted < need then
        granted = 0
    end
    if granted > 0 then
        count = redis.call('INCRBY', key, granted)
    end
    local left = redis.call('PTTL', key)
    if left < 0 then
        if granted > 0 then
            redis.call('PEXPIRE', key, expiry)
        end
        left = expiry
    end
    out[3 * i - 2] = count
    out[3 * i - 1] = granted
    out[3 * i] = left
end
return out
"""

_MAX_BATCH = 500  # keys per script call

_Answer = asyncio.Future[tuple[int, int, int]]  # count, granted, time left (ms)


class RedisCounters:
    """Counters in Redis, the increments of concurrent requests sent together.

    At the start of a window every busy key reserves a block at once (and windows start
    together after a restart, or when traffic resumes). One command per key cost ~0.1 ms of
    CPU each in redis-py and a pooled connection each: a thousand keys stalled a worker for
    tens of milliseconds (the benchmark's open loop saw 100-200 ms), and past 100 at once
    redis-py's pool refused connections. Increments are therefore queued, and one script
    call at a time sends all those waiting: one round trip and ~0.1 ms for the batch. A lone
    increment goes out at once; under a burst, batches form while the previous one is in
    flight.
    """

    def __init__(self, uri: str) -> None:
        self._client = redis.Redis.from_url(
            uri,
            socket_connect_timeout=STORAGE_TIMEOUT_SECONDS,
            socket_timeout=STORAGE_TIMEOUT_SECONDS,
            # No retries: redis-py's default retries 10 times with backoff, which turned a
            # short timeout back into seconds per request. The next request tries again.
            retry=Retry(NoBackoff(), 0),
        )
        self._add = self._client.register_script(_ADD_SCRIPT)
        self._waiting: list[tuple[str, tuple[int, int, int, int], _Answer]] = []
        self._sender: asyncio.Task[None] | None = None

    async def add(
        self, key: str, amount: int, expiry: int, *, need: int = 1, limit: int
    ) -> tuple[int, int, float]:
        done: _Answer = asyncio.get_running_loop().create_future()
        self._waiting.append((key, (amount, need, limit, expiry * 1000), done))
        if self._sender is None:
            self._sender = asyncio.ensure_future(self._send_waiting())
        count, granted, left_ms = await done
        # Read after the answer, so the window may end up to half a round trip earlier than
        # this says: the tokens granted in it are then spent a fraction of a millisecond late,
        # but never more of them than it granted.
        return count, granted, time.time() + left_ms / 1000

    async def _send_waiting(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:_MAX_BATCH], self._waiting[_MAX_BATCH:]
                args: list[int] = []
                for _, arguments, _ in batch:
                    args += arguments
                try:
                    # Also bounds what the socket timeouts do not (e.g. name resolution).
                    async with asyncio.timeout(2 * STORAGE_TIMEOUT_SECONDS):
                        flat = await self._add(keys=[key for key, *_ in batch], args=args)
                except Exception as exc:
                    # Each waiting request decides (fail open, see RateLimits.hit_key).
                    for *_, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                except BaseException:
                    for *_, done in batch:
                        done.cancel()  # cancelled (shutdown): nobody waits for an answer
                    raise
                for i, (*_, done) in enumerate(batch):
                    if not done.done():  # its request may have been cancelled meanwhile
                        done.set_result(
                            (int(flat[3 * i]), int(flat[3 * i + 1]), int(flat[3 * i + 2]))
                        )
        finally:
            self._sender = None
            for *_, done in self._waiting:
                if not done.done():
                    done.cancel()
            self._waiting.clear()

    async def close(self) -> None:
        if self._sender is not None:
            with contextlib.suppress(Exception):
                await self._sender
        await self._client.aclose()


def counters_for(uri: str) -> Counters:
    if uri.startswith(("redis://", "rediss://")):
        return RedisCounters(uri)
    return MemoryCounters()
