"""`Database.fetch`, the hot path's statement runner: the connections it keeps checked out
between statements go back to SQLAlchemy's pool, and a dead one costs a retry, not an error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import func, select

from sonarly_api.db import Database, DriverStatement, create_engine
from tests.conftest import make_settings

BACKEND_PID = DriverStatement.compile(select(func.pg_backend_pid()))
POOL_SIZE = 6


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(
        create_engine(make_settings(database_url, db_pool_size=POOL_SIZE), database_url)
    )
    try:
        yield database
    finally:
        await database.dispose()


async def concurrent_fetches(db: Database, count: int) -> set[int]:
    """`count` statements at once (each holds its connection until the others have started);
    the backend pids that ran them."""
    rows = await asyncio.gather(*(db.fetch(BACKEND_PID) for _ in range(count)))
    return {row[0][0] for row in rows}


async def test_held_connections_stay_idle_in_the_pools_figures_and_go_back_within_a_second(
    db: Database,
) -> None:
    pids = await concurrent_fetches(db, POOL_SIZE)
    assert len(pids) == POOL_SIZE  # every statement had a connection of its own

    pool = db.engine.pool
    held = pool.checkedout()  # type: ignore[attr-defined]
    assert 1 <= held <= POOL_SIZE // 2  # never more than half the pool
    assert db.pool_status() == (0, POOL_SIZE)  # nothing is running: all idle

    # Held connections serve the next statements without a check-out...
    assert (await db.fetch(BACKEND_PID))[0][0] in pids
    # ... and all return to the pool a second after they were first held.
    await asyncio.sleep(1.2)
    assert pool.checkedout() == 0  # type: ignore[attr-defined]
    assert db.pool_status() == (0, POOL_SIZE)


async def test_a_killed_held_connection_costs_a_retry_not_an_error(
    db: Database, database_url: str
) -> None:
    [pid] = await concurrent_fetches(db, 1)
    admin = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()

    rows = await db.fetch(BACKEND_PID)  # first tried on the held, dead connection

    assert rows[0][0] != pid  # answered on another connection
    assert (await db.fetch(BACKEND_PID))[0][0] == rows[0][0]  # which is now the one held
