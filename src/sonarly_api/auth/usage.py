"""Keeps `api_keys.last_used_at` current to the minute without a write on every request.

Each process writes a key's timestamp at most once per minute, in a background task off the
request path; a failed write is logged and retried at the key's next use after the minute.
"""

from __future__ import annotations

import asyncio
import logging

from cachetools import TTLCache

from sonarly_api.auth.repository import touch_last_used
from sonarly_api.db import Database

logger = logging.getLogger(__name__)

RESOLUTION_SECONDS = 60.0


class UsageRecorder:
    def __init__(self, db: Database, resolution_seconds: float = RESOLUTION_SECONDS) -> None:
        self._db = db
        self._recent: TTLCache[str, bool] = TTLCache(maxsize=100_000, ttl=resolution_seconds)
        self._pending: set[asyncio.Task[None]] = set()

    def seen(self, key_id: str) -> None:
        """Note a use of `key_id`; schedules a write when the stored value may be a minute old."""
        if key_id in self._recent:
            return
        self._recent[key_id] = True
        task = asyncio.get_running_loop().create_task(self._write(key_id))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _write(self, key_id: str) -> None:
        try:
            await self._db.write(touch_last_used, key_id)
        except Exception as exc:
            self._recent.pop(key_id, None)
            logger.warning("could not record key use (%s)", type(exc).__name__)

    async def drain(self) -> None:
        """Wait for the writes in flight (at shutdown, and in tests)."""
        while self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
