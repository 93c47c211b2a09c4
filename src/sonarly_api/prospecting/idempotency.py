"""Idempotency-Key of a start request, scoped to (API key, account group).

The key is claimed by a unique row inserted in the same transaction as the job (and before
the credits are reserved), so concurrent requests with one key create one job: the others'
insert waits for the first transaction, finds the key taken, rolls back their own job and
answer as replays of the winner. Keys are kept as long as their job (at least the 24 hours
the contract promises).
"""

from __future__ import annotations

import hashlib
import json

from sonarly_api.errors import AppError
from sonarly_api.prospecting.repository import FINISHED, JobHead
from sonarly_api.prospecting.validation import StartRequest


class IdempotencyKeyReused(AppError):
    status = 409
    code = "IDEMPOTENCY_KEY_REUSED"
    message = "This Idempotency-Key was already used with another request body."

    def __init__(self) -> None:
        super().__init__(
            "Idempotency-Key: already used by this API key in this account group for a "
            "different request; send a new key for a new job."
        )


def request_hash(request: StartRequest, max_results: int) -> bytes:
    """SHA-256 of the request as validated: key order, spacing, a URL's spelling and an
    omitted default do not make two bodies different."""
    canonical = json.dumps(
        {
            "source": request.source,
            "maxResults": max_results,
            "searchEmails": request.search_emails,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode()).digest()


def replay(stored_hash: bytes, expected_hash: bytes, job: JobHead) -> JobHead:
    """The job to answer with, or 409 if the key went with another body."""
    if stored_hash != expected_hash:
        raise IdempotencyKeyReused()
    return job


def is_finished(status: str) -> bool:
    return status in FINISHED
