"""Well-formed keys can be made at will (the checksum is a typo check): an unknown one costs
one query however many requests present it at once, is remembered apart from real keys, and
never pushes a real key out of the cache."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from sonarly_api.app import create_app
from sonarly_api.auth import keys
from sonarly_api.auth.authenticator import Authenticator
from sonarly_api.config import Settings
from sonarly_api.db import Database, create_engine
from sonarly_api.errors import Unauthorized
from tests.conftest import PEPPER, Factory, QueryCounter, bearer, client_for, started


async def test_a_thousand_concurrent_requests_with_one_unknown_key_make_one_query(
    settings: Settings,
) -> None:
    # An app of its own: no other test's keys for it to re-verify or usage to write meanwhile.
    async for app in started(create_app(settings)):
        counter = QueryCounter(app.state.sonarly.db)
        try:
            headers = bearer(keys.generate_key())
            async with client_for(app) as client:
                responses = await asyncio.gather(
                    *(client.get("/v1/accounts", headers=headers) for _ in range(1000))
                )
            assert {r.status_code for r in responses} == {401}
            details = {r.json()["error"]["details"] for r in responses}
            assert details == {"The API key is not recognised."}
            assert await counter.settled() == 1
        finally:
            counter.close()


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    """A pool of its own: the statements counted are this test's only."""
    assert settings.database_url is not None
    database = Database(create_engine(settings, settings.database_url))
    yield database
    await database.dispose()


async def test_a_thousand_concurrent_authentications_with_one_uncached_key_make_one_query(
    db: Database, factory: Factory
) -> None:
    group = await factory.group()
    key_id, key = await factory.key([group])
    authenticator = Authenticator(db, PEPPER.encode(), cache_ttl_seconds=60, cache_size=100)
    counter = QueryCounter(db)
    try:
        principals = await asyncio.gather(
            *(authenticator.authenticate(f"Bearer {key}") for _ in range(1000))
        )
        assert {p.key_id for p in principals} == {key_id}
        assert await counter.settled() == 1
    finally:
        counter.close()
        await authenticator.close()


async def test_unknown_keys_do_not_evict_known_ones(db: Database, factory: Factory) -> None:
    group = await factory.group()
    key_id, key = await factory.key([group])
    authenticator = Authenticator(db, PEPPER.encode(), cache_ttl_seconds=60, cache_size=2)
    try:
        assert (await authenticator.authenticate(f"Bearer {key}")).key_id == key_id
        made_up = [keys.generate_key() for _ in range(20)]  # ten times the cache of known keys
        for unknown in made_up:
            with pytest.raises(Unauthorized, match="not recognised"):
                await authenticator.authenticate(f"Bearer {unknown}")
        counter = QueryCounter(db)
        try:
            assert (await authenticator.authenticate(f"Bearer {key}")).key_id == key_id
            # Remembered as unknown: presented again, no query either.
            with pytest.raises(Unauthorized, match="not recognised"):
                await authenticator.authenticate(f"Bearer {made_up[-1]}")
            assert await counter.settled() == 0
        finally:
            counter.close()
    finally:
        await authenticator.close()
