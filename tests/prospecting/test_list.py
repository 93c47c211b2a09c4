"""GET /v1/accounts/{accountGroupId}/prospecting: newest first, keyset pages, filters."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api.pagination import encode_cursor
from tests.conftest import Factory
from tests.prospecting.test_start import ISO_MS, error_of
from tests.support import Tenant, jobs_path, set_job, started_job, tenant


async def page(
    client: httpx.AsyncClient, who: Tenant, **params: Any
) -> tuple[list[str], str | None, bool]:
    response = await client.get(who.jobs, params=params, headers=who.headers)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    return [i["jobId"] for i in data["items"]], data["nextCursor"], data["hasMore"]


async def every_page(client: httpx.AsyncClient, who: Tenant, **params: Any) -> list[str]:
    seen: list[str] = []
    cursor: str | None = ""
    while cursor is not None:
        ids, cursor, has_more = await page(client, who, cursor=cursor, **params)
        assert has_more is (cursor is not None)
        seen += ids
    return seen


class TestList:
    async def test_newest_first_with_the_item_fields(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        who = await tenant(factory)
        jobs = [await started_job(client, who, maxResults=1) for _ in range(3)]

        response = await client.get(who.jobs, headers=who.headers)

        assert response.status_code == 200
        data = response.json()["data"]
        assert [i["jobId"] for i in data["items"]] == jobs[::-1]
        assert (data["nextCursor"], data["hasMore"]) == (None, False)
        item = data["items"][0]
        assert set(item) == {"jobId", "type", "status", "createdAt", "updatedAt"}
        assert (item["type"], item["status"]) == ("prospecting", "queued")
        assert ISO_MS.match(item["createdAt"])

    async def test_an_empty_group_and_an_empty_cursor(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        who = await tenant(factory)

        assert await page(client, who, cursor="") == ([], None, False)

    async def test_pages_in_order_without_gaps_or_repeats(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        who = await tenant(factory)
        jobs = [await started_job(client, who, maxResults=1) for _ in range(7)]

        first, _, has_more = await page(client, who, limit=3)

        assert (first, has_more) == (jobs[::-1][:3], True)
        assert await every_page(client, who, limit=3) == jobs[::-1]

    async def test_pages_stay_stable_while_jobs_are_created(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        who = await tenant(factory)
        before = [await started_job(client, who, maxResults=1) for _ in range(6)]
        seen, cursor, _ = await page(client, who, limit=2)

        while cursor is not None:
            await started_job(client, who, maxResults=1)  # newer: before the first page
            ids, cursor, _ = await page(client, who, limit=2, cursor=cursor)
            seen += ids

        assert seen == before[::-1]

    async def test_the_default_limit_is_20(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        who = await tenant(factory)
        for _ in range(21):
            await started_job(client, who, maxResults=1)

        ids, cursor, has_more = await page(client, who)

        assert (len(ids), has_more) == (20, True)
        assert cursor is not None

    async def test_status_filter(
        self, client: httpx.AsyncClient, factory: Factory, engine: AsyncEngine
    ) -> None:
        who = await tenant(factory)
        jobs = [await started_job(client, who, maxResults=1) for _ in range(4)]
        await set_job(engine, jobs[1], status="completed")
        await set_job(engine, jobs[3], status="completed")

        assert await every_page(client, who, status="completed", limit=1) == [jobs[3], jobs[1]]
        assert await every_page(client, who, status="queued") == [jobs[2], jobs[0]]
        assert await every_page(client, who, status="failed") == []

    async def test_only_the_groups_own_jobs(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        who = await tenant(factory)
        other = await tenant(factory)
        mine = await started_job(client, who, maxResults=1)
        await started_job(client, other, maxResults=1)

        assert await every_page(client, who) == [mine]

    @pytest.mark.parametrize(
        ("params", "field"),
        [
            ({"limit": "0"}, "limit"),
            ({"limit": "101"}, "limit"),
            ({"limit": "ten"}, "limit"),
            ({"limit": ""}, "limit"),
            ({"limit": "-1"}, "limit"),
            ({"status": "done"}, "status"),
            ({"status": ""}, "status"),
            ({"cursor": "garbage"}, "cursor"),
        ],
    )
    async def test_400_for_a_bad_query(
        self, client: httpx.AsyncClient, factory: Factory, params: dict[str, str], field: str
    ) -> None:
        who = await tenant(factory)

        response = await client.get(who.jobs, params=params, headers=who.headers)

        assert response.status_code == 400, response.text
        error = error_of(response)
        assert error["code"] == "VALIDATION_ERROR"
        assert error["details"].startswith(f"{field}: ")

    async def test_a_cursor_of_another_list_or_group_is_400(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        who = await tenant(factory)
        other = await tenant(factory)
        for _ in range(2):
            await started_job(client, other, maxResults=1)
        _, foreign_cursor, _ = await page(client, other, limit=1)
        assert foreign_cursor is not None

        accounts_cursor = encode_cursor(who.group)
        for cursor in (foreign_cursor, accounts_cursor):
            response = await client.get(who.jobs, params={"cursor": cursor}, headers=who.headers)
            assert response.status_code == 400
            assert error_of(response)["details"].startswith("cursor: ")

    async def test_401_403_and_the_order_of_checks(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        writer = await tenant(factory, permissions=("prospecting:write",))
        reader = await tenant(factory, permissions=("prospecting:read",))
        other = await tenant(factory)

        no_key = await client.get(jobs_path("bad"), params={"limit": "0"})
        no_permission = await client.get(writer.jobs, params={"limit": "0"}, headers=writer.headers)
        bad_path = await client.get(jobs_path("bad"), params={"limit": "0"}, headers=reader.headers)
        forbidden = await client.get(other.jobs, params={"limit": "0"}, headers=reader.headers)

        assert no_key.status_code == 401
        assert (no_permission.status_code, error_of(no_permission)["code"]) == (
            403,
            "PERMISSION_DENIED",
        )
        assert bad_path.status_code == 400
        assert error_of(bad_path)["details"].startswith("accountGroupId: ")
        assert (forbidden.status_code, error_of(forbidden)["code"]) == (
            403,
            "ACCOUNT_GROUP_FORBIDDEN",
        )
