"""GET /v1/accounts/{accountGroupId}/prospecting/{jobId}: the status body, 400/401/403/404."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api.ids import new_id
from tests.conftest import Factory
from tests.prospecting.test_start import ISO_MS, error_of
from tests.support import SEARCH_URL, job_path, set_job, started_job, tenant

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class TestStatus:
    async def test_a_queued_job(self, client: httpx.AsyncClient, factory: Factory) -> None:
        who = await tenant(factory)
        job_id = await started_job(client, who, maxResults=40, searchEmails=True)

        response = await client.get(job_path(who.group, job_id), headers=who.headers)

        assert response.status_code == 200, response.text
        assert int(response.headers["retry-after"]) >= 1
        body = response.json()
        assert (body["success"], body["error"]) == (True, None)
        data = body["data"]
        created = data.pop("createdAt")
        updated = data.pop("updatedAt")
        assert ISO_MS.match(created)
        assert ISO_MS.match(updated)
        assert data == {
            "jobId": job_id,
            "type": "prospecting",
            "status": "queued",
            "source": {"source": "linkedin_search", "searchUrl": SEARCH_URL},
            "maxResults": 40,
            "searchEmails": True,
            "startedAt": None,
            "finishedAt": None,
            "stages": {
                "import": {"status": "queued", "progress": 0.0},
                "enrichment": {"status": "queued", "progress": 0.0},
            },
            "counts": {"found": 0, "created": 0, "updated": 0, "unchanged": 0, "failed": 0},
            "credits": {"reserved": 80, "charged": 0},
            "error": None,
        }

    async def test_a_running_job_shows_what_the_worker_recorded(
        self, client: httpx.AsyncClient, factory: Factory, engine: AsyncEngine
    ) -> None:
        who = await tenant(factory)
        job_id = await started_job(client, who, maxResults=100)
        started = datetime(2026, 4, 28, 15, 30, 0, 50_000, tzinfo=UTC)
        await set_job(
            engine,
            job_id,
            status="running",
            started_at=started,
            import_status="running",
            import_progress=0.82,
            found=82,
            created=70,
            updated=5,
            unchanged=7,
            credits_charged=75,
        )

        response = await client.get(job_path(who.group, job_id), headers=who.headers)

        data = response.json()["data"]
        assert data["status"] == "running"
        assert data["startedAt"] == "2026-04-28T15:30:00.050Z"
        assert data["stages"]["import"] == {"status": "running", "progress": 0.82}
        assert data["counts"] == {
            "found": 82,
            "created": 70,
            "updated": 5,
            "unchanged": 7,
            "failed": 0,
        }
        assert data["credits"] == {"reserved": 100, "charged": 75}
        assert "retry-after" in response.headers

    async def test_a_failed_job_carries_its_error_and_no_retry_after(
        self, client: httpx.AsyncClient, factory: Factory, engine: AsyncEngine
    ) -> None:
        who = await tenant(factory)
        job_id = await started_job(client, who)
        await set_job(
            engine,
            job_id,
            status="failed",
            import_status="failed",
            finished_at=datetime.now(UTC),
            error_code="UPSTREAM_ERROR",
            error_message="The prospect provider did not answer in time.",
        )

        response = await client.get(job_path(who.group, job_id), headers=who.headers)

        assert response.status_code == 200
        assert "retry-after" not in response.headers
        data = response.json()["data"]
        assert data["error"] == {
            "code": "UPSTREAM_ERROR",
            "message": "The prospect provider did not answer in time.",
        }
        assert ISO_MS.match(data["finishedAt"])

    async def test_a_job_id_in_upper_case_is_the_same_job(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        who = await tenant(factory)
        job_id = await started_job(client, who)

        response = await client.get(job_path(who.group, job_id.upper()), headers=who.headers)

        assert response.status_code == 200
        assert response.json()["data"]["jobId"] == job_id

    async def test_another_groups_job_is_the_same_404_as_an_unknown_one(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        owner = await tenant(factory)
        job_id = await started_job(client, owner)
        other = await tenant(factory)
        headers = {**other.headers, "traceparent": TRACE}

        foreign = await client.get(job_path(other.group, job_id), headers=headers)
        unknown = await client.get(job_path(other.group, new_id()), headers=headers)

        assert foreign.status_code == unknown.status_code == 404
        assert foreign.content == unknown.content
        assert error_of(foreign)["code"] == "NOT_FOUND"
        assert {k: v for k, v in foreign.headers.items() if not k.startswith("x-ratelimit")} == {
            k: v for k, v in unknown.headers.items() if not k.startswith("x-ratelimit")
        }

    @pytest.mark.parametrize("job_id", ["1", "x" * 24, "507f1f77bcf86cd7994390111"])
    async def test_400_for_a_malformed_job_id(
        self, client: httpx.AsyncClient, factory: Factory, job_id: str
    ) -> None:
        who = await tenant(factory)

        response = await client.get(job_path(who.group, job_id), headers=who.headers)

        assert response.status_code == 400
        assert error_of(response)["details"] == "jobId: must be 24 hexadecimal characters."

    async def test_401_403_and_the_order_of_checks(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        who = await tenant(factory)
        writer = await tenant(factory, permissions=("prospecting:write",))
        job_id = await started_job(client, who)

        no_key = await client.get(job_path(who.group, "bad"))
        no_permission = await client.get(job_path(writer.group, "bad"), headers=writer.headers)
        bad_id_foreign_group = await client.get(job_path(new_id(), "bad"), headers=who.headers)
        foreign_group = await client.get(job_path(new_id(), job_id), headers=who.headers)

        assert no_key.status_code == 401
        assert (no_permission.status_code, error_of(no_permission)["code"]) == (
            403,
            "PERMISSION_DENIED",
        )
        assert "prospecting:read" in error_of(no_permission)["details"]
        assert bad_id_foreign_group.status_code == 400
        assert (foreign_group.status_code, error_of(foreign_group)["code"]) == (
            403,
            "ACCOUNT_GROUP_FORBIDDEN",
        )
