"""Rate limits: one budget per API key, one budget of failed authentications per client address.

Built on `limits` (the engine under slowapi) through its asyncio API. slowapi's route
decorator runs after FastAPI has resolved every dependency, so it cannot answer 429
between authentication and the permission check as the contract's order requires, and
its synchronous storage calls would block the event loop on Redis. Calling `limits.aio`
from our own dependency keeps both the order and the loop.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import Storage
from limits.aio.strategies import FixedWindowRateLimiter
from limits.storage import storage_from_string

from sonarly_api.errors import RateLimited

logger = logging.getLogger(__name__)


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


def _storage_failed(exc: Exception) -> None:
    # Availability over strictness: a rate-limit storage outage must not take the API down.
    logger.warning("rate-limit storage unavailable (%s); request not limited", type(exc).__name__)


def _async_storage(uri: str) -> Storage:
    options: dict[str, str] = {}
    if uri.startswith(("redis://", "rediss://")):
        # redis-py's asyncio client (one well-known dependency rather than coredis).
        options["implementation"] = "redispy"
    storage = storage_from_string("async+" + uri, **options)
    assert isinstance(storage, Storage)
    return storage


class RateLimits:
    def __init__(self, storage_uri: str, per_key: str, per_failed_auth: str) -> None:
        self.storage = _async_storage(storage_uri)
        self._strategy = FixedWindowRateLimiter(self.storage)
        self.per_key: RateLimitItem = parse(per_key)
        self.per_failed_auth: RateLimitItem = parse(per_failed_auth)

    async def _quota(self, item: RateLimitItem, *identifiers: str) -> Quota:
        stats = await self._strategy.get_window_stats(item, *identifiers)
        return Quota(item.amount, max(stats.remaining, 0), stats.reset_time)

    @staticmethod
    def _exceeded(quota: Quota, details: str) -> RateLimited:
        retry_after = max(1, math.ceil(quota.reset_at - time.time()))
        return RateLimited(details, headers={**quota.headers(), "Retry-After": str(retry_after)})

    async def hit_key(self, key_id: str) -> Quota | None:
        """Spend one request of the key's budget; raise RateLimited when it is exhausted.
        None when the storage is unreachable: the request goes through (fail open)."""
        try:
            allowed = await self._strategy.hit(self.per_key, "key", key_id)
            quota = await self._quota(self.per_key, "key", key_id)
        except Exception as exc:
            _storage_failed(exc)
            return None
        if not allowed:
            raise self._exceeded(quota, f"This API key may make {self.per_key} requests.")
        return quota

    async def ensure_address_not_blocked(self, address: str) -> None:
        """Refuse every request from an address that used up its failed-authentication budget,
        valid key or not, so a guesser learns nothing while blocked."""
        try:
            if await self._strategy.test(self.per_failed_auth, "auth-fail", address):
                return
            quota = await self._quota(self.per_failed_auth, "auth-fail", address)
        except Exception as exc:
            _storage_failed(exc)
            return
        raise self._exceeded(quota, "Too many failed authentications from this address.")

    async def record_failed_auth(self, address: str) -> None:
        try:
            await self._strategy.hit(self.per_failed_auth, "auth-fail", address)
        except Exception as exc:
            _storage_failed(exc)

    async def close(self) -> None:
        reset = getattr(self.storage, "close", None)
        if reset is not None:
            await reset()
