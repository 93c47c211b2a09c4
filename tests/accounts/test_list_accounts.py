"""GET /v1/accounts: the account groups the presented key may use."""

from __future__ import annotations

import base64
import re
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api.accounts.models import AccountGroup
from sonarly_api.auth.keys import generate_key
from tests.conftest import Factory, bearer
from tests.support import assert_error

PATH = "/v1/accounts"
ISO_MILLIS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def assert_envelope_ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["success"] is True
    assert body["error"] is None
    assert body["traceId"] == response.headers["x-trace-id"]
    data: dict[str, Any] = body["data"]
    assert set(data) == {"items", "nextCursor", "hasMore"}
    return data


async def created_at(engine: AsyncEngine, group: str) -> datetime:
    async with engine.connect() as conn:
        value: datetime = (
            await conn.execute(select(AccountGroup.created_at).where(AccountGroup.id == group))
        ).scalar_one()
    return value


def ids(data: dict[str, Any]) -> list[str]:
    return [item["id"] for item in data["items"]]


async def walk(client: httpx.AsyncClient, key: str, limit: int) -> list[dict[str, Any]]:
    """Every page, following nextCursor until hasMore is false."""
    pages: list[dict[str, Any]] = []
    params: dict[str, str | int] = {"limit": limit}
    while True:
        data = assert_envelope_ok(await client.get(PATH, params=params, headers=bearer(key)))
        pages.append(data)
        if not data["hasMore"]:
            assert data["nextCursor"] is None
            return pages
        assert isinstance(data["nextCursor"], str)
        assert data["nextCursor"]
        assert len(pages) <= 100, "pagination does not terminate"
        params = {"limit": limit, "cursor": data["nextCursor"]}


def cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


