"""`make bench-jobs`'s data and rows: the account groups and key it makes, the jobs it POSTs,
and what the database holds for them afterwards (checked: none lost, run twice or mis-charged)."""

from __future__ import annotations

import asyncio
import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.ext.asyncio import create_async_engine

from bench.live import HarnessError
from sonarly_api.accounts import service as accounts
from sonarly_api.auth import keys as key_format
from sonarly_api.auth import repository as api_keys

PEPPER = "bench-jobs-pepper-not-a-secret"
FINAL = ("completed", "failed", "cancelled")
Json = dict[str, Any]


def plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


# --- data ------------------------------------------------------------------------------------


async def make_groups(url: str, count: int, tag: str) -> list[str]:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            return [
                (await accounts.create(conn, f"{tag} {i}", "scale", 1_000_000)).id
                for i in range(count)
            ]
    finally:
        await engine.dispose()


async def make_key(url: str, groups: list[str]) -> str:
    secret = key_format.generate_key()
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await api_keys.create_key(
                conn,
                name="jobs bench",
                key_hash=key_format.hash_key(secret, PEPPER.encode()),
                permissions=["prospects:read", "prospecting:read", "prospecting:write"],
                account_group_ids=groups,
            )
    finally:
        await engine.dispose()
    return secret


def job_body(results: int, tag: str) -> Json:
    search = (
        f"https://www.linkedin.com/search/results/people/?keywords={tag}&sandboxResults={results}"
    )
    return {"source": "linkedin_search", "searchUrl": search, "maxResults": results}


# --- HTTP and the rows -----------------------------------------------------------------------


@dataclass
class Posted:
    job_id: str
    sent_at: float  # time.time() just before the request left


async def post_jobs(
    base_url: str, key: str, plan: list[tuple[str, Json]], rate: float | None
) -> list[Posted]:
    """POST each (group, body); at `rate` per second (open loop), or all at once (16 in
    flight) when None."""
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=16)
    posted: list[Posted] = []
    gate = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits) as client:

        async def one(group: str, body: Json) -> None:
            async with gate:
                sent = time.time()
                answer = await client.post(f"/v1/accounts/{group}/prospecting", json=body)
            if answer.status_code != 202:
                raise HarnessError(f"job start answered {answer.status_code}: {answer.text}")
            posted.append(Posted(answer.json()["data"]["jobId"], sent))

        start = time.perf_counter()
        tasks = []
        for i, (group, body) in enumerate(plan):
            if rate is not None:
                await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(group, body)))
        await asyncio.gather(*tasks)
    return posted


async def wait_final(url: str, ids: list[str], within: float) -> float:
    """Until every job is final; the seconds it took."""
    started = time.perf_counter()
    conn = await asyncpg.connect(plain(url))
    try:
        while True:
            left = await conn.fetchval(
                "SELECT count(*) FROM prospecting_jobs WHERE id = ANY($1) AND status <> ALL($2)",
                ids,
                list(FINAL),
            )
            if left == 0:
                return time.perf_counter() - started
            if time.perf_counter() - started > within:
                raise HarnessError(f"{left} of {len(ids)} jobs not finished in {within:g} s")
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def job_rows(url: str, ids: list[str]) -> list[Json]:
    """Each job's row, with what the other tables hold for it."""
    conn = await asyncpg.connect(plain(url))
    try:
        rows = await conn.fetch(
            """
            SELECT j.id, j.status, j.attempts, j.found, j.created, j.updated, j.unchanged,
                j.credits_charged, j.pages_done,
                extract(epoch FROM j.created_at)::float8 AS created_at,
                extract(epoch FROM j.started_at)::float8 AS started_at,
                extract(epoch FROM j.finished_at)::float8 AS finished_at,
                (SELECT count(*) FROM prospecting_job_prospects p WHERE p.job_id = j.id)
                    AS recorded,
                (SELECT count(*) FILTER (WHERE kind = 'reserve') FROM credit_ledger l
                    WHERE l.job_id = j.id) AS reserves,
                (SELECT count(*) FILTER (WHERE kind = 'release') FROM credit_ledger l
                    WHERE l.job_id = j.id) AS releases,
                (SELECT count(*) FILTER (WHERE kind = 'charge') FROM credit_ledger l
                    WHERE l.job_id = j.id) AS charges,
                (SELECT coalesce(sum(amount) FILTER (WHERE kind = 'charge'), 0)
                    FROM credit_ledger l WHERE l.job_id = j.id) AS charged_in_ledger,
                (SELECT count(*) FROM procrastinate_jobs q WHERE q.args->>'job_id' = j.id)
                    AS queue_entries
            FROM prospecting_jobs j WHERE j.id = ANY($1)
            """,
            ids,
        )
        return [dict(r) for r in rows]
    finally:
        await conn.close()


