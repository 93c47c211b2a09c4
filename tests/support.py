"""Helpers shared by test modules (fixtures stay in conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api.credits import service as credits
from sonarly_api.credits.schemas import CreditsView
from sonarly_api.prospecting.models import ProspectingJob
from tests.conftest import Factory, bearer

# --- Prospecting jobs (tests/prospecting/) ---------------------------------------------------

JOB_PERMISSIONS = ("prospecting:read", "prospecting:write")
SEARCH_URL = "https://www.linkedin.com/search/results/people/?keywords=cto"


@dataclass(frozen=True)
class Tenant:
    """An account group with a plan and credits, and a key granted it."""

    group: str
    key_id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.key)

    @property
    def jobs(self) -> str:
        return jobs_path(self.group)


def jobs_path(group: str) -> str:
    return f"/v1/accounts/{group}/prospecting"


def job_path(group: str, job_id: str) -> str:
    return f"{jobs_path(group)}/{job_id}"


def cancel_path(group: str, job_id: str) -> str:
    return f"{job_path(group, job_id)}/cancel"


def search_body(**fields: Any) -> dict[str, Any]:
    return {"source": "linkedin_search", "searchUrl": SEARCH_URL, **fields}


async def set_plan(engine: AsyncEngine, group: str, plan: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE account_groups SET plan = :plan WHERE id = :g"), {"plan": plan, "g": group}
        )


async def grant(engine: AsyncEngine, group: str, amount: int) -> None:
    async with engine.begin() as conn:
        await credits.grant(conn, group, amount, note="test")


async def credits_view(engine: AsyncEngine, group: str) -> CreditsView:
    async with engine.begin() as conn:
        return await credits.show(conn, group, limit=100)


async def tenant(
    factory: Factory,
    *,
    plan: str = "starter",
    credits: int = 100_000,
    permissions: tuple[str, ...] = JOB_PERMISSIONS,
) -> Tenant:
    group = await factory.group()
    await set_plan(factory.engine, group, plan)
    if credits:
        await grant(factory.engine, group, credits)
    key_id, key = await factory.key([group], permissions)
    return Tenant(group, key_id, key)


async def start(
    client: httpx.AsyncClient,
    who: Tenant,
    body: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> httpx.Response:
    headers = dict(who.headers)
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return await client.post(
        who.jobs, json=search_body() if body is None else body, headers=headers
    )


async def started_job(client: httpx.AsyncClient, who: Tenant, **fields: Any) -> str:
    response = await start(client, who, search_body(**fields))
    assert response.status_code == 202, response.text
    job_id: str = response.json()["data"]["jobId"]
    return job_id


async def set_job(engine: AsyncEngine, job_id: str, **values: Any) -> None:
    """Moves a job as a worker would (the worker's code is another branch's)."""
    async with engine.begin() as conn:
        await conn.execute(
            update(ProspectingJob).where(ProspectingJob.id == job_id).values(**values)
        )


async def job_row(engine: AsyncEngine, job_id: str) -> dict[str, Any]:
    async with engine.connect() as conn:
        row = (await conn.execute(select(ProspectingJob).where(ProspectingJob.id == job_id))).one()
    return dict(row._mapping)


async def count_jobs(engine: AsyncEngine, group: str) -> int:
    async with engine.connect() as conn:
        value = await conn.scalar(
            text("SELECT count(*) FROM prospecting_jobs WHERE account_group_id = :g"), {"g": group}
        )
    return int(value or 0)
