"""`lastUsedAt` is the time of the key's last request, not of the once-a-minute write that
records it: never later than the key's revocation."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api.auth.models import ApiKey
from sonarly_api.auth.repository import touch_last_used
from sonarly_api.timestamps import utcnow
from tests.conftest import Factory, bearer

ACCOUNTS = "/v1/accounts"


async def stamps(engine: AsyncEngine, key_id: str) -> tuple[datetime | None, datetime | None]:
    async with engine.connect() as conn:
        query = select(ApiKey.last_used_at, ApiKey.revoked_at).where(ApiKey.id == key_id)
        row = (await conn.execute(query)).one()
    return row[0], row[1]


async def test_the_write_stamps_the_last_request_not_its_own_time(
    app: FastAPI, client: httpx.AsyncClient, factory: Factory, engine: AsyncEngine
) -> None:
    group = await factory.group()
    key_id, key = await factory.key([group])
    usage = app.state.sonarly.authenticator.usage

    before = utcnow()
    assert (await client.get(ACCOUNTS, headers=bearer(key))).status_code == 200
    after = utcnow()
    await asyncio.sleep(0.3)  # the write comes later (in production up to a minute later)
    await factory.revoke(key_id)
    await usage.drain()
    last_used, revoked = await stamps(engine, key_id)

    assert last_used is not None
    assert revoked is not None
    assert before <= last_used <= after  # the request's time
    assert last_used < revoked


async def test_a_cached_key_used_after_its_revocation_is_stamped_at_the_revocation(
    app: FastAPI, client: httpx.AsyncClient, factory: Factory, engine: AsyncEngine
) -> None:
    group = await factory.group()
    key_id, key = await factory.key([group])
    usage = app.state.sonarly.authenticator.usage
    assert (await client.get(ACCOUNTS, headers=bearer(key))).status_code == 200  # cached now
    await usage.drain()

    await factory.revoke(key_id)
    await asyncio.sleep(0.05)
    # Within KEY_CACHE_TTL_SECONDS a running server still accepts it (documented bound).
    assert (await client.get(ACCOUNTS, headers=bearer(key))).status_code == 200
    await usage.drain()
    last_used, revoked = await stamps(engine, key_id)

    assert last_used == revoked


async def test_a_later_write_never_moves_the_stamp_back(
    app: FastAPI, client: httpx.AsyncClient, factory: Factory, engine: AsyncEngine
) -> None:
    group = await factory.group()
    key_id, key = await factory.key([group])
    usage = app.state.sonarly.authenticator.usage
    assert (await client.get(ACCOUNTS, headers=bearer(key))).status_code == 200
    await usage.drain()
    first, _ = await stamps(engine, key_id)
    assert first is not None

    # Another worker's older note of the same key, written after this one's.
    await touch_last_used(app.state.sonarly.db, {key_id: first - timedelta(seconds=30)})
    again, _ = await stamps(engine, key_id)

    assert again == first
