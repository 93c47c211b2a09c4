"""The PostgreSQL servers a bench runs on (the embedded one, and BENCH_DATABASE_URL's over TCP)
and the few statements the benches run on them directly."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from bench.cpu import postmaster_of
from sonarly_api.accounts import repository as account_groups
from sonarly_api.db import async_url
from sonarly_api.embedded_pg import EmbeddedPostgres

ROOT = Path(__file__).resolve().parents[1]


def plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@dataclass(frozen=True)
class DatabasePath:
    """Where a bench runs: the embedded server (Unix socket) or BENCH_DATABASE_URL's (TCP)."""

    name: str  # "embedded" | "tcp"
    url: str | None  # BENCH_DATABASE_URL for "tcp"
    embedded_database: str  # the bench's database on the embedded server

    @property
    def database(self) -> str:
        if self.url is None:
            return self.embedded_database
        # Named after the URL's database, so that a shared server's owner chooses the prefix.
        return f"{make_url(self.url).database or 'postgres'}_import"

    @property
    def round_database(self) -> str:
        return f"{self.database}_round"


def database_paths(embedded_database: str) -> list[DatabasePath]:
    """The embedded server always; BENCH_DATABASE_URL's too when it is set."""
    url = os.environ.get("BENCH_DATABASE_URL", "").strip()
    paths = [DatabasePath("embedded", None, embedded_database)]
    return paths + ([DatabasePath("tcp", url, embedded_database)] if url else [])


@contextlib.contextmanager
def database_server(path: DatabasePath, directory: Path) -> Iterator[tuple[str, str]]:
    """(URL of the maintenance database, a description): BENCH_DATABASE_URL's server for the
    TCP path, else the embedded PostgreSQL under `directory` (stopped at the end)."""
    if path.url is not None:
        url = path.url
        maintenance = make_url(url).set(database="postgres").render_as_string(False)
        where = "BENCH_DATABASE_URL over TCP " + make_url(url).render_as_string(True)
        yield async_url(maintenance), where
        return
    server = EmbeddedPostgres(directory)
    server.start()
    try:
        yield server.url("postgres"), f"embedded PostgreSQL ({directory.relative_to(ROOT)})"
    finally:
        server.stop()


def with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    return base.rsplit("/", 1)[0] + "/" + name + ("?" + query if query else "")


async def execute(url: str, *statements: str) -> None:
    """Run statements one by one (simple protocol: also those, like CREATE DATABASE, that
    cannot run in a transaction block)."""
    conn = await asyncpg.connect(plain(url))
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def drop(name: str) -> str:
    return f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"


async def fresh_database(maintenance_url: str, name: str, template: str = "") -> str:
    """An empty database `name`, or with `template` a fresh copy of that database (its files
    copied as they are, after a checkpoint, rather than block by block through the WAL)."""
    create = f"CREATE DATABASE {name}"
    if template:
        create += f" TEMPLATE {template} STRATEGY FILE_COPY"
    await execute(maintenance_url, drop(name), create)
    return with_database(maintenance_url, name)


async def new_group(url: str, name: str) -> str:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            return (await account_groups.create(conn, name)).id
    finally:
        await engine.dispose()


async def sql(url: str, *statements: str) -> list[Any]:
    conn = await asyncpg.connect(plain(url))
    try:
        return [await conn.fetchval(s) for s in statements]
    finally:
        await conn.close()


def postgres_pid(url: str) -> int | None:
    """The postmaster's pid, for CPU accounting (None when the server is not local)."""

    async def backend_pid() -> int | None:
        conn = await asyncpg.connect(plain(url))
        try:
            pid = int(await conn.fetchval("SELECT pg_backend_pid()"))
            # Asked while the backend is alive: its parent is the postmaster.
            return postmaster_of(pid)
        finally:
            await conn.close()

    return asyncio.run(backend_pid())


def client_backends(url: str) -> list[int]:
    """Pids of the client backends connected to the database of `url`, but ours."""

    async def read() -> list[int]:
        conn = await asyncpg.connect(plain(url))
        try:
            rows = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend'"
                " AND datname = current_database() AND pid <> pg_backend_pid()"
            )
            return [int(row[0]) for row in rows]
        finally:
            await conn.close()

    return asyncio.run(read())


def server_facts(url: str) -> dict[str, str]:
    """PostgreSQL's version and the settings that shape lookup cost, for the report."""

    async def read() -> dict[str, str]:
        conn = await asyncpg.connect(plain(url))
        try:
            facts = {}
            for name in ("server_version", "shared_buffers", "max_connections", "jit"):
                facts[name] = str(await conn.fetchval(f"SHOW {name}"))
            facts["connections_in_use"] = str(
                await conn.fetchval("SELECT count(*) FROM pg_stat_activity")
            )
            return facts
        finally:
            await conn.close()

    return asyncio.run(read())
