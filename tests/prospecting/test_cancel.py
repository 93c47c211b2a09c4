"""POST /v1/accounts/{accountGroupId}/prospecting/{jobId}/cancel: the state machine's edge
and its ledger effect."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api.credits import service as credits
from sonarly_api.ids import new_id
from tests.conftest import Factory
from tests.prospecting.test_start import error_of
from tests.support import cancel_path, credits_view, job_path, job_row, set_job, started_job, tenant

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class TestCancel:
    async def test_a_queued_job_is_cancelled_and_its_reservation_released(
        self, client: httpx.AsyncClient, factory: Factory, engine: AsyncEngine
    ) -> None:
        who = await tenant(factory, credits=500)
        job_id = await started_job(client, who, maxResults=200)
        assert (await credits_view(engine, who.group)).reserved == 200

        response = await client.post(cancel_path(who.group, job_id), headers=who.headers)

        assert response.status_code == 200, response.text
        assert response.json()["data"] == {"jobId": job_id, "status": "cancelled"}
        row = await job_row(engine, job_id)
        assert row["status"] == "cancelled"
        assert row["finished_at"] is not None
        assert (row["import_status"], row["enrichment_status"]) == ("cancelled", "cancelled")
        view = await credits_view(engine, who.group)
        assert (view.balance, view.reserved, view.available) == (500, 0, 500)
        assert [(e.kind, e.amount, e.job_id) for e in view.entries[:2]] == [
            ("release", 200, job_id),
            ("reserve", 200, job_id),
        ]
        status = await client.get(job_path(who.group, job_id), headers=who.headers)
        assert status.json()["data"]["status"] == "cancelled"
        assert "retry-after" not in status.headers

    async def test_a_running_job_keeps_what_it_was_charged(
        self, client: httpx.AsyncClient, factory: Factory, engine: AsyncEngine
    ) -> None:
        who = await tenant(factory, credits=500)
        job_id = await started_job(client, who, maxResults=100)
        # A worker's committed page: 30 prospects written and charged.
        async with engine.begin() as conn:
            await credits.charge(conn, who.group, job_id, f"{job_id}:page:1", 30)
        await set_job(
            engine,
            job_id,
            status="running",
            import_status="completed",
            import_progress=1.0,
            enrichment_status="running",
            created=30,
            credits_charged=30,
        )

        response = await client.post(cancel_path(who.group, job_id), headers=who.headers)

        assert response.status_code == 200
        row = await job_row(engine, job_id)
        assert (row["import_status"], row["enrichment_status"]) == ("completed", "cancelled")
        assert (row["created"], row["credits_charged"]) == (30, 30)
        view = await credits_view(engine, who.group)
        assert (view.balance, view.reserved) == (470, 0)
        assert (view.entries[0].kind, view.entries[0].amount) == ("release", 70)

    @pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
    async def test_422_for_a_finished_job_naming_its_status(
        self, client: httpx.AsyncClient, factory: Factory, engine: AsyncEngine, status: str
    ) -> None:
        who = await tenant(factory)
        job_id = await started_job(client, who, maxResults=10)
        await set_job(engine, job_id, status=status)

        response = await client.post(cancel_path(who.group, job_id), headers=who.headers)

        assert response.status_code == 422
        error = error_of(response)
        assert error["code"] == "VALIDATION_ERROR"
        assert error["details"] == (
            f"jobId: the job is {status}; only a queued or running job can be cancelled."
        )
        assert (await job_row(engine, job_id))["status"] == status

    async def test_a_second_cancel_is_422_and_releases_nothing_more(
        self, client: httpx.AsyncClient, factory: Factory, engine: AsyncEngine
    ) -> None:
        who = await tenant(factory, credits=100)
        job_id = await started_job(client, who, maxResults=10)
        first = await client.post(cancel_path(who.group, job_id), headers=who.headers)
        entries = len((await credits_view(engine, who.group)).entries)

        second = await client.post(cancel_path(who.group, job_id), headers=who.headers)

        assert (first.status_code, second.status_code) == (200, 422)
        assert "cancelled" in error_of(second)["details"]
        assert len((await credits_view(engine, who.group)).entries) == entries

    async def test_another_groups_job_is_the_same_404_as_an_unknown_one(
        self, client: httpx.AsyncClient, factory: Factory, engine: AsyncEngine
    ) -> None:
        owner = await tenant(factory)
        job_id = await started_job(client, owner)
        other = await tenant(factory)
        headers = {**other.headers, "traceparent": TRACE}

        foreign = await client.post(cancel_path(other.group, job_id), headers=headers)
        unknown = await client.post(cancel_path(other.group, new_id()), headers=headers)

        assert foreign.status_code == unknown.status_code == 404
        assert foreign.content == unknown.content
        assert (await job_row(engine, job_id))["status"] == "queued"

    async def test_400_401_403_and_the_order_of_checks(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        who = await tenant(factory)
        reader = await tenant(factory, permissions=("prospecting:read",))
        job_id = await started_job(client, who)

        no_key = await client.post(cancel_path(who.group, job_id))
        no_permission = await client.post(cancel_path(reader.group, "bad"), headers=reader.headers)
        bad_id = await client.post(cancel_path(new_id(), "bad"), headers=who.headers)
        forbidden = await client.post(cancel_path(new_id(), job_id), headers=who.headers)

        assert no_key.status_code == 401
        assert (no_permission.status_code, error_of(no_permission)["code"]) == (
            403,
            "PERMISSION_DENIED",
        )
        assert "prospecting:write" in error_of(no_permission)["details"]
        assert bad_id.status_code == 400
        assert error_of(bad_id)["details"] == "jobId: must be 24 hexadecimal characters."
        assert (forbidden.status_code, error_of(forbidden)["code"]) == (
            403,
            "ACCOUNT_GROUP_FORBIDDEN",
        )
