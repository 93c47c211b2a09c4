"""Every connection the service opens runs with PostgreSQL's JIT off, whatever the server's
setting: the app's pool, the CLI's (and so the importer's) engine, and the import transaction
on any engine. The database here turns JIT on explicitly (`ALTER DATABASE … SET jit = on`), as
Debian's and the official image's servers do by default."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from sonarly_api.db import Database, create_admin_engine, create_engine
from sonarly_api.migrations import upgrade
from sonarly_api.prospects.importer import import_prospects
from tests.conftest import Factory, make_settings
from tests.outages import admin_sql


@pytest.fixture(scope="module")
async def jit_on_url(create_database: Callable[[str], str]) -> str:
    url = await asyncio.to_thread(create_database, "dbfaults_jit")
    await asyncio.to_thread(upgrade, url)
    name = make_url(url).database
    await admin_sql(url, f'ALTER DATABASE "{name}" SET jit = on')
    return url


async def show_jit(engine: AsyncEngine) -> str:
    async with engine.connect() as conn:
        return str((await conn.execute(text("SHOW jit"))).scalar_one())


async def test_the_setting_is_on_for_a_plain_connection(jit_on_url: str) -> None:
    """What the tests below overcome (else they would prove nothing)."""
    plain = create_async_engine(jit_on_url)
    try:
        assert await show_jit(plain) == "on"
    finally:
        await plain.dispose()


async def test_the_apps_pool_runs_without_jit(jit_on_url: str) -> None:
    db = Database(create_engine(make_settings(jit_on_url), jit_on_url))
    try:
        assert await show_jit(db.engine) == "off"
        # The hot path's driver-level statements run on the same connections.
        pooled = await db.engine.raw_connection()
        try:
            driver: Any = pooled.driver_connection
            assert await driver.fetchval("SHOW jit") == "off"
        finally:
            pooled.close()
    finally:
        await db.dispose()


async def test_the_clis_engine_runs_without_jit(jit_on_url: str) -> None:
    engine = create_admin_engine(jit_on_url)
    try:
        assert await show_jit(engine) == "off"
    finally:
        await engine.dispose()


async def test_the_import_transaction_turns_jit_off_on_any_engine(
    jit_on_url: str, tmp_path: Path
) -> None:
    engine = create_async_engine(jit_on_url)  # not one of the service's engines
    seen: list[str] = []

    @event.listens_for(engine.sync_engine, "after_cursor_execute")
    def probe(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        # Inside the import's transaction, once its set-up has run: what its statements see.
        if "FOR KEY SHARE" in statement and not seen:
            seen.append("")
            seen[0] = str(conn.exec_driver_sql("SHOW jit").scalar())

    try:
        group = await Factory(engine).group("jit")
        rows = tmp_path / "rows.csv"
        rows.write_text("providerId,name\ncrm-jit-1,Avery Stone\n", encoding="utf-8")
        summary = await import_prospects(engine, group, rows)
    finally:
        await engine.dispose()

    assert summary.created == 1
    assert seen == ["off"]
