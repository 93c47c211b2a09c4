"""Bearer API keys: every way a key can be refused, hashing at rest, and the key cache."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api.app import create_app
from sonarly_api.auth import authenticator, keys, repository
from sonarly_api.auth.models import ApiKey
from tests.conftest import PEPPER, Factory, QueryCounter, bearer, client_for, make_settings, started

ACCOUNTS = "/v1/accounts"


def assert_unauthorized(response: httpx.Response, details: str) -> None:
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["x-trace-id"]
    assert response.json() == {
        "success": False,
        "data": None,
        "error": {
            "code": "UNAUTHORIZED",
            "message": "Invalid or missing API key.",
            "details": details,
        },
        "traceId": response.headers["x-trace-id"],
    }


def forge_with_bad_checksum(key: str) -> str:
    last = key[-1]
    return key[:-1] + ("A" if last != "A" else "B")


class TestRefusedKeys:
    async def test_missing_header(self, client: httpx.AsyncClient) -> None:
        assert_unauthorized(await client.get(ACCOUNTS), "The Authorization header is missing.")

    @pytest.mark.parametrize("scheme", ["Basic", "Token", "sk_live_x", "Bearer"])
    async def test_wrong_scheme(self, client: httpx.AsyncClient, scheme: str) -> None:
        key = keys.generate_key()
        header = f"{scheme}:{key}" if scheme == "Bearer" else f"{scheme} {key}"
        response = await client.get(ACCOUNTS, headers={"Authorization": header})
        assert_unauthorized(response, "The Authorization scheme must be Bearer.")

    @pytest.mark.parametrize(
        "garbage",
        [
            "",
            "sk_live_",
            "sk_test_" + "a" * 28,
            "sk_live_" + "a" * 27,
            "sk_live_" + "a" * 29,
            "sk_live_" + "!" * 28,
            "é",
            "sk_live_" + "a" * 27 + "é",
        ],
    )
    async def test_malformed_key(
        self, client: httpx.AsyncClient, count_queries: QueryCounter, garbage: str
    ) -> None:
        header = b"Bearer " + garbage.encode()
        response = await client.get(ACCOUNTS, headers={b"Authorization": header})
        assert_unauthorized(response, "API key is malformed.")
        assert await count_queries.settled() == 0

    async def test_bad_checksum_is_refused_without_a_query(
        self, client: httpx.AsyncClient, count_queries: QueryCounter
    ) -> None:
        forged = forge_with_bad_checksum(keys.generate_key())
        response = await client.get(ACCOUNTS, headers=bearer(forged))
        assert_unauthorized(response, "API key checksum is invalid.")
        assert await count_queries.settled() == 0

    async def test_unknown_key(self, client: httpx.AsyncClient) -> None:
        response = await client.get(ACCOUNTS, headers=bearer(keys.generate_key()))
        assert_unauthorized(response, "The API key is not recognised.")

    async def test_key_hashed_with_another_pepper_is_unknown(
        self, client: httpx.AsyncClient, factory: Factory, engine: AsyncEngine
    ) -> None:
        group = await factory.group()
        key_id, key = await factory.key([group])
        async with engine.begin() as conn:
            await conn.execute(
                update(ApiKey)
                .where(ApiKey.id == key_id)
                .values(key_hash=keys.hash_key(key, b"another pepper, another service"))
            )
        assert_unauthorized(
            await client.get(ACCOUNTS, headers=bearer(key)), "The API key is not recognised."
        )

    async def test_revoked_key(self, database_url: str, factory: Factory) -> None:
        group = await factory.group()
        key_id, key = await factory.key([group])
        await factory.revoke(key_id)
        app = create_app(make_settings(database_url))
        async for running in started(app):
            async with client_for(running) as client:
                response = await client.get(ACCOUNTS, headers=bearer(key))
        assert_unauthorized(response, "The API key has been revoked.")

    async def test_expired_key(self, client: httpx.AsyncClient, factory: Factory) -> None:
        group = await factory.group()
        _, key = await factory.key([group], expires_in_seconds=-1)
        assert_unauthorized(
            await client.get(ACCOUNTS, headers=bearer(key)), "The API key has expired."
        )

    async def test_scheme_is_case_insensitive(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        response = await client.get(ACCOUNTS, headers={"Authorization": f"bearer {key}"})
        assert response.status_code == 200


class TestKeyStorage:
    async def test_keys_are_stored_only_as_hmac(
        self, factory: Factory, engine: AsyncEngine
    ) -> None:
        group = await factory.group()
        key_id, key = await factory.key([group])
        async with engine.connect() as conn:
            row = (await conn.execute(select(ApiKey).where(ApiKey.id == key_id))).one()
            dump = (await conn.execute(text("SELECT row_to_json(k)::text FROM api_keys k"))).all()
        assert row.key_hash == keys.hash_key(key, PEPPER.encode())
        body = key.removeprefix("sk_live_")
        for (json_row,) in dump:
            assert body not in json_row
            assert body.encode().hex() not in json_row


class TestKeyCache:
    async def test_a_cached_key_costs_no_query_one_lookup_costs_one(
        self, app: FastAPI, client: httpx.AsyncClient, factory: Factory, engine: AsyncEngine
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        path = f"/v1/accounts/{group}/prospects/by-provider-id/p"
        # First use: the key is read from the database (and its use recorded).
        assert (await client.get(path, headers=bearer(key))).status_code == 200
        await app.state.sonarly.authenticator.usage.drain()

        counter = QueryCounter(app.state.sonarly.db)
        try:
            for _ in range(5):
                assert (await client.get(path, headers=bearer(key))).status_code == 200
            assert await counter.settled() == 5
        finally:
            counter.close()

    async def test_revocation_takes_effect_within_the_cache_ttl(
        self, database_url: str, factory: Factory
    ) -> None:
        group = await factory.group()
        key_id, key = await factory.key([group])
        app = create_app(make_settings(database_url, key_cache_ttl_seconds=0.5))
        async for running in started(app):
            async with client_for(running) as client:
                assert (await client.get(ACCOUNTS, headers=bearer(key))).status_code == 200
                await factory.revoke(key_id)
                # Cached: still accepted right after revocation (the documented delay) ...
                assert (await client.get(ACCOUNTS, headers=bearer(key))).status_code == 200
                await asyncio.sleep(0.6)
                # ... and refused once the TTL has passed.
                response = await client.get(ACCOUNTS, headers=bearer(key))
        assert_unauthorized(response, "The API key has been revoked.")

    async def test_busy_keys_are_reverified_together_not_one_by_one(
        self, database_url: str, factory: Factory, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        group = await factory.group()
        issued = [await factory.key([group]) for _ in range(3)]
        single_reads = 0
        original = repository.principal_by_hash

        async def counting(*args: Any) -> Any:
            nonlocal single_reads
            single_reads += 1
            return await original(*args)

        monkeypatch.setattr(authenticator, "principal_by_hash", counting)
        # Three keys in chunks of two: the last chunk, shorter, is re-read too.
        monkeypatch.setattr(authenticator, "_REVERIFY_CHUNK", 2)
        app = create_app(make_settings(database_url, key_cache_ttl_seconds=0.4))
        async for running in started(app):
            async with client_for(running) as client:
                for _, key in issued:
                    assert (await client.get(ACCOUNTS, headers=bearer(key))).status_code == 200
                assert single_reads == 3
                # Well past the TTL: the entries were re-read in batches meanwhile ...
                await asyncio.sleep(1.0)
                for _, key in issued:
                    assert (await client.get(ACCOUNTS, headers=bearer(key))).status_code == 200
                # ... so no key had to be read on its own again.
                assert single_reads == 3
                await factory.revoke(issued[0][0])
                await asyncio.sleep(0.5)
                response = await client.get(ACCOUNTS, headers=bearer(issued[0][1]))
        assert_unauthorized(response, "The API key has been revoked.")
        assert single_reads == 3


class TestLastUsed:
    async def test_last_used_is_written_in_batches_off_the_request_path(
        self, app: FastAPI, client: httpx.AsyncClient, factory: Factory, engine: AsyncEngine
    ) -> None:
        group = await factory.group()
        key_id, key = await factory.key([group])

        async def last_used() -> object:
            await app.state.sonarly.authenticator.usage.drain()
            async with engine.connect() as conn:
                query = select(ApiKey.last_used_at).where(ApiKey.id == key_id)
                return (await conn.execute(query)).scalar_one()

        assert await last_used() is None
        counter = QueryCounter(app.state.sonarly.db)
        try:
            for _ in range(3):
                assert (await client.get(ACCOUNTS, headers=bearer(key))).status_code == 200
            # The key's read, then one read per request: the use is noted, not written yet.
            assert await counter.settled() == 1 + 3
        finally:
            counter.close()
        first = await last_used()
        assert first is not None
        await app.state.sonarly.authenticator.usage.drain()
        # Nothing used since: the next write has nothing to do and the value stands.
        assert await last_used() == first
