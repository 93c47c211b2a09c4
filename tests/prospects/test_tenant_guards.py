"""TRUNCATE of `persons` or `account_groups` while `prospects` may refer to them is refused
at every isolation level (revision 0006_tenant_guards; issue 17, "Tenants").

At REPEATABLE READ the transaction's snapshot can predate prospects committed since: a check
that reads the table through it would pass and leave those prospects pointing at nothing.
Each test runs on a database of its own, where a failing check cannot empty the shared one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest

from sonarly_api.ids import new_id
from sonarly_api.migrations import upgrade

PARENTS = ("persons", "account_groups")


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@pytest.fixture
async def connect(create_database: Callable[[], str]) -> AsyncIterator[Callable[[], Any]]:
    """Factory of connections to a fresh, migrated database of this test."""
    url = await asyncio.to_thread(create_database)
    await asyncio.to_thread(upgrade, url)
    opened: list[asyncpg.Connection] = []

    async def make() -> asyncpg.Connection:
        conn = await asyncpg.connect(_dsn(url))
        opened.append(conn)
        return conn

    yield make
    for conn in opened:
        await conn.close()


async def add_prospect(conn: asyncpg.Connection) -> None:
    group, person = new_id(), new_id()
    await conn.execute("INSERT INTO account_groups (id, name) VALUES ($1, 'guards')", group)
    await conn.execute("INSERT INTO persons (id) VALUES ($1)", person)
    await conn.execute(
        "INSERT INTO prospects (account_group_id, id, person_id, provider_id)"
        " VALUES ($1, $2, $3, 'crm-1')",
        group,
        new_id(),
        person,
    )


async def orphans(conn: asyncpg.Connection) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM prospects p"
            " WHERE NOT EXISTS (SELECT FROM persons s WHERE s.id = p.person_id)"
            " OR NOT EXISTS (SELECT FROM account_groups g WHERE g.id = p.account_group_id)"
        )
    )


@pytest.mark.parametrize("table", PARENTS)
@pytest.mark.parametrize("isolation", ["repeatable_read", "serializable"])
async def test_snapshot_older_than_the_prospects(
    connect: Callable[[], Any], table: str, isolation: str
) -> None:
    """The TRUNCATE's snapshot sees no prospect; one was committed since."""
    truncating, writer = await connect(), await connect()
    tx = truncating.transaction(isolation=isolation)
    await tx.start()
    assert await truncating.fetchval("SELECT count(*) FROM prospects") == 0  # the snapshot
    await add_prospect(writer)  # committed after it

    with pytest.raises(asyncpg.FeatureNotSupportedError) as caught:
        await truncating.execute(f"TRUNCATE {table} CASCADE")
    await tx.rollback()

    assert (
        caught.value.message == f'cannot truncate table "{table}" while prospects may refer to it'
    )
    assert caught.value.hint is not None
    assert "prospects" in caught.value.hint
    assert await orphans(writer) == 0
    assert await writer.fetchval(f"SELECT count(*) FROM {table}") == 1


@pytest.mark.parametrize("table", PARENTS)
async def test_waits_for_a_writer_in_flight(connect: Callable[[], Any], table: str) -> None:
    """A prospect being written when the TRUNCATE starts: it waits for that transaction,
    then refuses."""
    truncating, writer = await connect(), await connect()
    tx = truncating.transaction(isolation="repeatable_read")
    await tx.start()
    await truncating.fetchval("SELECT 1")  # the snapshot, before the writer's commit
    writing = writer.transaction()
    await writing.start()
    await add_prospect(writer)

    attempt = asyncio.create_task(truncating.execute(f"TRUNCATE {table} CASCADE"))
    await asyncio.sleep(0.3)
    assert not attempt.done()  # waiting for the writer's locks
    await writing.commit()

    with pytest.raises(asyncpg.FeatureNotSupportedError, match="may refer to it"):
        await attempt
    await tx.rollback()
    assert await orphans(writer) == 0


@pytest.mark.parametrize("isolation", ["read_committed", "repeatable_read"])
async def test_truncating_prospects_in_the_same_command(
    connect: Callable[[], Any], isolation: str
) -> None:
    conn = await connect()
    await add_prospect(conn)

    async with conn.transaction(isolation=isolation):
        await conn.execute("TRUNCATE prospects, persons, account_groups CASCADE")

    for table in ("prospects", "persons", "account_groups"):
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0


@pytest.mark.parametrize("isolation", ["read_committed", "repeatable_read"])
async def test_parents_of_an_empty_prospects_table(
    connect: Callable[[], Any], isolation: str
) -> None:
    conn = await connect()
    await conn.execute("INSERT INTO persons (id) VALUES ($1)", new_id())

    async with conn.transaction(isolation=isolation):
        await conn.execute("TRUNCATE persons")

    assert await conn.fetchval("SELECT count(*) FROM persons") == 0


async def test_read_committed_sees_what_was_committed(connect: Callable[[], Any]) -> None:
    """At READ COMMITTED the check reads committed rows: refused while a prospect exists,
    allowed once they are all deleted (where REPEATABLE READ, which cannot know, refuses)."""
    conn = await connect()
    await add_prospect(conn)
    with pytest.raises(asyncpg.FeatureNotSupportedError) as caught:
        await conn.execute("TRUNCATE persons CASCADE")
    assert caught.value.message == 'cannot truncate table "persons" while prospects refer to it'

    await conn.execute("DELETE FROM prospects")
    with pytest.raises(asyncpg.FeatureNotSupportedError, match="may refer to it"):
        async with conn.transaction(isolation="repeatable_read"):
            await conn.execute("TRUNCATE persons")
    await conn.execute("TRUNCATE persons, account_groups CASCADE")

    assert await conn.fetchval("SELECT count(*) FROM persons") == 0
