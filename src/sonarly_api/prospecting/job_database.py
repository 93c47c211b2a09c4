"""A running job's database work, patient with outages.

Each piece of work runs in one bounded transaction (or on one connection, for reads). While
the database is unreachable, or the job row stays locked (a cancel holds it for a moment),
the work waits and runs again from the start: nothing of a transaction that did not commit
remains, and one that did is recognised by the work itself. Past `wait_seconds` the job goes
back to the queue (`DatabaseUnavailable`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sonarly_api.db import is_unavailable
from sonarly_api.prospecting import run_repository as runs
from sonarly_api.prospecting.queue import DatabaseUnavailable

# The runner's logger: an operator reads one stream for a job.
logger = logging.getLogger("sonarly_api.prospecting.runner")
T = TypeVar("T")
Work = Callable[[AsyncConnection], Awaitable[T]]


class JobDatabase:
    def __init__(self, engine: AsyncEngine, statement_timeout_ms: int, wait_seconds: float) -> None:
        self.engine = engine
        self.statement_timeout_ms = statement_timeout_ms
        self.wait_seconds = wait_seconds

    async def transaction(self, work: Work[T]) -> T:
        return await self._retrying(work, transaction=True)

    async def read(self, work: Work[T]) -> T:
        return await self._retrying(work, transaction=False)

    async def _retrying(self, work: Work[T], *, transaction: bool) -> T:
        deadline = time.monotonic() + self.wait_seconds
        delay = 0.1
        while True:
            try:
                if transaction:
                    async with self.engine.begin() as conn:
                        await runs.bound_transaction(conn, self.statement_timeout_ms)
                        return await work(conn)
                async with self.engine.connect() as conn:
                    return await work(conn)
            except Exception as exc:
                if not _transient(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    raise DatabaseUnavailable from exc
                logger.warning("job database work retried (%s)", type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)


def _transient(exc: BaseException) -> bool:
    """Worth a retry: the database is unreachable, or the job row stayed locked (55P03)."""
    if isinstance(exc, DBAPIError):
        orig = exc.orig
        if isinstance(orig, asyncpg.LockNotAvailableError) or isinstance(
            getattr(orig, "__cause__", None), asyncpg.LockNotAvailableError
        ):
            return True
    return is_unavailable(exc)
