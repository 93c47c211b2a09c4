"""Fault tests own their PostgreSQL: an embedded server in a short directory of its own under
.data/ (never the shared test server, which other tests use while these stop theirs), with one
migrated database and a key for the data they make."""

from __future__ import annotations

import asyncio
import secrets
import shutil
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from sonarly_api.embedded_pg import EmbeddedPostgres
from sonarly_api.migrations import upgrade
from tests.conftest import Factory

DATA = Path(__file__).resolve().parents[2] / ".data"
DATABASE = "faults"


def plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@pytest.fixture(scope="module")
def own_pg() -> Iterator[EmbeddedPostgres]:
    # Short: the socket lives in the cluster directory only while its path fits sun_path.
    base = DATA / f"f{secrets.token_hex(3)}"
    server = EmbeddedPostgres(base)
    server.start()
    try:
        server.ensure_database(DATABASE)
        upgrade(server.url(DATABASE))
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@dataclass(frozen=True)
class Seeded:
    url: str  # the service's DATABASE_URL (asyncpg form, Unix socket)
    group: str
    key: str
    provider_id: str  # carried by one prospect of `group`

    @property
    def lookup(self) -> str:
        return f"/v1/accounts/{self.group}/prospects/by-provider-id/{self.provider_id}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture(scope="module")
async def seeded(own_pg: EmbeddedPostgres) -> Seeded:
    url = own_pg.url(DATABASE)
    engine = create_async_engine(url)
    try:
        factory = Factory(engine)
        group = await factory.group("faults")
        await factory.prospect(group, "crm-fault", name="Avery Stone")
        _, key = await factory.key([group])
    finally:
        await engine.dispose()
    return Seeded(url, group, key, "crm-fault")


async def service_backends(own_pg: EmbeddedPostgres) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(plain(own_pg.url(DATABASE)))
    try:
        rows: list[asyncpg.Record] = await conn.fetch(
            "SELECT pid, state, wait_event_type FROM pg_stat_activity"
            " WHERE application_name = 'sonarly-api'"
        )
        return rows
    finally:
        await conn.close()


async def wait_for(predicate: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    """Poll `predicate` until it is true; fail after `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            while not await predicate():  # noqa: ASYNC110 - polls state outside this process
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out after {seconds:g} s waiting for {what}") from None
