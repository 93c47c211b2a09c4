"""How one provider call is attempted: retry rules, backoff with jitter, Retry-After, the failure
classes and the client-safe sentence each one gets. No I/O here (see http.py)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal

from sonarly_api.providers.base import FailureClass, ProviderError, ProviderErrorCode

# What a client reads in `details` (502) or a job's `error.message`: the class first, as a word a
# script can match, then a sentence. Never the provider's own text, its URL or the token.
MESSAGES: dict[FailureClass, str] = {
    "timeout": "timeout: the data provider did not answer in time.",
    "refused": "refused: the data provider refused the request or the connection.",
    "rate_limited": "rate_limited: the data provider is rate limiting this LinkedIn account; "
    "retry later.",
    "disconnected": "disconnected: the LinkedIn account connected to this account group is "
    "disconnected or restricted at the data provider; reconnect it.",
    "bad_answer": "bad_answer: the data provider sent an answer that could not be used.",
    "not_found": "not_found: the data provider does not know this source for the connected "
    "LinkedIn account.",
    "not_connected": "not_connected: no LinkedIn account is connected to this account group.",
}

CODES: dict[FailureClass, ProviderErrorCode] = {
    "disconnected": "LINKEDIN_DISCONNECTED",
    "not_found": "SOURCE_NOT_FOUND",
    "not_connected": "LINKEDIN_NOT_CONNECTED",
}


def failure(kind: FailureClass) -> ProviderError:
    return ProviderError(CODES.get(kind, "UPSTREAM_ERROR"), kind, MESSAGES[kind])


@dataclass(frozen=True)
class Verdict:
    """What an HTTP status means for the call."""

    action: Literal["ok", "retry", "fail"]
    failure: FailureClass | None = None


def judge(status: int, error_code: str | None) -> Verdict:
    """The contract's error table (docs/provider-api.md, "Errors")."""
    if 200 <= status < 300:
        return Verdict("ok")
    if status == 429:
        return Verdict("retry", "rate_limited")
    if status >= 500:
        return Verdict("retry", "bad_answer")
    if status == 404:
        kind: FailureClass = "disconnected" if error_code == "account_not_found" else "not_found"
        return Verdict("fail", kind)
    if status in (409, 423):
        return Verdict("fail", "disconnected")
    if status in (400, 401, 403):
        return Verdict("fail", "refused")
    return Verdict("fail", "bad_answer")  # a redirect, 405, 410…: not the contract


# Longer than any deadline the settings allow: "much later", when a date cannot be read.
_FAR = 10_000.0


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """A Retry-After header (delay-seconds or an HTTP date) in seconds; None when absent."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds) or seconds < 0:
        return 0.0
    return min(seconds, _FAR)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: attempt n waits a random time in
    [0, min(cap, base × 2^(n-1))], so callers that failed together do not retry together."""

    base_seconds: float = 0.25
    cap_seconds: float = 8.0

    def wait(self, attempt: int, retry_after: float | None) -> float:
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** (attempt - 1))
        jitter = random.uniform(0, ceiling)
        if retry_after is not None:
            # The provider said when: not before, plus a little jitter so that a crowd of
            # waiting calls does not arrive at the same instant.
            return retry_after + random.uniform(0, min(ceiling, 1.0))
        return jitter
