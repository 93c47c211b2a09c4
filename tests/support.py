"""Helpers shared by test modules (fixtures stay in conftest.py; raw-socket HTTP is in
tests/rawhttp.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api.credits import service as credits
from sonarly_api.credits.schemas import CreditsView
from sonarly_api.prospecting.models import ProspectingJob
from sonarly_api.providers.base import Profile, ProviderAccount
from sonarly_api.providers.calls import Backoff
from sonarly_api.providers.http import HttpProviderOptions
from sonarly_api.providers.sandbox import SandboxProvider
from tests.conftest import Factory, bearer

# --- Batch lookup (tests/prospects/) ----------------------------------------------------------

BATCH_PATH = "/v1/accounts/{group}/prospects/by-provider-id"
ENVELOPE_HEAD = b'{"success":true,"data":'
ENVELOPE_TAIL = b',"error":null,"traceId":"'


def batch_url(group: str) -> str:
    return BATCH_PATH.format(group=group)


def single_url(group: str, provider_id: str) -> str:
    """The single lookup's path for any provider id. Dots too are escaped: clients (httpx
    among them) remove "." and ".." segments before sending; the server decodes %2E."""
    encoded = urllib.parse.quote(provider_id, safe="").replace(".", "%2E")
    return f"/v1/accounts/{group}/prospects/by-provider-id/{encoded}"


async def post_batch(
    http: httpx.AsyncClient, group: str, provider_ids: list[Any], key: str | None
) -> httpx.Response:
    """POST the batch lookup with `{"providerIds": provider_ids}` (any JSON values)."""
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    body = json.dumps({"providerIds": provider_ids}, ensure_ascii=False).encode()
    return await http.post(batch_url(group), content=body, headers=headers)


def data_bytes(response: httpx.Response) -> bytes:
    """The bytes of a 200 envelope's `data`, exactly as sent."""
    body = response.content
    assert body.startswith(ENVELOPE_HEAD), body[:100]
    end = body.rindex(ENVELOPE_TAIL)
    return body[len(ENVELOPE_HEAD) : end]


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The envelope of an error answer: status, code, trace id; returns `error`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["success"] is False
    assert body["data"] is None
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["traceId"] == response.headers["x-trace-id"]
    error: dict[str, Any] = body["error"]
    return error


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


# --- Prospecting workers (tests/prospecting/test_worker*.py, tests/faults/) ----------------


def sandbox_search(results: int, tag: str = "", **options: int) -> str:
    """A search URL the sandbox answers with exactly `results` profiles."""
    extra = "".join(f"&{k}={v}" for k, v in options.items())
    return f"{SEARCH_URL}&q={tag}&sandboxResults={results}{extra}"


async def new_job(
    engine: AsyncEngine,
    group: str,
    source: dict[str, Any],
    *,
    max_results: int,
    search_emails: bool = False,
) -> str:
    """A queued job with its reservation, as the start endpoint commits it."""
    from sonarly_api.ids import new_id

    job_id = new_id()
    urls = source.get("profileUrls")
    reserved = (len(urls) if urls else max_results) * (2 if search_emails else 1)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO prospecting_jobs (id, account_group_id, source, max_results,"
                " search_emails, credits_reserved)"
                " VALUES (:id, :g, CAST(:source AS jsonb), :m, :e, :r)"
            ),
            {
                "id": job_id,
                "g": group,
                "source": json.dumps(source),
                "m": max_results,
                "e": search_emails,
                "r": reserved,
            },
        )
        await credits.reserve(conn, group, job_id, reserved)
    return job_id


def search_source(url: str) -> dict[str, Any]:
    return {"source": "linkedin_search", "searchUrl": url}


async def job_state(engine: AsyncEngine, job_id: str) -> dict[str, Any]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT * FROM prospecting_jobs WHERE id = :id"), {"id": job_id}
            )
        ).one()
    return dict(row._mapping)


