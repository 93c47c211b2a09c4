"""How a running job waits on the provider: watched, so that a cancel takes effect at once, and
patient with a rate-limited provider, so that it slows the job down rather than failing it.

The job row is read every `watch_seconds` while a provider call runs: once the job is no longer
running under this attempt (a cancel, or a newer attempt), the call is cancelled (an httpx
request and asyncio sleeps are cancellable; the adapter gives its concurrency slot back) and
`JobGone` raised. A call still rate limited once the adapter's deadline is spent is paused for
`pause_seconds` and made again, `retries` times, the job `running` all along; any other
`ProviderError`, or the last rate-limited one, is for the runner to fail the job with.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from sonarly_api.prospecting.queue import WorkerStopping
from sonarly_api.providers.base import ProviderError

logger = logging.getLogger("sonarly_api.prospecting.runner")
T = TypeVar("T")

# How often the job row is read while a provider call runs (a cancel takes effect within it).
WATCH_SECONDS = 0.5
# A page (or enrichment batch) still rate limited after the adapter's own waits: paused for
# this long, then asked again, this many times before the job fails with UPSTREAM_ERROR.
RATE_LIMIT_PAUSE_SECONDS = 30.0
RATE_LIMIT_RETRIES = 3

StillOurs = Callable[[], Awaitable[bool]]


class JobGone(Exception):
    """The job is no longer this attempt's to run (cancelled, or taken over)."""


@dataclass
class ProviderPatience:
    stopping: asyncio.Event  # the worker's: a pause ends with WorkerStopping
    watch_seconds: float = WATCH_SECONDS
    pause_seconds: float = RATE_LIMIT_PAUSE_SECONDS
    retries: int = RATE_LIMIT_RETRIES

    async def call(self, job_id: str, still_ours: StillOurs, call: Callable[[], Awaitable[T]]) -> T:
        """`call()`, watched; made again after a pause while it is rate limited."""
        paused = 0
        while True:
            try:
                return await self.watched(still_ours, call())
            except ProviderError as exc:
                if exc.failure != "rate_limited" or paused >= self.retries:
                    raise
            paused += 1
            logger.info(
                "job %s rate limited by the provider: page asked again in %gs (%d/%d)",
                job_id,
                self.pause_seconds,
                paused,
                self.retries,
            )
            await self.watched(still_ours, asyncio.sleep(self.pause_seconds), pause=True)

    async def watched(self, still_ours: StillOurs, work: Awaitable[T], *, pause: bool = False) -> T:
        """`work`, cancelled (and JobGone raised) once `still_ours()` says no. A pause also
        ends on the worker stopping; a provider call rather finishes its page."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self.watch_seconds)
                if done:
                    return task.result()
                if pause and self.stopping.is_set():
                    raise WorkerStopping
                if not await still_ours():
                    raise JobGone
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
