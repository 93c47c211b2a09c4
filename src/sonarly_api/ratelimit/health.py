"""Failing open when the rate-limit storage cannot answer, bounded and logged sparingly."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

logger = logging.getLogger("sonarly_api.ratelimit")

# Every call to the storage is bounded: a Redis that accepts connections and never answers
# held every authenticated request for 5 s (redis-py has no timeout by default, and retries).
STORAGE_TIMEOUT_SECONDS = 0.25
# After a failure the storage is left alone for this long: requests go through uncounted at
# once instead of each waiting for its own timeout; one warning per period, not per request.
STORAGE_RETRY_SECONDS = 1.0
WARNING_INTERVAL_SECONDS = 60.0


class StorageHealth:
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
