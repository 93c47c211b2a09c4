"""Alembic environment: async engine, URL from `sonarly_api` (never from alembic.ini)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from sonarly_api.db import async_url
from sonarly_api.models import Base

target_metadata = Base.metadata


def _url() -> str:
    # The caller (sonarly_api.migrations) always passes the resolved URL.
    url = context.config.attributes.get("database_url") or context.config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise RuntimeError("no database URL given to Alembic; use `sonarly-api db upgrade`")
    return async_url(str(url))


def _ours(name: str | None, type_: str, _parent: object) -> bool:
    """The job queue's tables (revision 0008) belong to procrastinate, not to our models:
    `alembic check` leaves them out."""
    return not (type_ == "table" and name is not None and name.startswith("procrastinate_"))


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        include_name=_ours,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(_url())
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