async def ledger(engine: AsyncEngine, group: str) -> list[tuple[str, int, str | None, str | None]]:
    """(kind, amount, job id, entry key) of the group's ledger, oldest first."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT kind, amount, job_id, entry_key FROM credit_ledger"
                " WHERE account_group_id = :g ORDER BY id"
            ),
            {"g": group},
        )
        return [(r[0], int(r[1]), r[2], r[3]) for r in rows]


async def balance(engine: AsyncEngine, group: str) -> tuple[int, int]:
    """(balance, reserved) of the group."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT balance, reserved FROM credit_balances WHERE account_group_id = :g"),
                {"g": group},
            )
        ).one()
    return int(row[0]), int(row[1])


async def job_prospects(engine: AsyncEngine, job_id: str) -> list[dict[str, Any]]:
    """The prospects a job recorded, with their fields."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT p.* FROM prospecting_job_prospects j JOIN prospects p"
                " ON p.account_group_id = j.account_group_id AND p.id = j.prospect_id"
                " WHERE j.job_id = :job ORDER BY p.provider_id, p.public_identifier"
            ),
            {"job": job_id},
        )
        return [dict(r._mapping) for r in rows]


async def cancel(engine: AsyncEngine, group: str, job_id: str) -> bool:
    """What the cancel endpoint commits: True when the job was queued or running."""
    from sonarly_api.prospecting import repository as jobs

    async with engine.begin() as conn:
        if not await jobs.cancel_job(conn, group, job_id):
            return False
        await credits.release(conn, group, job_id)
        return True


async def sandbox_profiles(group: str, url: str) -> list[Profile]:
    """Every profile the sandbox lists for this group and search, in order."""
    provider = SandboxProvider(page_delay_ms=0)
    who = ProviderAccount(group, None)
    profiles, cursor = [], None
    while True:
        page = await provider.search_page(who, url, cursor)
        profiles += page.profiles
        if page.next_cursor is None:
            return profiles
        cursor = page.next_cursor


async def sandbox_listing_id(group: str, field: str) -> str:
    """The first id of the group's sandbox Sales Navigator listing a `field` (leadListId or
    savedSearchId) must be one of for a job to start."""
    provider = SandboxProvider(page_delay_ms=0)
    who = ProviderAccount(group, None)
    if field == "leadListId":
        return (await provider.list_lead_lists(who))[0].id
    return (await provider.list_saved_searches(who))[0].id


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], seconds: float, what: str, every: float = 0.05
) -> None:
    """Poll `predicate` (state kept outside the test: the database, another process)."""
    try:
        async with asyncio.timeout(seconds):
            while not await predicate():  # noqa: ASYNC110 - polls state outside this task
                await asyncio.sleep(every)
    except TimeoutError:
        raise AssertionError(f"timed out after {seconds:g} s waiting for {what}") from None


@contextlib.contextmanager
def worker_process(
    database_url: str,
    log: Path,
    *,
    concurrency: int = 2,
    options: tuple[str, ...] = (),
    **settings: str,
) -> Iterator[subprocess.Popen[bytes]]:
    """A real `sonarly-api worker` process (its own process group), stopped at the end."""
    from tests.conftest import PEPPER
    from tests.servers import cli_argv, service_env, stop

    defaults = {"LOG_LEVEL": "info", "LOG_FORMAT": "json", "SANDBOX_PAGE_DELAY_MS": "0"}
    env = service_env(DATABASE_URL=database_url, API_KEY_PEPPER=PEPPER, **{**defaults, **settings})
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [*cli_argv(), "worker", "--concurrency", str(concurrency), *options],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        stop(proc)


# --- The HTTP provider against tests/fakeprovider.py (tests/providers/) ---------------------

PROVIDER_ACCOUNT = ProviderAccount("0" * 24, "acc-1")
# Short timeouts and waits, so that a fault's retries end within a test's second.
HTTP_PROVIDER_OPTIONS = HttpProviderOptions(
    timeout_seconds=0.3,
    max_attempts=3,
    deadline_seconds=3.0,
    listing_deadline_seconds=3.0,
    account_concurrency=2,
    backoff=Backoff(base_seconds=0.01, cap_seconds=0.05),
)
