"""SQL of a running job (the worker's side): claim, lock, pages, enrichment, the end.

Every statement but `claim` takes the account group id: a job id comes from the queue, the
group from the job row, and nothing the worker writes crosses it. Page and enrichment
statements run on the caller's connection, inside its transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True)
class RunningJob:
    id: str
    account_group_id: str
    status: str
    source: dict[str, Any]
    max_results: int
    search_emails: bool
    import_status: str
    enrichment_status: str
    found: int
    pages_done: int
    resume_cursor: str | None
    attempts: int
    queue_wait_seconds: float  # from creation to this claim


async def bound_transaction(conn: AsyncConnection, statement_timeout_ms: int) -> None:
    """A page's transaction: bounded statements, a short wait for the job row (a cancel holds
    it for a moment), and no JIT compilation for statements this small. One round trip."""
    await conn.execute(
        text(
            "SELECT set_config('statement_timeout', :timeout, true),"
            " set_config('lock_timeout', '2s', true), set_config('jit', 'off', true)"
        ),
        {"timeout": str(statement_timeout_ms)},
    )


async def claim(conn: AsyncConnection, job_id: str) -> RunningJob | None:
    """Mark the job running (a worker picked it up) and count the attempt; None when the job
    is gone or finished (cancelled while queued, say)."""
    row = (
        await conn.execute(
            text(
                """
                UPDATE prospecting_jobs
                SET status = 'running', attempts = attempts + 1, updated_at = now(),
                    started_at = coalesce(started_at, now()),
                    import_status = CASE WHEN import_status = 'queued' THEN 'running'
                                         ELSE import_status END
                WHERE id = :id AND status IN ('queued', 'running')
                RETURNING id, account_group_id, status, source, max_results, search_emails,
                    import_status, enrichment_status, found, pages_done, resume_cursor, attempts,
                    CAST(extract(epoch FROM clock_timestamp() - created_at) AS float8)
                        AS queue_wait_seconds
                """
            ),
            {"id": job_id},
        )
    ).one_or_none()
    return None if row is None else RunningJob(**row._mapping)


@dataclass(frozen=True)
class LockedJob:
    status: str
    attempts: int
    pages_done: int
    found: int


async def lock(conn: AsyncConnection, group: str, job_id: str) -> LockedJob | None:
    row = (
        await conn.execute(
            text(
                "SELECT status, attempts, pages_done, found FROM prospecting_jobs"
                " WHERE id = :id AND account_group_id = :group FOR UPDATE"
            ),
            {"id": job_id, "group": group},
        )
    ).one_or_none()
    return None if row is None else LockedJob(**row._mapping)


async def still_running(conn: AsyncConnection, group: str, job_id: str, attempts: int) -> bool:
    """Is the job still running under this attempt? (No lock: a watch while the provider
    answers, which must never wait for a cancel's transaction.)"""
    value = await conn.scalar(
        text(
            "SELECT status = 'running' AND attempts = :attempts FROM prospecting_jobs"
            " WHERE id = :id AND account_group_id = :group"
        ),
        {"id": job_id, "group": group, "attempts": attempts},
    )
    return bool(value)


@dataclass(frozen=True)
class Existing:
    prospect_id: str
    provider_id: str
    public_identifier: str
    company_name: str | None
    title: str | None


async def prospects_of(
    conn: AsyncConnection, group: str, provider_ids: Sequence[str], identifiers: Sequence[str]
) -> list[Existing]:
    """The group's prospects of these (provider id, public identifier) pairs: the prospect the
    writer resolves each profile to (its person by public identifier)."""
    # One index probe per pair (LATERAL ... LIMIT 1, exact: the triple is unique). As a plain
    # join, a group the planner believes small (a new one, or fresh statistics) is read whole
    # for every page, so a job's pages cost more and more as it writes the group's prospects.
    rows = await conn.execute(
        text(
            """
            SELECT p.id AS prospect_id, p.provider_id, s.public_identifier,
                   p.company_name, p.title
            FROM unnest(CAST(:provider_ids AS text[]), CAST(:identifiers AS text[]))
                 AS k(provider_id, public_identifier)
            JOIN persons s ON s.public_identifier = k.public_identifier
            CROSS JOIN LATERAL (
                SELECT q.id, q.provider_id, q.company_name, q.title FROM prospects q
                WHERE q.account_group_id = :group
                  AND q.provider_id = k.provider_id AND q.person_id = s.id
                LIMIT 1
            ) AS p
            """
        ),
        {"group": group, "provider_ids": list(provider_ids), "identifiers": list(identifiers)},
    )
    # Positional: a row's mapping costs more than the row (columns in the fields' order).
    return [Existing(*r) for r in rows]


async def record_prospects(
    conn: AsyncConnection, group: str, job_id: str, prospects: Sequence[Existing]
) -> None:
    """The job's prospects, with what its enrichment stage will ask the provider about."""
    await conn.execute(
        text(
            """
            INSERT INTO prospecting_job_prospects
                (job_id, account_group_id, prospect_id, provider_id, public_identifier)
            SELECT :job, :group, p.id, p.provider_id, p.public_identifier
            FROM unnest(CAST(:ids AS text[]), CAST(:provider_ids AS text[]),
                        CAST(:identifiers AS text[])) AS p(id, provider_id, public_identifier)
            ON CONFLICT DO NOTHING
            """
        ),
        {
            "job": job_id,
            "group": group,
            "ids": [p.prospect_id for p in prospects],
            "provider_ids": [p.provider_id for p in prospects],
            "identifiers": [p.public_identifier for p in prospects],
        },
    )


@dataclass(frozen=True)
class Written:
    """What a commit's pages wrote, and the credits it charged for them."""

    created: int
    updated: int
    unchanged: int
    charged: int


@dataclass(frozen=True)
class PagesResult:
    pages: int  # provider pages committed together
    found: int  # profiles they brought
    cursor: str | None  # where the next page starts
    progress: float
    last: bool  # the import stage ends with these pages; enrichment starts


async def pages_committed(
    conn: AsyncConnection, group: str, job_id: str, pages: PagesResult, written: Written
) -> None:
    await conn.execute(
        text(
            """
            UPDATE prospecting_jobs
            SET found = found + :found, created = created + :created,
                updated = updated + :updated, unchanged = unchanged + :unchanged,
                credits_charged = credits_charged + :charged,
                pages_done = pages_done + :pages, resume_cursor = :cursor,
                import_progress = :progress, updated_at = now(),
                import_status = CASE WHEN :last THEN 'completed' ELSE import_status END,
                enrichment_status = CASE WHEN :last THEN 'running' ELSE enrichment_status END
            WHERE id = :id AND account_group_id = :group
            """
        ),
        {
            "id": job_id,
            "group": group,
            "pages": pages.pages,
            "found": pages.found,
            "created": written.created,
            "updated": written.updated,
            "unchanged": written.unchanged,
            "charged": written.charged,
            "cursor": None if pages.last else pages.cursor,
            "progress": 1.0 if pages.last else pages.progress,
            "last": pages.last,
        },
    )


@dataclass(frozen=True)
class ToEnrich:
    prospect_id: str
    provider_id: str
    public_identifier: str | None


async def count_job_prospects(
    conn: AsyncConnection, group: str, job_id: str, up_to: str | None = None
) -> int:
    """The job's prospects (those with an id up to `up_to`, when given)."""
    value = await conn.scalar(
        text(
            "SELECT count(*) FROM prospecting_job_prospects"
            " WHERE job_id = :job AND account_group_id = :group"
            " AND (CAST(:up_to AS text) IS NULL OR prospect_id <= :up_to)"
        ),
        {"job": job_id, "group": group, "up_to": up_to},
    )
    return int(value or 0)


async def next_to_enrich(
    conn: AsyncConnection, group: str, job_id: str, after: str | None, limit: int
) -> list[ToEnrich]:
    # The job's own rows only (its primary key's order), never the prospects: a group the
    # planner believes tiny (a new one, which the job is filling) was read whole for every id
    # when they were joined. '' sorts before every id: "from the start".
    rows = await conn.execute(
        text(
            """
            SELECT prospect_id, provider_id, public_identifier
            FROM prospecting_job_prospects
            WHERE job_id = :job AND account_group_id = :group
              AND prospect_id > coalesce(CAST(:after AS text), '')
            ORDER BY prospect_id
            LIMIT :limit
            """
        ),
        {"job": job_id, "group": group, "after": after, "limit": limit},
    )
    return [ToEnrich(*r) for r in rows]  # columns in the fields' order


async def enrich_prospects(
    conn: AsyncConnection,
    group: str,
    updates: Sequence[tuple[str, str | None, str | None, str | None]],
    with_email: bool,
) -> int:
    """(prospect id, company, title, work email): fill what the provider knows (a None keeps
    the prospect's value); `updated_at` moves only for a prospect that changed."""
    if not updates:
        return 0
    ids, companies, titles, emails = (list(column) for column in zip(*updates, strict=True))
    result = await conn.execute(
        text(
            """
            UPDATE prospects p
            SET company_name = coalesce(u.company, p.company_name),
                title = coalesce(u.title, p.title),
                work_email = CASE WHEN :with_email THEN coalesce(u.email, p.work_email)
                                  ELSE p.work_email END,
                updated_at = now()
            FROM unnest(CAST(:ids AS text[]), CAST(:companies AS text[]),
                        CAST(:titles AS text[]), CAST(:emails AS text[]))
                 AS u(id, company, title, email)
            WHERE p.account_group_id = :group AND p.id = u.id
              AND (p.company_name, p.title, p.work_email) IS DISTINCT FROM
                  (coalesce(u.company, p.company_name), coalesce(u.title, p.title),
                   CASE WHEN :with_email THEN coalesce(u.email, p.work_email)
                        ELSE p.work_email END)
            """
        ),
        {
            "group": group,
            "ids": ids,
            "companies": companies,
            "titles": titles,
            "emails": emails,
            "with_email": with_email,
        },
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def enrichment_done(
    conn: AsyncConnection, group: str, job_id: str, last_prospect_id: str, progress: float
) -> None:
    # The import stage is over: its cursor slot holds the enrichment's resume point.
    await conn.execute(
        text(
            "UPDATE prospecting_jobs SET enrichment_progress = :progress,"
            " resume_cursor = :cursor, updated_at = now()"
            " WHERE id = :id AND account_group_id = :group"
        ),
        {
            "id": job_id,
            "group": group,
            "progress": progress,
            "cursor": ENRICH_CURSOR + last_prospect_id,
        },
    )


ENRICH_CURSOR = "enrich:"


async def complete(conn: AsyncConnection, group: str, job_id: str) -> None:
    await conn.execute(
        text(
            """
            UPDATE prospecting_jobs
            SET status = 'completed', finished_at = now(), updated_at = now(),
                import_status = 'completed', import_progress = 1,
                enrichment_status = 'completed', enrichment_progress = 1, resume_cursor = NULL
            WHERE id = :id AND account_group_id = :group
            """
        ),
        {"id": job_id, "group": group},
    )


async def fail(conn: AsyncConnection, group: str, job_id: str, code: str, message: str) -> None:
    """The stage that was running failed; the other keeps its status."""
    await conn.execute(
        text(
            """
            UPDATE prospecting_jobs
            SET status = 'failed', finished_at = now(), updated_at = now(),
                error_code = :code, error_message = :message,
                import_status = CASE WHEN import_status = 'running' THEN 'failed'
                                     ELSE import_status END,
                enrichment_status = CASE WHEN enrichment_status = 'running' THEN 'failed'
                                         ELSE enrichment_status END
            WHERE id = :id AND account_group_id = :group
            """
        ),
        {"id": job_id, "group": group, "code": code, "message": message},
    )


async def orphans(conn: AsyncConnection, limit: int = 500) -> list[str]:
    """Unfinished jobs with no live queue entry (neither waiting nor being run): the API
    crashed between its commit and its defer, or a queue entry ended without the job."""
    rows = await conn.execute(
        text(
            """
            SELECT j.id FROM prospecting_jobs j
            WHERE j.status IN ('queued', 'running')
              AND NOT EXISTS (
                  SELECT 1 FROM procrastinate_jobs q
                  WHERE q.lock = j.id AND q.status IN ('todo', 'doing'))
            ORDER BY j.created_at
            LIMIT :limit
            """
        ),
        {"limit": limit},
    )
    return [r[0] for r in rows]


async def status_counts(conn: AsyncConnection) -> dict[str, int]:
    """Jobs per status, for the metrics."""
    rows = await conn.execute(text("SELECT status, count(*) FROM prospecting_jobs GROUP BY status"))
    return {r[0]: int(r[1]) for r in rows}
