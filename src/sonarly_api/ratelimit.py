"""Rate limits: one budget per API key, one budget of failed authentications per client address.

Counters live in this process (memory://) or in Redis, shared by every worker; `limits` (the
engine under slowapi) parses and describes the limits. slowapi's route decorator runs after
FastAPI has resolved every dependency, so it cannot answer 429 between authentication and the
permission check as the contract's order requires, and its synchronous storage calls would
block the event loop on Redis; this module counts from the authentication dependency instead.

A busy key costs one storage operation per block of requests, not per request (see
`_FixedWindow`), and the blocks reserved at the same time share one Redis round trip (see
`_RedisCounters`); an address over its failed-authentication budget is remembered in-process
until its window ends, instead of asking the storage on every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as redis
from cachetools import TTLCache
from limits import RateLimitItem, parse
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from sonarly_api.errors import RateLimited

logger = logging.getLogger(__name__)

_TRACKED = 100_000  # window ends / blocked addresses remembered per process


@dataclass(frozen=True, slots=True)
class Quota:
    limit: int
    remaining: int
    reset_at: float  # epoch seconds when the current window ends

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(math.ceil(self.reset_at)),
        }

    def exceeded(self, details: str) -> RateLimited:
        retry_after = max(1, math.ceil(self.reset_at - time.time()))
        return RateLimited(details, headers={**self.headers(), "Retry-After": str(retry_after)})


# Every call to the storage is bounded: a Redis that accepts connections and never answers
# held every authenticated request for 5 s (redis-py has no timeout by default, and retries).
STORAGE_TIMEOUT_SECONDS = 0.25
# After a failure the storage is left alone for this long: requests go through uncounted at
# once instead of each waiting for its own timeout; one warning per period, not per request.
STORAGE_RETRY_SECONDS = 1.0
WARNING_INTERVAL_SECONDS = 60.0


class _StorageHealth:
    """Failing open (availability over strictness: a rate-limit storage outage must not take
    the API down), counted for the metric, logged once per WARNING_INTERVAL_SECONDS."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # Calls to the storage that failed (sonarly_rate_limit_storage_failures_total); the
        # requests let through meanwhile without a call are not counted.
        self.failures = 0
        self._down_until = 0.0
        self._warned_at: float | None = None
        self._unlogged = 0

    def available(self) -> bool:
        return self._clock() >= self._down_until

    def failed(self, exc: Exception) -> None:
        now = self._clock()
        self.failures += 1
        self._down_until = now + STORAGE_RETRY_SECONDS
        if self._warned_at is not None and now - self._warned_at < WARNING_INTERVAL_SECONDS:
            self._unlogged += 1
            return
        since = f"; {self._unlogged} more failures since the last warning" if self._unlogged else ""
        logger.warning(
            "rate-limit storage unavailable (%s); requests are not limited while it is%s",
            type(exc).__name__,
            since,
        )
        self._warned_at, self._unlogged = now, 0

    def recovered(self) -> None:
        if self._warned_at is not None:
            logger.info("rate-limit storage reachable again; requests are limited")
            self._warned_at, self._unlogged = None, 0


class _Counters(Protocol):
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


class _MemoryCounters:
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
# all of them (see _RedisCounters).
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


class _RedisCounters:
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


def _counters(uri: str) -> _Counters:
    if uri.startswith(("redis://", "rediss://")):
        return _RedisCounters(uri)
    return _MemoryCounters()


@dataclass(slots=True)
class _Lease:
    """Part of a key's budget this process reserved in the storage for the current window."""

    reset_at: float  # when the window ends
    tokens: int  # reserved here and not spent yet
    counted: int  # the storage's count after our latest reservation


