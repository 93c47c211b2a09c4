"""How much of a job one transaction commits.

A transaction per provider page (25 profiles) made a fast provider's job a train of small
commits: ~160 transactions, a dozen statements each, for a 2,000-result job. A stage rather
gathers provider answers until it holds `CommitSize.rows` profiles or has waited
`CommitSize.seconds` on the provider, and commits them together, whole or not at all. A slow
provider (a page takes longer than `seconds`) still commits page by page, so a job's
progress moves as its pages arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from sonarly_api.prospecting.queue import WorkerStopping
from sonarly_api.providers.base import ProviderError

T = TypeVar("T")


@dataclass(frozen=True)
class CommitSize:
    rows: int = 500  # profiles per transaction, at most about this many (whole pages)
    seconds: float = 0.25  # waiting on the provider before what is held is committed


# Commit after every provider answer (pages of a test that steps through a job one by one).
EVERY_PAGE = CommitSize(rows=1, seconds=0.0)


@dataclass(frozen=True)
class Gathered(Generic[T]):
    items: list[T]
    # What stopped the gathering early (a provider failure, the worker stopping): the caller
    # commits `items`, which the provider did answer, and then raises it.
    interrupted: ProviderError | WorkerStopping | None


# One provider answer: (the item, how many profiles it holds, whether it is the stage's last).
Fetch = Callable[[], Awaitable[tuple[T, int, bool]]]


class Gatherer(Generic[T]):
    """Rounds of provider answers from `fetch()`, one round per transaction: until the stage's
    last answer, `size` is reached or the worker is stopping. A call still running when the
    round's time is up is not waited for: what is held is committed, and the call's answer
    opens the next round. `aclose()` cancels such a call (the stage ended otherwise)."""

    def __init__(self, fetch: Fetch[T], size: CommitSize, stopping: asyncio.Event) -> None:
        self._fetch = fetch
        self._size = size
        self._stopping = stopping
        self._pending: asyncio.Future[tuple[T, int, bool]] | None = None

    async def next_round(self) -> Gathered[T]:
        """A failure before the round's first answer is raised as is."""
        items: list[T] = []
        rows = 0
        deadline = time.monotonic() + self._size.seconds
        while True:
            call = self._pending or asyncio.ensure_future(self._fetch())
            self._pending = None
            if items:
                done, _ = await asyncio.wait({call}, timeout=max(0.0, deadline - time.monotonic()))
                if not done:
                    self._pending = call
                    return Gathered(items, None)
            try:
                item, count, last = await call
            except (ProviderError, WorkerStopping) as exc:
                if not items:
                    raise
                return Gathered(items, exc)
            items.append(item)
            rows += count
            if (
                last
                or rows >= self._size.rows
                or time.monotonic() >= deadline
                or self._stopping.is_set()
            ):
                return Gathered(items, None)

    async def aclose(self) -> None:
        call, self._pending = self._pending, None
        if call is not None:
            call.cancel()
            # Its outcome, whatever it is, no longer matters (and is not left unretrieved).
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await call
