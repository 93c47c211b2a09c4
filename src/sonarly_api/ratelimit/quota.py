"""What a client is told about its budget: the X-RateLimit-* headers and the 429."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

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
