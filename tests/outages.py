"""Helpers for tests of faults outside the service: database roles and refusals, a Redis that
never answers (fixtures stay in conftest.py)."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import pytest
from sqlalchemy.engine import make_url


def redis_url() -> str:
    """TEST_REDIS_URL; the test is skipped without it (failed with REQUIRE_REDIS=1)."""
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail("REQUIRE_REDIS=1 but TEST_REDIS_URL is not set")
        pytest.skip("TEST_REDIS_URL is not set: the Redis rate-limit storage is not exercised")
    return url


def plain_dsn(url: str) -> str:
    """asyncpg's form of a SQLAlchemy URL."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def as_user(url: str, user: str) -> str:
    """`url` (either form) with another user name."""
    return make_url(url).set(username=user).render_as_string(hide_password=False)


@dataclass(frozen=True)
class Role:
    """A non-superuser login role made for one test (superusers ignore CONNECTION LIMIT)."""

    name: str
    url: str  # the database's URL as this role

    async def alter(self, admin_url: str, options: str) -> None:
        await admin_sql(admin_url, f"ALTER ROLE {self.name} {options}")


async def admin_sql(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@asynccontextmanager
async def service_role(database_url: str, options: str = "") -> AsyncIterator[Role]:
    """A role with the grants the service needs on `database_url`'s tables (read keys and
    prospects, write last use), dropped afterwards. Its name starts with `dbfaults_`."""
    name = f"dbfaults_{secrets.token_hex(4)}"
    await admin_sql(
        database_url,
        f"CREATE ROLE {name} LOGIN {options}",
        f"GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO {name}",
    )
    try:
        yield Role(name, as_user(database_url, name))
    finally:
        await admin_sql(
            database_url,
            # Its sessions first (a test may fail while one is open), then what it was granted.
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{name}'",
            f"DROP OWNED BY {name}",
            f"DROP ROLE {name}",
        )


class SilentServer:
    """A real TCP listener that accepts connections, reads what is sent and never answers:
    a hung Redis (or anything else) as a client sees it."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.connections = 0

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _swallow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        try:
            while await reader.read(65536):
                pass
        finally:
            writer.close()

    async def __aenter__(self) -> SilentServer:
        self._server = await asyncio.start_server(self._swallow, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:  # wait_closed waits for them too (Python 3.12+)
            writer.close()
        await self._server.wait_closed()
