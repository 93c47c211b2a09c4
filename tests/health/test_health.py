"""GET /healthz and GET /readyz: envelope bodies, X-Trace-Id, no key, no rate limit, and
readiness that tells a migrated database from an unmigrated, a stale or an unreachable one."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from sonarly_api.app import create_app
from sonarly_api.health import readiness
from tests.conftest import client_for, make_settings, started

# The newest migration script, read with Alembic's own API (readiness.py is under test).
ROOT = Path(__file__).resolve().parents[2]
HEAD = ScriptDirectory.from_config(Config(str(ROOT / "alembic.ini"))).get_current_head()

TRACE_ID = re.compile(r"[0-9a-f]{32}")
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/nowhere"


def assert_ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    trace_id = response.headers["x-trace-id"]
    assert TRACE_ID.fullmatch(trace_id)
    body = response.json()
    assert set(body) == {"success", "data", "error", "traceId"}
    assert (body["success"], body["error"], body["traceId"]) == (True, None, trace_id)
    assert body["data"]["status"] == "ok"
    data: dict[str, Any] = body["data"]
    return data


def assert_unavailable(response: httpx.Response) -> str:
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    body = response.json()
    assert (body["success"], body["data"]) == (False, None)
    assert body["traceId"] == response.headers["x-trace-id"]
    assert body["error"]["code"] == "SERVICE_UNAVAILABLE"
    details: str = body["error"]["details"]
    return details


async def get_from(database_url: str, path: str, **settings: Any) -> httpx.Response:
    async for app in started(create_app(make_settings(database_url, **settings))):
        async with client_for(app) as client:
            return await client.get(path)
    raise AssertionError("unreachable")


@pytest.fixture
def fresh_database(create_database: Any) -> str:
    """A new, empty database (sync: the factory runs its own event loop)."""
    url: str = create_database()
    return url


async def execute(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


class TestHealthz:
    async def test_alive_is_an_ok_envelope(self, client: httpx.AsyncClient) -> None:
        assert assert_ok(await client.get("/healthz")) == {"status": "ok"}

    async def test_does_not_need_the_database(self) -> None:
        assert assert_ok(await get_from(UNREACHABLE, "/healthz")) == {"status": "ok"}

    async def test_no_key_and_no_rate_limit(self, database_url: str) -> None:
        settings = make_settings(
            database_url, rate_limit="1/minute", auth_failure_rate_limit="1/minute"
        )
        async for app in started(create_app(settings)):
            async with client_for(app) as client:
                for path in ["/healthz", "/readyz"] * 3:
                    response = await client.get(path)
                    assert_ok(response)
                    assert "x-ratelimit-limit" not in response.headers


class TestReadyz:
    async def test_migrated_database_is_ready(self, client: httpx.AsyncClient) -> None:
        data = assert_ok(await client.get("/readyz"))

        assert data == {"status": "ok", "schemaRevision": HEAD}
        assert readiness.expected_revisions() == {HEAD}

    async def test_unmigrated_database_is_not_ready(self, fresh_database: str) -> None:
        response = await get_from(fresh_database, "/readyz")

        details = assert_unavailable(response)
        assert details.startswith("Database not migrated")
        assert f"expected {HEAD}" in details
        assert "sonarly-api db upgrade" in details

    async def test_database_at_another_revision_is_not_ready(self, fresh_database: str) -> None:
        await execute(
            fresh_database,
            "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)",
            "INSERT INTO alembic_version VALUES ('0000_older')",
        )

        details = assert_unavailable(await get_from(fresh_database, "/readyz"))

        assert "at revision 0000_older" in details
        assert f"expects {HEAD}" in details

    async def test_unreachable_database_answers_503_quickly(self) -> None:
        started_at = time.monotonic()
        response = await get_from(UNREACHABLE, "/readyz", db_connect_timeout_seconds=10)
        elapsed = time.monotonic() - started_at

        assert assert_unavailable(response) == "Database unreachable."
        assert elapsed < 2

    async def test_slow_database_is_cut_short_and_the_pool_survives(
        self, database_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        real = readiness._database_revisions
        sleeping = True

        async def hangs(conn: AsyncConnection) -> frozenset[str] | None:
            if sleeping:
                await conn.execute(text("SELECT pg_sleep(5)"))
            return await real(conn)

        monkeypatch.setattr(readiness, "_database_revisions", hangs)
        monkeypatch.setattr(readiness, "READY_TIMEOUT_SECONDS", 0.3)
        async for app in started(create_app(make_settings(database_url))):
            async with client_for(app) as client:
                started_at = time.monotonic()
                response = await client.get("/readyz")
                elapsed = time.monotonic() - started_at
                details = assert_unavailable(response)

                sleeping = False
                await asyncio.sleep(0)
                assert_ok(await client.get("/readyz"))  # the cancelled query left no harm

        assert details == "Database unreachable: no answer within 0.3 s."
        assert elapsed < 2


class TestHiddenFromTheDocs:
    async def test_not_in_openapi(self, client: httpx.AsyncClient) -> None:
        paths = (await client.get("/openapi.json")).json()["paths"]

        assert not {"/healthz", "/readyz", "/metrics"} & set(paths)
