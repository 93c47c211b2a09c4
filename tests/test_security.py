"""Security properties of API keys and of what the service tells the world.

- Keys exist in the database only as HMAC-SHA256(pepper, key): the whole database is read.
- A presented key — valid, revoked or forged, in any header shape — never appears in a log
  line, an error body or a metric: everything the process writes is captured (capfd, and
  caplog with every logger at DEBUG, SQLAlchemy's statement log included), in-process and
  from a real server at LOG_LEVEL=debug.
- A malformed key or a bad checksum is refused without a database query.
- Guessing is slowed: failed authentications from one address get 429 once over the budget.
- A real `sonarly-api serve` sends no `server` banner, and authenticated answers carry
  `Cache-Control: no-store`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import subprocess
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api.app import create_app
from sonarly_api.auth import keys
from tests.conftest import PEPPER, Factory, QueryCounter, bearer, make_settings, started
from tests.servers import cli_argv, free_port, running, serve_argv, service_env

ACCOUNTS = "/v1/accounts"


def lookup(group: str, provider_id: str = "crm-1") -> str:
    return f"/v1/accounts/{group}/prospects/by-provider-id/{provider_id}"


def bad_checksum(key: str) -> str:
    return key[:-1] + ("A" if key[-1] != "A" else "B")


def secret_forms(key: str) -> list[str]:
    """The key and the ways a careless log line could still carry it: the body without the
    prefix, its random part, and percent-, hex- and base64-encoded copies."""
    body = key.removeprefix(keys.PREFIX)
    return [
        key,
        body,
        body[:22],
        urllib.parse.quote(key),
        key.encode().hex(),
        base64.b64encode(key.encode()).decode(),
    ]


def header_shapes(key: str) -> list[dict[str, str]]:
    """How a key may be presented, well or badly."""
    return [
        {"Authorization": f"Bearer {key}"},
        {"Authorization": f"bearer {key}"},
        {"Authorization": f"Bearer  {key}"},
        {"Authorization": f"Bearer {key} trailing"},
        {"Authorization": f"Basic {key}"},
        {"Authorization": f"Token {key}"},
        {"Authorization": key},
        {"Authorization": f"Bearer:{key}"},
        {"X-Api-Key": key},
    ]


def assert_absent(secrets: list[str], *, where: str, text: str) -> None:
    for secret in secrets:
        assert secret not in text, f"a key ({secret[:12]}…) appears in {where}"


async def dump_database(engine: AsyncEngine) -> str:
    """Every row of every table of the public schema, as JSON text."""
    async with engine.connect() as conn:
        tables = (
            await conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
            )
        ).scalars()
        parts = []
        for table in list(tables):
            rows = await conn.execute(text(f'SELECT row_to_json(t)::text FROM "{table}" t'))
            parts += [row[0] for row in rows]
    return "\n".join(parts)


class TestKeysAtRest:
    async def test_only_the_hmac_is_stored(self, factory: Factory, engine: AsyncEngine) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        dump = await dump_database(engine)

        assert_absent(secret_forms(key), where="the database", text=dump)
        digest = keys.hash_key(key, PEPPER.encode())
        # row_to_json renders bytea as \\x… hex: the HMAC is what is stored.
        assert "\\\\x" + digest.hex() in dump

    async def test_a_key_made_by_the_cli_is_stored_only_as_its_hmac(
        self, database_url: str, factory: Factory, engine: AsyncEngine
    ) -> None:
        group = await factory.group()
        env = service_env(DATABASE_URL=database_url, API_KEY_PEPPER=PEPPER)
        argv = [*cli_argv(), "keys", "create", "--name", "cli", "--account-group", group]
        made = await asyncio.to_thread(
            subprocess.run,
            [*argv, "--permission", "prospects:read", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        key = json.loads(made.stdout)["key"]
        dump = await dump_database(engine)

        assert keys.check_format(key) is None
        assert_absent(secret_forms(key), where="the database", text=dump)
        assert "\\\\x" + keys.hash_key(key, PEPPER.encode()).hex() in dump


@pytest.fixture
async def logged_app(database_url: str, caplog: pytest.LogCaptureFixture) -> AsyncIterator[FastAPI]:
    """An app built while every logger is at DEBUG (SQLAlchemy decides at engine creation
    whether to log statements and parameters), with /metrics open."""
    caplog.set_level(logging.DEBUG)
    settings = make_settings(database_url, metrics="open", key_cache_ttl_seconds=0)
    async for app in started(create_app(settings)):
        yield app


class TestKeysNeverDisclosed:
    async def test_in_process(
        self,
        logged_app: FastAPI,
        factory: Factory,
        capfd: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        group = await factory.group()
        _, valid = await factory.key([group])
        revoked_id, revoked = await factory.key([group])
        await factory.revoke(revoked_id)
        forged = [keys.generate_key(), bad_checksum(keys.generate_key()), keys.PREFIX + "x" * 10]
        presented = [valid, revoked, *forged]
        bodies = []
        transport = httpx.ASGITransport(app=logged_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            for key in presented:
                for headers in header_shapes(key):
                    for path in (ACCOUNTS, lookup(group), lookup("not-an-id"), "/v1/nothing"):
                        response = await http.get(path, headers=headers)
                        bodies.append(f"{response.status_code} {response.headers} {response.text}")
            statuses = {int(b.split()[0]) for b in bodies}
            metrics = (await http.get("/metrics")).text
        out, err = capfd.readouterr()
        logs = "\n".join(
            f"{r.name} {r.levelname} {r.getMessage()} {r.args!r} {r.__dict__}"
            for r in caplog.records
        )

        # The requests did what they should (a test that sends nothing proves nothing).
        assert {200, 401, 404, 422} <= statuses
        assert 'status="401"' in metrics  # the refusals were counted, by route and status
        assert caplog.records, "DEBUG logging captured nothing"
        for key in presented:
            forms = secret_forms(key)
            assert_absent(forms, where="a response", text="\n".join(bodies))
            assert_absent(forms, where="the metrics", text=metrics)
            assert_absent(forms, where="a log record", text=logs)
            assert_absent(forms, where="stdout/stderr", text=out + err)

    async def test_from_a_real_server_at_debug(
        self, database_url: str, factory: Factory, tmp_path: Path
    ) -> None:
        group = await factory.group()
        _, valid = await factory.key([group])
        revoked_id, revoked = await factory.key([group])
        await factory.revoke(revoked_id)
        forged = [keys.generate_key(), bad_checksum(keys.generate_key())]
        presented = [valid, revoked, *forged]
        env = service_env(
            DATABASE_URL=database_url,
            API_KEY_PEPPER=PEPPER,
            LOG_LEVEL="debug",
            LOG_FORMAT="json",
            METRICS="open",
        )
        port = free_port()
        bodies = []
        with running(serve_argv(port), env, tmp_path / "server.log", port) as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
                for key in presented:
                    for headers in header_shapes(key):
                        for path in (ACCOUNTS, lookup(group), lookup("not-an-id")):
                            response = await http.get(path, headers=headers)
                            bodies.append(f"{response.headers} {response.text}")
                metrics = (await http.get("/metrics")).text
        output = server.output()

        assert output.count('"event":"request"') >= len(bodies), "the access log is on"
        assert '"level":"debug"' in output  # DEBUG lines were written, and searched
        for key in presented:
            forms = secret_forms(key)
            assert_absent(forms, where="a response", text="\n".join(bodies))
            assert_absent(forms, where="the metrics", text=metrics)
            assert_absent(forms, where="the server's output", text=output)


class TestRefusedWithoutAQuery:
    @pytest.mark.parametrize(
        "header",
        [
            "Bearer " + bad_checksum(keys.generate_key()),
            "Bearer " + keys.generate_key()[:-1],
            "Bearer " + keys.generate_key() + "0",
            "Bearer sk_test_" + "a" * 28,
            "Bearer  " + keys.PREFIX + "!" * 28,
            "Basic " + keys.generate_key(),
            keys.generate_key(),
            "Bearer",
            "",
        ],
    )
    async def test_malformed_or_forged(
        self, client: httpx.AsyncClient, count_queries: QueryCounter, header: str
    ) -> None:
        response = await client.get(ACCOUNTS, headers={"Authorization": header})

        assert response.status_code == 401
        assert response.json()["error"]["code"] == "UNAUTHORIZED"
        assert await count_queries.settled() == 0

    async def test_a_well_formed_unknown_key_costs_one_query(
        self, client: httpx.AsyncClient, count_queries: QueryCounter
    ) -> None:
        # The counter does see queries: the zero above is not for want of looking.
        response = await client.get(ACCOUNTS, headers=bearer(keys.generate_key()))
        assert response.status_code == 401
        assert await count_queries.settled() == 1


class TestGuessingIsSlowed:
    @pytest.fixture
    async def strict_app(self, database_url: str) -> AsyncIterator[FastAPI]:
        settings = make_settings(database_url, auth_failure_rate_limit="5/minute")
        async for app in started(create_app(settings)):
            yield app

    @staticmethod
    def from_address(app: FastAPI, address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 50000))
        return httpx.AsyncClient(transport=transport, base_url="http://test")

    async def test_429_after_the_budget_even_for_a_valid_key(
        self, strict_app: FastAPI, factory: Factory
    ) -> None:
        group = await factory.group()
        _, valid = await factory.key([group])
        async with self.from_address(strict_app, "203.0.113.50") as guesser:
            statuses = [
                (await guesser.get(lookup(group), headers=bearer(keys.generate_key()))).status_code
                for _ in range(7)
            ]
            blocked = await guesser.get(lookup(group), headers=bearer(valid))
        async with self.from_address(strict_app, "198.51.100.50") as bystander:
            elsewhere = await bystander.get(lookup(group), headers=bearer(valid))

        assert statuses == [401] * 5 + [429] * 2
        assert blocked.status_code == 429
        assert blocked.json()["error"]["code"] == "RATE_LIMITED"
        assert 1 <= int(blocked.headers["retry-after"]) <= 60
        assert elsewhere.status_code == 200


class TestRealServerHeaders:
    async def test_no_server_banner_and_no_store(
        self, database_url: str, factory: Factory, tmp_path: Path
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        _, no_permission = await factory.key([group], permissions=("prospecting:read",))
        env = service_env(DATABASE_URL=database_url, API_KEY_PEPPER=PEPPER)
        port = free_port()
        with running(serve_argv(port), env, tmp_path / "server.log", port) as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
                authenticated = {
                    200: await http.get(lookup(group), headers=bearer(key)),
                    422: await http.get(lookup("zz"), headers=bearer(key)),
                    403: await http.get(lookup(group), headers=bearer(no_permission)),
                }
                accounts = await http.get(ACCOUNTS, headers=bearer(key))
                anonymous = [
                    await http.get(ACCOUNTS),
                    await http.get("/v1/nothing"),
                    await http.get("/openapi.json"),
                ]

        for status, response in authenticated.items():
            assert response.status_code == status, response.text
        for response in [*authenticated.values(), accounts, *anonymous]:
            assert "server" not in response.headers, response.headers
            assert response.headers["x-trace-id"]
        for response in [*authenticated.values(), accounts]:
            assert response.headers["cache-control"] == "no-store"
