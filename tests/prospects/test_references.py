"""The references of `prospects` to `persons` and `account_groups`, checked once per statement by
the triggers of alembic revision 0002 instead of per-row foreign keys: the same guarantees."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest

from sonarly_api.ids import new_id
from sonarly_api.migrations import upgrade

PERSON_FK = "fk_prospects_person_id_persons"
GROUP_FK = "fk_prospects_account_group_id_account_groups"


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@pytest.fixture
async def connect(database_url: str) -> AsyncIterator[Callable[[], Any]]:
    """Factory of connections to the migrated test database, all closed at the end."""
    opened: list[asyncpg.Connection] = []

    async def make() -> asyncpg.Connection:
        conn = await asyncpg.connect(_dsn(database_url))
        opened.append(conn)
        return conn

    yield make
    for conn in opened:
        await conn.close()


async def add_group(conn: asyncpg.Connection) -> str:
    group = new_id()
    await conn.execute("INSERT INTO account_groups (id, name) VALUES ($1, 'refs')", group)
    return group


async def add_person(conn: asyncpg.Connection) -> str:
    person = new_id()
    await conn.execute("INSERT INTO persons (id) VALUES ($1)", person)
    return person


async def add_prospect(conn: asyncpg.Connection, group: str, person: str) -> str:
    prospect = new_id()
    await conn.execute(
        "INSERT INTO prospects (account_group_id, id, person_id, provider_id)"
        " VALUES ($1, $2, $3, 'crm-1')",
        group,
        prospect,
        person,
    )
    return prospect


async def count(conn: asyncpg.Connection, sql: str, *args: Any) -> int:
    return int(await conn.fetchval(f"SELECT count(*) FROM {sql}", *args))


async def test_a_prospect_needs_an_existing_person(connect: Callable[[], Any]) -> None:
    conn = await connect()
    group = await add_group(conn)
    missing = new_id()

    with pytest.raises(asyncpg.ForeignKeyViolationError) as caught:
        await add_prospect(conn, group, missing)

    assert caught.value.constraint_name == PERSON_FK
    assert missing in str(caught.value.detail)
    assert await count(conn, "prospects WHERE account_group_id = $1", group) == 0


async def test_a_prospect_needs_an_existing_group(connect: Callable[[], Any]) -> None:
    conn = await connect()
    person = await add_person(conn)

    with pytest.raises(asyncpg.ForeignKeyViolationError) as caught:
        await add_prospect(conn, new_id(), person)

    assert caught.value.constraint_name == GROUP_FK
    assert await count(conn, "prospects WHERE person_id = $1", person) == 0


async def test_one_bad_row_fails_a_whole_set_based_insert(connect: Callable[[], Any]) -> None:
    conn = await connect()
    group = await add_group(conn)
    persons = [await add_person(conn) for _ in range(3)]

    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await conn.execute(
            "INSERT INTO prospects (account_group_id, id, person_id, provider_id)"
            " SELECT $1, lpad(to_hex(n), 24, '0'), p, 'crm-' || n"
            " FROM unnest($2::text[]) WITH ORDINALITY AS u(p, n)",
            group,
            [*persons, new_id()],
        )

    assert await count(conn, "prospects WHERE account_group_id = $1", group) == 0


async def test_persons_created_in_the_same_transaction_are_found(
    connect: Callable[[], Any],
) -> None:
    conn = await connect()
    group = await add_group(conn)

    async with conn.transaction():
        person = await add_person(conn)
        await add_prospect(conn, group, person)

    assert await count(conn, "prospects WHERE person_id = $1", person) == 1


async def test_an_update_is_checked_only_for_the_keys_it_changes(
    connect: Callable[[], Any],
) -> None:
    conn = await connect()
    group = await add_group(conn)
    person = await add_person(conn)
    prospect = await add_prospect(conn, group, person)

    await conn.execute("UPDATE prospects SET name = 'Ada' WHERE id = $1", prospect)
    with pytest.raises(asyncpg.ForeignKeyViolationError) as caught:
        await conn.execute("UPDATE prospects SET person_id = $2 WHERE id = $1", prospect, new_id())

    assert caught.value.constraint_name == PERSON_FK
    assert await conn.fetchval("SELECT person_id FROM prospects WHERE id = $1", prospect) == person


async def test_a_referenced_person_cannot_be_deleted_or_re_keyed(
    connect: Callable[[], Any],
) -> None:
    conn = await connect()
    group = await add_group(conn)
    person, unused = await add_person(conn), await add_person(conn)
    await add_prospect(conn, group, person)

    with pytest.raises(asyncpg.ForeignKeyViolationError) as deleting:
        await conn.execute("DELETE FROM persons WHERE id = ANY($1::text[])", [person, unused])
    with pytest.raises(asyncpg.ForeignKeyViolationError) as re_keying:
        await conn.execute("UPDATE persons SET id = $2 WHERE id = $1", person, new_id())
    await conn.execute("UPDATE persons SET public_identifier = $2 WHERE id = $1", person, person)
    await conn.execute("DELETE FROM persons WHERE id = $1", unused)

    assert deleting.value.constraint_name == re_keying.value.constraint_name == PERSON_FK
    assert await count(conn, "persons WHERE id = ANY($1::text[])", [person, unused]) == 1


async def test_deleting_a_group_deletes_its_prospects_only(connect: Callable[[], Any]) -> None:
    conn = await connect()
    group, other = await add_group(conn), await add_group(conn)
    person = await add_person(conn)
    await add_prospect(conn, group, person)
    kept = await add_prospect(conn, other, person)

    await conn.execute("DELETE FROM account_groups WHERE id = $1", group)

    assert await count(conn, "prospects WHERE account_group_id = $1", group) == 0
    assert (
        await conn.fetchval("SELECT id FROM prospects WHERE account_group_id = $1", other) == kept
    )


async def test_a_referenced_group_cannot_be_re_keyed(connect: Callable[[], Any]) -> None:
    conn = await connect()
    group = await add_group(conn)
    await add_prospect(conn, group, await add_person(conn))

    with pytest.raises(asyncpg.ForeignKeyViolationError) as caught:
        await conn.execute("UPDATE account_groups SET id = $2 WHERE id = $1", group, new_id())

    assert caught.value.constraint_name == GROUP_FK


async def test_an_insert_locks_the_persons_it_refers_to(connect: Callable[[], Any]) -> None:
    """As a foreign key does: a person another transaction's new prospect refers to cannot
    be deleted until that transaction ends; then the delete sees the prospect and fails."""
    inserter, deleter = await connect(), await connect()
    group = await add_group(inserter)
    person = await add_person(inserter)
    await deleter.execute("SET lock_timeout = '200ms'")

    insert = inserter.transaction()
    await insert.start()
    await add_prospect(inserter, group, person)
    with pytest.raises(asyncpg.LockNotAvailableError):
        await deleter.execute("DELETE FROM persons WHERE id = $1", person)
    await insert.commit()
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await deleter.execute("DELETE FROM persons WHERE id = $1", person)

    assert await count(deleter, "persons WHERE id = $1", person) == 1


async def test_a_delete_waits_for_an_insert_then_cascades(connect: Callable[[], Any]) -> None:
    """The group is locked by the insert; the delete, once it may run, also removes the
    prospect committed meanwhile."""
    inserter, deleter = await connect(), await connect()
    group = await add_group(inserter)
    person = await add_person(inserter)

    insert = inserter.transaction()
    await insert.start()
    await add_prospect(inserter, group, person)
    deleting = asyncio.create_task(
        deleter.execute("DELETE FROM account_groups WHERE id = $1", group)
    )
    await asyncio.sleep(0.2)
    assert not deleting.done()
    await insert.commit()
    await deleting

    assert await count(deleter, "prospects WHERE account_group_id = $1", group) == 0


async def test_deletes_outside_read_committed_are_refused(connect: Callable[[], Any]) -> None:
    """A trigger cannot see rows committed after a REPEATABLE READ snapshot (a foreign key
    can), so it refuses rather than risk an orphan."""
    conn = await connect()
    person = await add_person(conn)

    with pytest.raises(asyncpg.FeatureNotSupportedError, match="READ COMMITTED"):
        async with conn.transaction(isolation="repeatable_read"):
            await conn.execute("DELETE FROM persons WHERE id = $1", person)
    async with conn.transaction(isolation="repeatable_read"):
        await conn.execute("DELETE FROM persons WHERE id = $1", new_id())  # nothing: allowed

    assert await count(conn, "persons WHERE id = $1", person) == 1


async def test_truncate_keeps_references(create_database: Callable[[], str]) -> None:
    """On a database of its own: a failing check would empty the shared one."""
    url = await asyncio.to_thread(create_database)  # sync fixtures: they run their own loop
    await asyncio.to_thread(upgrade, url)
    conn = await asyncpg.connect(_dsn(url))
    try:
        group = await add_group(conn)
        await add_prospect(conn, group, await add_person(conn))

        for table in ("persons", "account_groups"):
            with pytest.raises(asyncpg.FeatureNotSupportedError, match="prospects refer to it"):
                await conn.execute(f"TRUNCATE {table} CASCADE")
        assert await count(conn, "persons") == 1
        await conn.execute("TRUNCATE prospects, persons, api_key_grants, account_groups CASCADE")

        assert await count(conn, "persons") == await count(conn, "prospects") == 0
    finally:
        await conn.close()
