"""SQL of the job endpoints. Every query takes the account group id: a job of another group
is invisible, not forbidden."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, case, func, insert, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from sonarly_api.accounts.models import AccountGroup
from sonarly_api.ids import new_id
from sonarly_api.prospecting.models import ProspectingIdempotencyKey, ProspectingJob

ACTIVE = ("queued", "running")
FINISHED = ("completed", "failed", "cancelled")

J = ProspectingJob
IK = ProspectingIdempotencyKey


@dataclass(frozen=True)
class JobHead:
    """What a start (or its replay) answers."""

    id: str
    status: str
    created_at: datetime


async def plan_of(conn: AsyncConnection, account_group_id: str) -> str | None:
    row = (
        await conn.execute(select(AccountGroup.plan).where(AccountGroup.id == account_group_id))
    ).one_or_none()
    return None if row is None else str(row[0])


async def insert_job(
    conn: AsyncConnection,
    account_group_id: str,
    api_key_id: str,
    source: dict[str, Any],
    max_results: int,
    search_emails: bool,
    credits_reserved: int,
) -> JobHead:
    row = (
        await conn.execute(
            insert(J)
            .values(
                id=new_id(),
                account_group_id=account_group_id,
                api_key_id=api_key_id,
                source=source,
                max_results=max_results,
                search_emails=search_emails,
                credits_reserved=credits_reserved,
            )
            .returning(J.id, J.status, J.created_at)
        )
    ).one()
    return JobHead(*row)


async def claim_idempotency_key(
    conn: AsyncConnection,
    api_key_id: str,
    account_group_id: str,
    key: str,
    request_hash: bytes,
    job_id: str,
) -> bool:
    """Whether this transaction now holds the key. When another transaction holds it
    uncommitted, PostgreSQL makes this statement wait for its outcome: False once it
    committed (read the winner with `find_idempotency_key`), True if it rolled back."""
    row = (
        await conn.execute(
            pg_insert(ProspectingIdempotencyKey)
            .values(
                api_key_id=api_key_id,
                account_group_id=account_group_id,
                key=key,
                request_hash=request_hash,
                job_id=job_id,
            )
            .on_conflict_do_nothing()
            .returning(ProspectingIdempotencyKey.job_id)
        )
    ).one_or_none()
    return row is not None


async def find_idempotency_key(
    conn: AsyncConnection, api_key_id: str, account_group_id: str, key: str
) -> tuple[bytes, JobHead] | None:

    row = (
        await conn.execute(
            select(IK.request_hash, J.id, J.status, J.created_at)
            .join(J, J.id == IK.job_id)
            .where(
                IK.api_key_id == api_key_id,
                IK.account_group_id == account_group_id,
                IK.key == key,
                J.account_group_id == account_group_id,
            )
        )
    ).one_or_none()
    if row is None:
        return None
    return bytes(row[0]), JobHead(row[1], row[2], row[3])


_STATUS_COLUMNS = (
    J.id,
    J.status,
    J.source,
    J.max_results,
    J.search_emails,
    J.created_at,
    J.updated_at,
    J.started_at,
    J.finished_at,
    J.import_status,
    J.import_progress,
    J.enrichment_status,
    J.enrichment_progress,
    J.found,
    J.created,
    J.updated,
    J.unchanged,
    J.failed,
    J.credits_reserved,
    J.credits_charged,
    J.error_code,
    J.error_message,
)


async def get_job(conn: AsyncConnection, account_group_id: str, job_id: str) -> Row[Any] | None:
    return (
        await conn.execute(
            select(*_STATUS_COLUMNS).where(J.account_group_id == account_group_id, J.id == job_id)
        )
    ).one_or_none()


async def list_jobs(
    conn: AsyncConnection,
    account_group_id: str,
    status: str | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> Sequence[Row[str, str, datetime, datetime]]:
    """Newest first, (created_at, id) descending: the keyset of the list's cursor, served by
    ix_prospecting_jobs_account_group_id_created_at_id."""
    stmt = (
        select(J.id, J.status, J.created_at, J.updated_at)
        .where(J.account_group_id == account_group_id)
        .order_by(J.created_at.desc(), J.id.desc())
        .limit(limit)
    )
    if status is not None:
        stmt = stmt.where(J.status == status)
    if after is not None:
        stmt = stmt.where(tuple_(J.created_at, J.id) < tuple_(*after))
    return (await conn.execute(stmt)).all()


def _stage_cancelled(column: Any) -> Any:
    return case((column.in_(ACTIVE), "cancelled"), else_=column)


async def cancel_job(conn: AsyncConnection, account_group_id: str, job_id: str) -> bool:
    """Cancel a queued or running job. A worker's page locks the row and checks the status in
    its own transaction, so once this commits no page commits after it; if a page or the
    completion holds the row, this waits and then re-reads it (READ COMMITTED): exactly one
    of the two wins."""
    row = (
        await conn.execute(
            update(J)
            .where(J.account_group_id == account_group_id, J.id == job_id, J.status.in_(ACTIVE))
            .values(
                status="cancelled",
                finished_at=func.now(),
                updated_at=func.now(),
                import_status=_stage_cancelled(J.import_status),
                enrichment_status=_stage_cancelled(J.enrichment_status),
            )
            .returning(J.id)
        )
    ).one_or_none()
    return row is not None


async def job_status(conn: AsyncConnection, account_group_id: str, job_id: str) -> str | None:
    row = (
        await conn.execute(
            select(J.status).where(J.account_group_id == account_group_id, J.id == job_id)
        )
    ).one_or_none()
    return None if row is None else str(row[0])
