"""Rate limits: one budget per API key, one budget of failed authentications per client address.

Counters live in this process (memory://) or in Redis, shared by every worker; `limits` (the
engine under slowapi) parses and describes the limits. slowapi's route decorator runs after
FastAPI has resolved every dependency, so it cannot answer 429 between authentication and the
permission check as the contract's order requires, and its synchronous storage calls would
block the event loop on Redis; this module counts from the authentication dependency instead.

A busy key costs one storage operation per block of requests, not per request (see
`window.FixedWindow`), and the blocks reserved at the same time share one Redis round trip
(see `counters.RedisCounters`); an address over its failed-authentication budget is remembered
in-process until its window ends, instead of asking the storage on every request.
"""

from __future__ import annotations

import time

from cachetools import TTLCache
from limits import RateLimitItem, parse

from sonarly_api.ratelimit.counters import counters_for
from sonarly_api.ratelimit.health import StorageHealth
from sonarly_api.ratelimit.quota import Quota, describe
from sonarly_api.ratelimit.window import TRACKED, FixedWindow

__all__ = ["Quota", "RateLimits", "describe"]


class RateLimits:
    def __init__(self, storage_uri: str, per_key: str, per_failed_auth: str) -> None:
        self._counters = counters_for(storage_uri)
        self.per_key: RateLimitItem = parse(per_key)
        self.per_failed_auth: RateLimitItem = parse(per_failed_auth)
        self._keys = FixedWindow(self._counters, self.per_key, "key", max_block=100)
        # One at a time: every failure counts in the shared storage at once.
        self._failures = FixedWindow(self._counters, self.per_failed_auth, "auth-fail", max_block=1)
        self._blocked: TTLCache[str, Quota] = TTLCache(
            maxsize=TRACKED, ttl=self.per_failed_auth.get_expiry()
        )
        self.storage = StorageHealth()
        self._exceeded = f"This API key may make {describe(self.per_key)}."

    async def _hit(
        self, window: FixedWindow, identity: str, cost: int = 1
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
