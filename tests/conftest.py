"""Shared fixtures: one real PostgreSQL database per run, migrated with Alembic.

The database is the embedded PostgreSQL (under .data/test-pg) unless TEST_DATABASE_URL
names a server; either way the run gets a database of its own, dropped at the end.
Tests do not share rows: each creates its own account groups and keys (random ids), and
every query the service runs is scoped by them, so no test sees another's data.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, insert, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from sonarly_api.accounts import repository as account_groups
from sonarly_api.app import create_app
from sonarly_api.auth import keys as key_format
from sonarly_api.auth import repository as api_keys
from sonarly_api.auth.models import ApiKey
from sonarly_api.config import Settings
from sonarly_api.db import Database, async_url
from sonarly_api.embedded_pg import EmbeddedPostgres
from sonarly_api.ids import new_id
from sonarly_api.migrations import upgrade
from sonarly_api.prospects.models import Person, Prospect
from sonarly_api.timestamps import utcnow

PEPPER = "test-pepper-0123456789abcdef"
TEST_PG_DIR = Path(__file__).resolve().parents[1] / ".data" / "test-pg"


def _plain_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _with_database(server_url: str, name: str) -> str:
    base, _, query = server_url.partition("?")
    base = base.rsplit("/", 1)[0] + "/" + name
    return base + ("?" + query if query else "")


async def _admin(server_url: str, sql: str) -> None:
    conn = await asyncpg.connect(_plain_dsn(server_url))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[tuple[str, EmbeddedPostgres | None]]:
    """(URL of a maintenance database, the embedded server if we started one)."""
    server_url = os.environ.get("TEST_DATABASE_URL")
    if server_url:
        yield server_url, None
        return
    server = EmbeddedPostgres(TEST_PG_DIR)
    server.start()
    try:
        yield server.url("postgres"), server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def create_database(pg_server: tuple[str, EmbeddedPostgres | None]) -> Iterator[Any]:
    """Factory: a fresh, empty database (dropped at the end of the run); returns its URL."""
    server_url, _ = pg_server
    created: list[str] = []

    def make(prefix: str = "sonarly_test") -> str:
        name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
        asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}"'))
        created.append(name)
        return async_url(_with_database(server_url, name))

    yield make
    for name in created:
        asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def database_url(create_database: Any) -> str:
    url: str = create_database()
    upgrade(url)
    return url


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "api_key_pepper": PEPPER,
        "rate_limit": "100000/minute",
        "auth_failure_rate_limit": "100000/minute",
        **overrides,
    }
    return Settings(_env_file=None, **values)


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


async def started(app: FastAPI) -> AsyncIterator[FastAPI]:
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    async for running in started(create_app(settings)):
        yield running


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as http:
        yield http


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url)
    yield engine
    await engine.dispose()


class QueryCounter:
    """Counts the SQL statements an engine's connections run: those SQLAlchemy executes
    (its cursor events) and those sent straight to the driver on the hot path (asyncpg's query
    logger, which sees `Connection.fetch` but not the prepared statements SQLAlchemy runs, so
    nothing is counted twice)."""

    def __init__(self, db: Database) -> None:
        engine = db.engine
        self._count = 0
        self._pool = engine.sync_engine.pool
        self._hooked: list[Any] = []
        self._sync_engine = engine.sync_engine
        event.listen(self._pool, "checkout", self._on_checkout)
        event.listen(self._sync_engine, "before_cursor_execute", self._on_query)
        # Connections `Database.fetch` holds between statements were checked out before the
        # listener existed: back to the pool, so the next statements' are seen.
        db.release_held()

    def _on_query(self, *_: object) -> None:
        self._count += 1

    async def settled(self) -> int:
        """The count once asyncpg has delivered its log records (it schedules them with
        call_soon, after the statement returns)."""
        for _ in range(3):
            await asyncio.sleep(0)
        return self._count

    def _on_checkout(self, dbapi_connection: Any, *_: object) -> None:
        driver = dbapi_connection.driver_connection
        if driver not in self._hooked:
            driver.add_query_logger(self._on_query)
            self._hooked.append(driver)

    def close(self) -> None:
        event.remove(self._pool, "checkout", self._on_checkout)
        event.remove(self._sync_engine, "before_cursor_execute", self._on_query)
        for driver in self._hooked:
            driver.remove_query_logger(self._on_query)


@pytest.fixture
def count_queries(app: FastAPI) -> Iterator[QueryCounter]:
    counter = QueryCounter(app.state.sonarly.db)
    yield counter
    counter.close()


class Factory:
    """Creates rows the way the service would (ids, hashed keys), for one test."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def group(self, name: str = "Test group") -> str:
        async with self.engine.begin() as conn:
            return (await account_groups.create(conn, name)).id

    async def key(
        self,
        groups: list[str],
        permissions: tuple[str, ...] = ("prospects:read",),
        *,
        expires_in_seconds: float | None = None,
    ) -> tuple[str, str]:
        """(key id, the key itself)."""
        secret = key_format.generate_key()
        async with self.engine.begin() as conn:
            key_id = await api_keys.create_key(
                conn,
                name="test key",
                key_hash=key_format.hash_key(secret, PEPPER.encode()),
                permissions=permissions,
                account_group_ids=groups,
            )
            if expires_in_seconds is not None:
                await conn.execute(
                    update(ApiKey)
                    .where(ApiKey.id == key_id)
                    .values(expires_at=utcnow() + timedelta(seconds=expires_in_seconds))
                )
        return key_id, secret

    async def revoke(self, key_id: str) -> None:
        async with self.engine.begin() as conn:
            assert await api_keys.revoke_key(conn, key_id)

    async def prospect(
        self, group: str, provider_id: str, *, person_id: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Insert a prospect (and a new person unless `person_id` is given); returns the
        match as the API should render it."""
        person_id = person_id or new_id()
        prospect_id = new_id()
        row = {
            "public_identifier": None,
            "linkedin_url": None,
            "name": None,
            "company_name": None,
            "title": None,
            **fields,
        }
        async with self.engine.begin() as conn:
            await conn.execute(pg_insert(Person).values(id=person_id).on_conflict_do_nothing())
            await conn.execute(
                insert(Prospect).values(
                    account_group_id=group,
                    id=prospect_id,
                    person_id=person_id,
                    provider_id=provider_id,
                    **row,
                )
            )
        return {
            "prospectId": prospect_id,
            "personId": person_id,
            "publicIdentifier": row["public_identifier"],
            "linkedinUrl": row["linkedin_url"],
            "name": row["name"],
            "companyName": row["company_name"],
            "title": row["title"],
        }


@pytest.fixture
def factory(engine: AsyncEngine) -> Factory:
    return Factory(engine)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
