"""Database errors classified by cause, against a real PostgreSQL (the embedded one, or the
server of TEST_DATABASE_URL over TCP): a refused connection is a 503 with Retry-After and the
pool recovers by itself; a statement timeout is a 503 once, its connection kept; misuse of a
live connection is a programming error (500), neither retried nor an outage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import literal, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from sonarly_api.app import create_app
from sonarly_api.db import (
    Database,
    DriverStatement,
    create_engine,
    is_disconnect,
    is_unavailable,
)
from sonarly_api.handlers import render_unhandled
from sonarly_api.migrations import upgrade
from tests.conftest import Factory, bearer, client_for, make_settings
from tests.outages import Role, admin_sql, plain_dsn, service_role


class Seed:
    def __init__(self, url: str, group: str, key: str) -> None:
        self.url = url
        self.group = group
        self.key = key

    @property
    def lookup(self) -> str:
        return f"/v1/accounts/{self.group}/prospects/by-provider-id/crm-1"


@pytest.fixture(scope="module")
async def seed(create_database: Callable[[str], str]) -> Seed:
    """A database of its own: tests here lock its tables and refuse its connections."""
    url = await asyncio.to_thread(create_database, "dbfaults_errors")
    await asyncio.to_thread(upgrade, url)
    engine = create_async_engine(url)
    try:
        factory = Factory(engine)
        group = await factory.group("db errors")
        await factory.prospect(group, "crm-1", name="Avery Stone")
        _, key = await factory.key([group])
    finally:
        await engine.dispose()
    return Seed(url, group, key)


async def lookup(http: httpx.AsyncClient, seed: Seed) -> httpx.Response:
    return await http.get(seed.lookup, headers=bearer(seed.key))


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    body = response.json()
    assert body == {
        "success": False,
        "data": None,
        "error": {
            "code": "SERVICE_UNAVAILABLE",
            "message": "The service is temporarily unavailable.",
            "details": "The database cannot be reached. Retry shortly.",
        },
        "traceId": response.headers["x-trace-id"],
    }
    assert int(response.headers["retry-after"]) >= 1


def assert_found(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.json()["data"]["resolution"] == "unique"


@pytest.fixture
async def role(seed: Seed) -> AsyncIterator[Role]:
    async with service_role(seed.url, "CONNECTION LIMIT 1") as made:
        yield made


def app_as(role: Role, **settings: Any) -> Any:
    return create_app(make_settings(role.url, db_connect_timeout_seconds=2, **settings))


class TestConnectRefusals:
    async def test_too_many_clients_is_503_then_the_pool_recovers(
        self, seed: Seed, role: Role
    ) -> None:
        # The role's only connection slot is taken: PostgreSQL answers "too many connections
        # for role" (53300, asyncpg's TooManyConnectionsError) to the service's connect.
        blocker = await asyncpg.connect(plain_dsn(role.url))
        app = app_as(role)
        async with app.router.lifespan_context(app), client_for(app) as http:
            try:
                refused = [await lookup(http, seed) for _ in range(3)]
            finally:
                await blocker.close()
            after = await lookup(http, seed)

        for response in refused:
            assert_unavailable(response)
        assert_found(after)  # the same app, no restart: the pool made its connection

    @pytest.mark.parametrize(
        ("refuse", "allow"),
        [
            # 28000 "role is not permitted to log in" (an authentication failure).
            ("ALTER ROLE {role} NOLOGIN", "ALTER ROLE {role} LOGIN"),
            # 55000 "database is not currently accepting connections".
            (
                "ALTER DATABASE {database} ALLOW_CONNECTIONS false",
                "ALTER DATABASE {database} ALLOW_CONNECTIONS true",
            ),
            # 42501 "permission denied for database": a SQLSTATE that is a programming error
            # after connecting, a refusal when connecting.
            (
                "REVOKE CONNECT ON DATABASE {database} FROM PUBLIC",
                "GRANT CONNECT ON DATABASE {database} TO PUBLIC",
            ),
        ],
        ids=["login-refused", "not-accepting-connections", "connect-privilege-revoked"],
    )
    async def test_every_refusal_is_503_then_the_pool_recovers(
        self, seed: Seed, role: Role, refuse: str, allow: str
    ) -> None:
        parsed = make_url(seed.url)
        names = {"role": role.name, "database": f'"{parsed.database}"'}
        maintenance = parsed.set(database="postgres").render_as_string(hide_password=False)
        await admin_sql(maintenance, refuse.format(**names))
        app = app_as(role)
        try:
            async with app.router.lifespan_context(app), client_for(app) as http:
                refused = await lookup(http, seed)
                await admin_sql(maintenance, allow.format(**names))
                after = await lookup(http, seed)
        finally:
            await admin_sql(maintenance, allow.format(**names))

        assert_unavailable(refused)
        assert_found(after)

    async def test_the_cli_names_the_refusal(
        self, seed: Seed, role: Role, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from tests.cli.helpers import CLI_PEPPER, failure_line, invoke

        monkeypatch.setenv("DATABASE_URL", role.url)
        monkeypatch.setenv("API_KEY_PEPPER", CLI_PEPPER)
        blocker = await asyncpg.connect(plain_dsn(role.url))
        try:
            result = await asyncio.to_thread(invoke, "account-groups", "list")
        finally:
            await blocker.close()

        line = failure_line(result, 1)
        assert line == (
            "error: database: too many connections "
            "(the server's max_connections or the role's CONNECTION LIMIT)"
        )


async def backends(url: str) -> set[int]:
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity"
            " WHERE application_name = 'sonarly-api' AND datname = current_database()"
        )
        return {row["pid"] for row in rows}
    finally:
        await conn.close()


class TestStatementTimeout:
    async def test_answered_503_once_and_the_connection_is_kept(self, seed: Seed) -> None:
        app = create_app(make_settings(seed.url, db_statement_timeout_ms=300))
        async with app.router.lifespan_context(app), client_for(app) as http:
            assert_found(await lookup(http, seed))  # key cached, a connection pooled
            before = await backends(seed.url)
            locker = await asyncpg.connect(plain_dsn(seed.url))
            try:
                await locker.execute("BEGIN; LOCK TABLE prospects IN ACCESS EXCLUSIVE MODE")
                timed_out = await lookup(http, seed)
                during = await backends(seed.url)
            finally:
                await locker.close()
            after = await lookup(http, seed)

        assert_unavailable(timed_out)
        assert before, "the warm-up left no pooled connection"
        # Not taken for a dead connection: neither dropped nor replaced by a retry's new one.
        assert during == before
        assert_found(after)


class TestInterfaceMisuse:
    """asyncpg's InterfaceError also says "you used this connection wrongly"."""

    async def test_another_operation_in_progress_is_a_500_not_an_outage(self, seed: Seed) -> None:
        conn = await asyncpg.connect(plain_dsn(seed.url))
        try:
            busy = asyncio.ensure_future(conn.fetchval("SELECT 1 FROM pg_sleep(0.2)"))
            await asyncio.sleep(0.05)
            with pytest.raises(asyncpg.InterfaceError) as raised:
                await conn.fetchval("SELECT 2")
            assert await busy == 1  # the connection itself was fine
        finally:
            await conn.close()
        misuse = raised.value
        assert "another operation is in progress" in str(misuse)

        assert not is_disconnect(misuse)
        assert not is_unavailable(misuse)
        response = render_unhandled(misuse)
        assert response.status_code == 500

    async def test_fetch_neither_retries_nor_drops_the_connection(self, seed: Seed) -> None:
        settings = make_settings(seed.url)
        db = Database(create_engine(settings, seed.url))
        statement = DriverStatement.compile(select(literal(7)))
        try:
            pooled = await db.engine.raw_connection()
            driver = pooled.driver_connection
            assert driver is not None
            busy = asyncio.ensure_future(driver.fetchval("SELECT 1 FROM pg_sleep(0.2)"))
            await asyncio.sleep(0.05)
            # The connection `fetch` takes next is the busy one (a bug in the caller's code
            # would hand it over the same way).
            db._held.append(pooled)
            with pytest.raises(asyncpg.InterfaceError):
                await db.fetch(statement)
            assert await busy == 1
            assert not driver.is_closed()  # not invalidated as if it were dead
        finally:
            await db.dispose()