class _FixedWindow:
    """A fixed-window budget on shared counters, spent from in-process leases.

    Each process reserves a block of requests with one atomic increment and spends it
    locally, so a busy key costs one storage round trip per block, not per request (with
    Redis, that round trip was the largest single cost of a lookup; docs/performance.md).
    The block adapts: a tenth of what the storage says is left, at most `max_block`, and a
    single request near the limit, so the limit is never exceeded (only what the storage
    granted is spent) and unspent reservations shrink to nothing as the budget runs out.

    A request may cost several units (a batch lookup spends one per provider id): it is
    admitted whole or refused whole. What the lease lacks is reserved in one step that the
    storage grants entirely or not at all, so a refused request takes nothing from the
    shared count, and two processes cannot each hold half of what one request needs. A
    request costing more than this process holds plus what the storage has left is refused
    locally until the window ends: in a fixed window the count only grows.
    """

    def __init__(
        self, counters: _Counters, item: RateLimitItem, scope: str, max_block: int
    ) -> None:
        self._counters = counters
        self._item = item
        self._scope = scope
        self._max_block = max_block
        self._leases: TTLCache[str, _Lease] = TTLCache(maxsize=_TRACKED, ttl=item.get_expiry())
        self._reserving: dict[str, asyncio.Future[_Lease]] = {}

    def _quota(self, lease: _Lease) -> Quota:
        limit = self._item.amount
        return Quota(limit, max(limit - lease.counted + lease.tokens, 0), lease.reset_at)

    async def hit(self, identity: str, cost: int = 1) -> tuple[Quota, bool]:
        """The quota after this hit of `cost` units, and whether all of them were within the
        budget (if not, none was spent)."""
        limit = self._item.amount
        # Leases are kept by identity; the storage key is built only to reserve (it cost
        # several microseconds on every request).
        while True:
            lease = self._leases.get(identity)
            if lease is not None and lease.reset_at <= time.time():
                lease = None
            if lease is not None and lease.tokens >= cost:
                lease.tokens -= cost
                return self._quota(lease), True
            if lease is not None and lease.tokens + limit - lease.counted < cost:
                return self._quota(lease), False
            if cost > limit:
                # More than a whole window grants: never admitted. Asked once, for the quota.
                return self._quota(await self._reserve(identity, lease, cost)), False
            # One reservation in flight per key and process: concurrent requests wait for it
            # instead of each reserving a block (which would strand budget in this process
            # that another worker needs). Shielded: a cancelled waiter must not cancel it.
            pending = self._reserving.get(identity)
            # A finished reservation whose clean-up callback has not run yet is not reused:
            # awaiting a done future does not yield, so a request finding its tokens already
            # taken would loop here forever and freeze the worker (tests/faults/
            # test_multiprocess_rate_limits.py hung on it about one run in five).
            if pending is None or pending.done():
                pending = asyncio.ensure_future(self._reserve(identity, lease, cost))
                self._reserving[identity] = pending
                pending.add_done_callback(functools.partial(self._reserved, identity))
            reserved = await asyncio.shield(pending)
            if reserved.tokens < cost and reserved.tokens + limit - reserved.counted < cost:
                return self._quota(reserved), False
            # Otherwise the loop takes the tokens (or, if concurrent requests of this process
            # took them first, reserves again: the shared count grows each time, so this ends).

    def refund(self, identity: str, amount: int, reset_at: float) -> Quota | None:
        """Give back `amount` units a hit of the window ending at `reset_at` took from this
        process's lease: they stay this process's to spend in that window. None (nothing
        given back) when that window has ended."""
        lease = self._leases.get(identity)
        if lease is None or lease.reset_at != reset_at or reset_at <= time.time():
            return None
        lease.tokens += amount
        return self._quota(lease)

    def last_known(self, identity: str) -> Quota:
        """The quota as this process last knew it (the storage being unreachable): its lease
        in the current window, else a whole budget in a window starting now."""
        lease = self._leases.get(identity)
        if lease is not None and lease.reset_at > time.time():
            return self._quota(lease)
        return Quota(self._item.amount, self._item.amount, time.time() + self._item.get_expiry())

    def _reserved(self, identity: str, done: asyncio.Future[_Lease]) -> None:
        # Only its own entry: a newer reservation for the key may have replaced it.
        if self._reserving.get(identity) is done:
            del self._reserving[identity]

    def _block(self, previous: _Lease | None, need: int) -> int:
        limit = self._item.amount
        left = limit - previous.counted if previous is not None else limit
        return max(need, min(self._max_block, left // 10))

    async def _reserve(self, identity: str, previous: _Lease | None, cost: int) -> _Lease:
        # What the request lacks; a concurrent request's reservation may have covered part.
        need = max(1, cost - previous.tokens) if previous is not None else cost
        block = self._block(previous, need)
        count, granted, reset_at = await self._counters.add(
            self._item.key_for(self._scope, identity),
            block,
            self._item.get_expiry(),
            need=need,
            limit=self._item.amount,
        )
        # Another request of this process may have reserved meanwhile: add to its lease. The
        # same window, as the storage reports its end from the time left (so to a few ms),
        # when the two ends are closer than half a window: consecutive windows are one apart.
        # A lease of a window nothing was granted in yet (count 0) is replaced: its end was
        # a guess.
        current = self._leases.get(identity)
        if (
            current is not None
            and current.counted > 0
            and abs(current.reset_at - reset_at) < self._item.get_expiry() / 2
        ):
            current.tokens += granted
            current.counted = max(current.counted, count)
            return current
        lease = _Lease(reset_at, granted, count)
        self._leases[identity] = lease
        return lease


def describe(item: RateLimitItem) -> str:
    """'600 requests per minute', '10 requests per 5 seconds' (limits' own str() reads
    '600 per 1 minute', which the 429 message put as "may make 600 per 1 minute requests")."""
    unit = item.GRANULARITY.name
    requests = "request" if item.amount == 1 else "requests"
    every = unit if item.multiples == 1 else f"{item.multiples} {unit}s"
    return f"{item.amount} {requests} per {every}"


class RateLimits:
    def __init__(self, storage_uri: str, per_key: str, per_failed_auth: str) -> None:
        self._counters = _counters(storage_uri)
        self.per_key: RateLimitItem = parse(per_key)
        self.per_failed_auth: RateLimitItem = parse(per_failed_auth)
        self._keys = _FixedWindow(self._counters, self.per_key, "key", max_block=100)
        # One at a time: every failure counts in the shared storage at once.
        self._failures = _FixedWindow(
            self._counters, self.per_failed_auth, "auth-fail", max_block=1
        )
        self._blocked: TTLCache[str, Quota] = TTLCache(
            maxsize=_TRACKED, ttl=self.per_failed_auth.get_expiry()
        )
        self.storage = _StorageHealth()
        self._exceeded = f"This API key may make {describe(self.per_key)}."

    async def _hit(
        self, window: _FixedWindow, identity: str, cost: int = 1
    ) -> tuple[Quota, bool] | None:
        """The window's hit, or None when the storage fails or was failing a moment ago (the
        request then goes through: fail open)."""
        if not self.storage.available():
            return None
        try:
            result = await window.hit(identity, cost)
        except Exception as exc:
            self.storage.failed(exc)
            return None
        self.storage.recovered()
        return result

    async def hit_key(self, key_id: str) -> Quota:
        """Spend one request of the key's budget; raise RateLimited when it is exhausted.
        While the storage is unreachable the request goes through uncounted (fail open), and
        the quota returned is the last this process knew of the key's window."""
        hit = await self._hit(self._keys, key_id)
        if hit is None:
            return self._keys.last_known(key_id)
        quota, allowed = hit
        if not allowed:
            raise quota.exceeded(self._exceeded)
        return quota

    async def hit_key_more(self, key_id: str, spent: Quota | None, extra: int) -> Quota | None:
        """Spend `extra` more units for a request `hit_key` admitted (its answer: `spent`),
        once the request says what it costs (a batch: one unit per provider id). All or
        nothing: if the budget cannot cover them, the unit `hit_key` took is given back too
        and RateLimited raised, the request refused whole. None: the storage is unreachable
        (fail open), as for `hit_key`."""
        if extra <= 0:
            return spent
        hit = await self._hit(self._keys, key_id, extra)
        if hit is None:
            return self._keys.last_known(key_id)
        quota, allowed = hit
        if not allowed:
            if spent is not None:
                quota = self._keys.refund(key_id, 1, spent.reset_at) or quota
            raise quota.exceeded(
                f"This API key may make {describe(self.per_key)}, and a batch lookup counts one"
                f" per provider id: this one needs {extra + 1}, {quota.remaining} are left."
            )
        return quota

    def ensure_address_not_blocked(self, address: str) -> None:
        """Refuse every request from an address that used up its failed-authentication budget,
        valid key or not, so a guesser learns nothing while blocked."""
        quota = self._blocked.get(address)
        if quota is not None and quota.reset_at > time.time():
            raise quota.exceeded("Too many failed authentications from this address.")

    async def record_failed_auth(self, address: str) -> None:
        """Count a failed authentication; the one over the budget is answered with 429 and
        blocks the address in this process until the window ends (other workers block it at
        its next failure there: the counter itself is shared)."""
        hit = await self._hit(self._failures, address)
        if hit is None:
            return
        quota, allowed = hit
        if not allowed:
            self._blocked[address] = quota
            raise quota.exceeded("Too many failed authentications from this address.")

    async def close(self) -> None:
        await self._counters.close()