def check_rows(rows: list[Json], wanted: int) -> list[str]:
    """What is wrong with the jobs' rows (empty when nothing is)."""
    problems: list[str] = []
    if len(rows) != wanted:
        problems.append(f"{wanted - len(rows)} jobs missing")

    def count(what: str, test: Any) -> None:
        bad = sum(1 for r in rows if test(r))
        if bad:
            problems.append(f"{bad} jobs {what}")

    count("not completed", lambda r: r["status"] != "completed")
    count("picked up more than once", lambda r: r["attempts"] != 1)
    count("with recorded prospects != found", lambda r: r["recorded"] != r["found"])
    count(
        "with created+updated+unchanged != found",
        lambda r: r["created"] + r["updated"] + r["unchanged"] != r["found"],
    )
    count("with reservations != 1", lambda r: r["reserves"] != 1)
    count("with more than one release", lambda r: r["releases"] > 1)
    count("with more charges than pages", lambda r: r["charges"] > r["pages_done"])
    count(
        "whose ledger charges != created+updated != its credits charged",
        lambda r: not r["charged_in_ledger"] == r["created"] + r["updated"] == r["credits_charged"],
    )
    count("still in the queue", lambda r: r["queue_entries"] != 0)
    return problems


async def export_job_rows(url: str, job_id: str, path: Path) -> int:
    """The prospects a job wrote, as an import file."""
    conn = await asyncpg.connect(plain(url))
    try:
        rows = await conn.fetch(
            "SELECT p.provider_id, p.public_identifier, p.linkedin_url, p.name, p.company_name,"
            " p.title FROM prospecting_job_prospects j JOIN prospects p ON p.id = j.prospect_id"
            " WHERE j.job_id = $1 ORDER BY p.id",
            job_id,
        )
    finally:
        await conn.close()
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(
            ("providerId", "publicIdentifier", "linkedinUrl", "name", "companyName", "title")
        )
        writer.writerows(tuple(r) for r in rows)
    return len(rows)


async def wait_claimed(url: str, ids: list[str], within: float) -> None:
    """Until a worker has claimed one of the jobs."""
    started = time.perf_counter()
    conn = await asyncpg.connect(plain(url))
    try:
        while not await conn.fetchval(
            "SELECT EXISTS (SELECT FROM prospecting_jobs WHERE id = ANY($1)"
            " AND started_at IS NOT NULL)",
            ids,
        ):
            if time.perf_counter() - started > within:
                raise HarnessError(f"no worker claimed a job in {within:g} s")
            await asyncio.sleep(0.02)
    finally:
        await conn.close()


async def unfinished(url: str, ids: list[str]) -> int:
    conn = await asyncpg.connect(plain(url))
    try:
        left: int = await conn.fetchval(
            "SELECT count(*) FROM prospecting_jobs WHERE id = ANY($1) AND status <> ALL($2)",
            ids,
            list(FINAL),
        )
        return left
    finally:
        await conn.close()