class TestListing:
    async def test_lists_exactly_the_granted_groups(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        first, second = await factory.group("Acme EMEA"), await factory.group("Acme US")
        await factory.group("Not granted")
        _, key = await factory.key([first, second])

        data = assert_envelope_ok(await client.get(PATH, headers=bearer(key)))

        listed = sorted(((i["id"], i["name"]) for i in data["items"]), key=lambda i: i[0])
        assert listed == sorted([(first, "Acme EMEA"), (second, "Acme US")])
        assert all(ISO_MILLIS.fullmatch(i["createdAt"]) for i in data["items"])
        assert data["nextCursor"] is None
        assert data["hasMore"] is False

    async def test_items_are_id_name_and_created_at(
        self, client: httpx.AsyncClient, factory: Factory, engine: AsyncEngine
    ) -> None:
        group = await factory.group("Acme EMEA")
        _, key = await factory.key([group])
        stored = await created_at(engine, group)

        data = assert_envelope_ok(await client.get(PATH, headers=bearer(key)))

        (item,) = data["items"]
        assert set(item) == {"id", "name", "createdAt"}
        assert (item["id"], item["name"]) == (group, "Acme EMEA")
        assert ISO_MILLIS.fullmatch(item["createdAt"]), item["createdAt"]
        parsed = datetime.fromisoformat(item["createdAt"].replace("Z", "+00:00"))
        assert parsed == stored.astimezone(UTC).replace(
            microsecond=stored.microsecond // 1000 * 1000
        )

    async def test_other_keys_groups_are_never_listed(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        mine, theirs, shared = await factory.group(), await factory.group(), await factory.group()
        _, my_key = await factory.key([mine, shared])
        _, their_key = await factory.key([theirs, shared])

        my_data = assert_envelope_ok(await client.get(PATH, headers=bearer(my_key)))
        their_data = assert_envelope_ok(await client.get(PATH, headers=bearer(their_key)))

        assert sorted(ids(my_data)) == sorted([mine, shared])
        assert sorted(ids(their_data)) == sorted([theirs, shared])

    @pytest.mark.parametrize(
        "permissions",
        [
            ("prospects:read",),
            ("prospecting:read",),
            ("prospecting:write",),
            ("prospects:read", "prospecting:read", "prospecting:write"),
            (),
        ],
        ids=["prospects-read", "prospecting-read", "prospecting-write", "all", "none"],
    )
    async def test_any_valid_key_may_list(
        self, client: httpx.AsyncClient, factory: Factory, permissions: tuple[str, ...]
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group], permissions=permissions)

        data = assert_envelope_ok(await client.get(PATH, headers=bearer(key)))

        assert ids(data) == [group]

    async def test_rate_limit_headers(self, client: httpx.AsyncClient, factory: Factory) -> None:
        group = await factory.group()
        _, key = await factory.key([group])

        first = await client.get(PATH, headers=bearer(key))
        second = await client.get(PATH, headers=bearer(key))

        assert_envelope_ok(first)
        assert_envelope_ok(second)
        assert first.headers["x-ratelimit-limit"] == "100000"  # make_settings' rate limit
        assert int(first.headers["x-ratelimit-remaining"]) == 99_999
        assert int(second.headers["x-ratelimit-remaining"]) == 99_998
        assert int(first.headers["x-ratelimit-reset"]) >= int(time.time())

    async def test_revoked_key_is_unauthorized(
        self, client: httpx.AsyncClient, factory: Factory, app: FastAPI
    ) -> None:
        group = await factory.group()
        key_id, key = await factory.key([group])
        await factory.revoke(key_id)  # before its first use: nothing cached

        response = await client.get(PATH, headers=bearer(key))

        error = assert_error(response, 401, "UNAUTHORIZED")
        assert error["details"] == "The API key has been revoked."


class TestPagination:
    async def test_walks_every_page_without_duplicates_or_gaps(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        groups = [await factory.group(f"group {n}") for n in range(7)]
        _, key = await factory.key(groups)

        pages = await walk(client, key, limit=3)

        assert [len(p["items"]) for p in pages] == [3, 3, 1]
        assert [p["hasMore"] for p in pages] == [True, True, False]
        seen = [group for page in pages for group in ids(page)]
        assert len(seen) == len(set(seen))
        assert sorted(seen) == sorted(groups)

    async def test_an_empty_cursor_is_the_first_page(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        """`?cursor=` is what the document's schema allows and what a client sends for "no
        cursor yet" (found by Schemathesis, ST202): the first page, not a 422."""
        groups = [await factory.group(f"group {n}") for n in range(3)]
        _, key = await factory.key(groups)

        empty = await client.get(PATH, params={"cursor": "", "limit": 2}, headers=bearer(key))
        absent = await client.get(PATH, params={"limit": 2}, headers=bearer(key))

        assert empty.status_code == 200, empty.text
        assert empty.json()["data"]["items"] == absent.json()["data"]["items"]
        assert len(empty.json()["data"]["items"]) == 2
        assert empty.json()["data"]["hasMore"] is True

    async def test_last_page_exactly_full_has_no_more(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        groups = [await factory.group() for _ in range(4)]
        _, key = await factory.key(groups)

        pages = await walk(client, key, limit=2)

        assert [(len(p["items"]), p["hasMore"]) for p in pages] == [(2, True), (2, False)]
        assert sorted(g for p in pages for g in ids(p)) == sorted(groups)

    async def test_limit_larger_than_the_list(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        groups = [await factory.group() for _ in range(3)]
        _, key = await factory.key(groups)

        data = assert_envelope_ok(
            await client.get(PATH, params={"limit": 100}, headers=bearer(key))
        )

        assert sorted(ids(data)) == sorted(groups)
        assert (data["nextCursor"], data["hasMore"]) == (None, False)

    async def test_default_page_size_is_50(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        groups = [await factory.group() for _ in range(51)]
        _, key = await factory.key(groups)

        first = assert_envelope_ok(await client.get(PATH, headers=bearer(key)))
        second = assert_envelope_ok(
            await client.get(PATH, params={"cursor": first["nextCursor"]}, headers=bearer(key))
        )

        assert (len(first["items"]), first["hasMore"]) == (50, True)
        assert (len(second["items"]), second["hasMore"]) == (1, False)
        assert sorted(ids(first) + ids(second)) == sorted(groups)

    async def test_a_cursor_never_reaches_beyond_the_keys_groups(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        mine = [await factory.group() for _ in range(3)]
        await factory.group("Not granted")
        _, key = await factory.key(mine)
        before_everything = cursor_of("v1:" + "0" * 24)

        data = assert_envelope_ok(
            await client.get(
                PATH, params={"limit": 100, "cursor": before_everything}, headers=bearer(key)
            )
        )

        assert sorted(ids(data)) == sorted(mine)
        assert data["hasMore"] is False


class TestValidation:
    @pytest.mark.parametrize(
        ("limit", "fragment"),
        [
            ("0", "greater than or equal to 1"),
            ("-1", "greater than or equal to 1"),
            ("101", "less than or equal to 100"),
            ("x", "valid integer"),
            ("", "valid integer"),
            ("1.5", "valid integer"),
        ],
    )
    async def test_bad_limit(
        self, client: httpx.AsyncClient, factory: Factory, limit: str, fragment: str
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])

        response = await client.get(PATH, params={"limit": limit}, headers=bearer(key))

        error = assert_error(response, 422, "VALIDATION_ERROR")
        assert error["details"].startswith("limit: ")
        assert fragment in error["details"]

    @pytest.mark.parametrize(
        "cursor",
        [
            "garbage",
            "!!!",
            cursor_of("v1:not-an-id"),
            cursor_of("v2:" + "0" * 24),
            cursor_of("0" * 24),
            cursor_of("v1:" + "A" * 24),
        ],
        ids=["word", "not-base64", "bad-id", "bad-version", "no-version", "upper-id"],
    )
    async def test_garbage_cursor(
        self, client: httpx.AsyncClient, factory: Factory, cursor: str
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])

        response = await client.get(PATH, params={"cursor": cursor}, headers=bearer(key))

        error = assert_error(response, 422, "VALIDATION_ERROR")
        assert error["details"] == "cursor: not a cursor returned by this endpoint."

    async def test_validation_errors_carry_rate_limit_headers(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])

        response = await client.get(PATH, params={"limit": "0"}, headers=bearer(key))

        assert_error(response, 422, "VALIDATION_ERROR")
        for header in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"):
            assert response.headers[header].isdigit()


class TestAuthentication:
    async def test_missing_key(self, client: httpx.AsyncClient) -> None:
        response = await client.get(PATH)

        error = assert_error(response, 401, "UNAUTHORIZED")
        assert error["details"] == "The Authorization header is missing."
        assert response.headers["www-authenticate"] == "Bearer"

    async def test_unauthenticated_comes_before_validation(self, client: httpx.AsyncClient) -> None:
        response = await client.get(PATH, params={"limit": "0", "cursor": "garbage"})

        assert_error(response, 401, "UNAUTHORIZED")

    async def test_unknown_key(self, client: httpx.AsyncClient) -> None:
        response = await client.get(PATH, headers=bearer(generate_key()))

        error = assert_error(response, 401, "UNAUTHORIZED")
        assert error["details"] == "The API key is not recognised."
