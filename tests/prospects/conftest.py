"""Fixtures of the importer tests (tests/prospects/test_import_*.py)."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from sonarly_api.db import async_url
from sonarly_api.migrations import upgrade
from sonarly_api.prospects import import_staging
from tests.prospects.import_helpers import force_encoding


@pytest.fixture(scope="package")
async def import_engine() -> AsyncIterator[AsyncEngine]:
    """A fresh, migrated database for the importer tests on the server of TEST_DATABASE_URL; dropped
    at the end."""
    server = make_url(
        os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    ).set(drivername="postgresql")
    name = f"import_test_{os.getpid()}_{secrets.token_hex(3)}"
    admin_dsn = server.render_as_string(hide_password=False)
    url = server.set(database=name).render_as_string(hide_password=False)
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        await asyncio.to_thread(upgrade, url)
        engine = create_async_engine(async_url(url))
        yield engine
        await engine.dispose()
    finally:
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
def uid() -> str:
    """Persons are shared by all groups: identifiers unique to one test."""
    return secrets.token_hex(4)


@pytest.fixture(params=[None, 1, 2], ids=["one-chunk", "chunks-of-1-as-csv", "chunks-of-2"])
def chunk_rows(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Staged in several chunks, each creating its persons before the next is staged, a
    file must give the same persons as in one. Chunks of 1 also reach COPY as CSV encoded in
    advance, which the importer otherwise does only while it waits for the server."""
    if request.param is not None:
        monkeypatch.setattr(import_staging, "CHUNK_ROWS", request.param)
    if request.param == 1:
        force_encoding(monkeypatch, ahead=True)
