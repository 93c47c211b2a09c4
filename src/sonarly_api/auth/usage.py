"""Keeps `api_keys.last_used_at` current to the minute without a write per request.

Each process notes the keys it authenticated, with the time (a dict assignment on the request
path), and writes them all in one UPDATE once a minute, off the request path: each key gets the
time of its last request, not the time of the write. A failed write is logged and its keys
kept for the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime

from sonarly_api.auth.repository import touch_last_used
from sonarly_api.db import Database

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_SECONDS = 60.0


class UsageRecorder:
    def __init__(self, db: Database, interval_seconds: float = FLUSH_INTERVAL_SECONDS) -> None:
        self._db = db
        self._interval = interval_seconds
        self._seen: dict[str, float] = {}  # key id -> epoch seconds of its last request
        self._flusher: asyncio.Task[None] | None = None

    def seen(self, key_id: str) -> None:
        self._seen[key_id] = time.time()
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_periodically())

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self._flush()

    async def _flush(self) -> None:
        if not self._seen:
            return
        seen, self._seen = self._seen, {}
        try:
            await touch_last_used(
                self._db, {key: datetime.fromtimestamp(at, UTC) for key, at in seen.items()}
            )
        except Exception as exc:
            # Uses noted meanwhile are more recent: they win.
            self._seen = seen | self._seen
            logger.warning("could not record key use (%s)", type(exc).__name__)

    async def drain(self) -> None:
        """Write what is pending now and stop the periodic writer (at shutdown; in tests).
        The next use starts it again."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        await self._flush()
