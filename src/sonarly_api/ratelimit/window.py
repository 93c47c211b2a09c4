"""A fixed-window budget spent from in-process leases: one storage operation per block of
requests, not per request."""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass

from cachetools import TTLCache
from limits import RateLimitItem

from sonarly_api.ratelimit.counters import Counters
from sonarly_api.ratelimit.quota import Quota

TRACKED = 100_000  # window ends / blocked addresses remembered per process


@dataclass(slots=True)
class Lease:
    """Part of a key's budget this process reserved in the storage for the current window."""

    reset_at: float  # when the window ends
    tokens: int  # reserved here and not spent yet
    counted: int  # the storage's count after our latest reservation


class FixedWindow:
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

    def __init__(self, counters: Counters, item: RateLimitItem, scope: str, max_block: int) -> None:
        self._counters = counters
        self._item = item
        self._scope = scope
        self._max_block = max_block
        self._leases: TTLCache[str, Lease] = TTLCache(maxsize=TRACKED, ttl=item.get_expiry())
        self._reserving: dict[str, asyncio.Future[Lease]] = {}

    def _quota(self, lease: Lease) -> Quota:
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

    def _reserved(self, identity: str, done: asyncio.Future[Lease]) -> None:
        # Only its own entry: a newer reservation for the key may have replaced it.
        if self._reserving.get(identity) is done:
            del self._reserving[identity]

    def _block(self, previous: Lease | None, need: int) -> int:
        limit = self._item.amount
        left = limit - previous.counted if previous is not None else limit
        return max(need, min(self._max_block, left // 10))

    async def _reserve(self, identity: str, previous: Lease | None, cost: int) -> Lease:
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
        lease = Lease(reset_at, granted, count)
        self._leases[identity] = lease
        return lease
