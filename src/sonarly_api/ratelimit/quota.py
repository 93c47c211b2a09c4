"""What a client is told about its budget: the X-RateLimit-* headers and the 429."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItem

from sonarly_api.errors import RateLimited


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


def describe(item: RateLimitItem) -> str:
    """'600 requests per minute', '10 requests per 5 seconds' (limits' own str() reads
    '600 per 1 minute', which the 429 message put as "may make 600 per 1 minute requests")."""
    unit = item.GRANULARITY.name
    requests = "request" if item.amount == 1 else "requests"
    every = unit if item.multiples == 1 else f"{item.multiples} {unit}s"
    return f"{item.amount} {requests} per {every}"
