"""Use cases of the job endpoints: start, status, list, cancel.

Each runs the contract's order of checks from the point the route's dependency left it
(401, 429 and 403 PERMISSION_DENIED are done): 400 path ids → 403 ACCOUNT_GROUP_FORBIDDEN →
400 body/query → 404 → 409 → 402 → success.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from sonarly_api.auth.principal import Principal
from sonarly_api.credits import service as credits
from sonarly_api.credits.plans import MAX_RESULTS_CAP
from sonarly_api.db import Database
from sonarly_api.errors import AccountGroupForbidden, BadRequest, NotFound, ValidationFailed
from sonarly_api.ids import is_id
from sonarly_api.linkedin.connections import require_connected
from sonarly_api.linkedin.service import check_sales_navigator_source
from sonarly_api.prospecting import idempotency, repository, validation
from sonarly_api.prospecting.repository import JobHead
from sonarly_api.prospecting.validation import StartRequest
from sonarly_api.providers.base import Provider
from sonarly_api.timestamps import iso_millis


class JobNotFound(NotFound):
    def __init__(self) -> None:
        # The same words for an unknown id and another group's job: nothing to probe.
        super().__init__("jobId: no prospecting job with this id in this account group.")


@dataclass(frozen=True)
class StartOutcome:
    job: JobHead
    replayed: bool


class _KeyTakenMeanwhile(Exception):
    """Another request with the same Idempotency-Key committed its job first."""


def _max_results(request: StartRequest, plan: str) -> int:
    if request.kind == "url_upload":
        return len(request.source["profileUrls"])
    cap = MAX_RESULTS_CAP[plan]  # type: ignore[index]
    if request.max_results is None:
        return cap
    if request.max_results > cap:
        raise BadRequest(
            f"maxResults: must be at most {cap}, the cap of the account group's {plan} plan; "
            f"got {request.max_results}."
        )
    return request.max_results


def credits_needed(max_results: int, search_emails: bool) -> int:
    """The worst case a job reserves: one credit per prospect written, two with emails."""
    return max_results * (2 if search_emails else 1)


async def check_source(
    db: Database, provider: Provider, group: str, source: dict[str, Any]
) -> None:
    """What only the provider can say about a valid body, before anything is reserved:
    409 LINKEDIN_NOT_CONNECTED for a source that reads LinkedIn through the group's account
    (url_upload reads public profiles: no account needed), 400 naming `leadListId` or
    `savedSearchId` when it is not one of the group's listings, 502 when the provider fails."""
    kind = source["source"]
    if kind == "url_upload":
        return
    if kind == "sales_navigator":
        await check_sales_navigator_source(
            db,
            provider,
            group,
            lead_list_id=source.get("leadListId"),
            saved_search_id=source.get("savedSearchId"),
        )
        return
    await require_connected(db, provider, group)


async def _replay_or_plan(
    db: Database, principal: Principal, group: str, request: StartRequest, key: str | None
) -> StartOutcome | None:
    """The replay of `key`, when it names a job already (so a replay never calls the
    provider), after the checks that come before it (403, the plan's cap). None: no replay."""

    async def read(conn: AsyncConnection) -> tuple[str | None, tuple[bytes, JobHead] | None]:
        plan = await repository.plan_of(conn, group)
        if plan is None or key is None:
            return plan, None
        return plan, await repository.find_idempotency_key(conn, principal.key_id, group, key)

    plan, found = await db.read(read)
    if plan is None:  # deleted since the key's grants were cached
        raise AccountGroupForbidden()
    max_results = _max_results(request, plan)
    if found is None:
        return None
    request_hash = idempotency.request_hash(request, max_results)
    return StartOutcome(idempotency.replay(found[0], request_hash, found[1]), True)


async def start_job(
    db: Database,
    provider: Provider,
    principal: Principal,
    raw_account_group_id: str,
    body: bytes,
    raw_idempotency_key: str | None,
) -> StartOutcome:
    group = validation.path_id(raw_account_group_id, "accountGroupId")
    principal.ensure_account_group(group)
    request = validation.start_request(body)
    key = validation.idempotency_key(raw_idempotency_key)
    replayed = await _replay_or_plan(db, principal, group, request, key)
    if replayed is not None:
        return replayed
    # No transaction is open while the provider answers (it may take seconds).
    await check_source(db, provider, group, request.source)
    try:
        async with db.engine.begin() as conn:
            plan = await repository.plan_of(conn, group)
            if plan is None:  # deleted since the key's grants were cached
                raise AccountGroupForbidden()
            max_results = _max_results(request, plan)
            request_hash = idempotency.request_hash(request, max_results)
            if key is not None:
                found = await repository.find_idempotency_key(conn, principal.key_id, group, key)
                if found is not None:
                    return StartOutcome(idempotency.replay(found[0], request_hash, found[1]), True)
            job = await repository.insert_job(
                conn,
                group,
                principal.key_id,
                request.source,
                max_results,
                request.search_emails,
                credits_needed(max_results, request.search_emails),
            )
            # The key before the credits: a request that lost the key to a concurrent one
            # answers as its replay, never with a 402 for credits the winner took.
            if key is not None and not await repository.claim_idempotency_key(
                conn, principal.key_id, group, key, request_hash, job.id
            ):
                raise _KeyTakenMeanwhile()
            await credits.reserve(
                conn, group, job.id, credits_needed(max_results, request.search_emails)
            )
    except _KeyTakenMeanwhile:
        assert key is not None
        winner = await db.read(repository.find_idempotency_key, principal.key_id, group, key)
        assert winner is not None, "a committed key row is never deleted while its job lives"
        return StartOutcome(idempotency.replay(winner[0], request_hash, winner[1]), True)
    return StartOutcome(job, False)


def _stage(status: str, progress: float) -> dict[str, Any]:
    return {"status": status, "progress": progress}


def _iso(value: datetime | None) -> str | None:
    return None if value is None else iso_millis(value)


async def job_status(
    db: Database, principal: Principal, raw_account_group_id: str, raw_job_id: str
) -> dict[str, Any]:
    """The `data` of GET …/prospecting/{jobId} (shape: schemas.ProspectingJobStatus)."""
    group = validation.path_id(raw_account_group_id, "accountGroupId")
    job_id = validation.path_id(raw_job_id, "jobId")
    principal.ensure_account_group(group)
    row = await db.read(repository.get_job, group, job_id)
    if row is None:
        raise JobNotFound()
    error = None
    if row.error_code is not None:
        error = {"code": row.error_code, "message": row.error_message or ""}
    return {
        "jobId": row.id,
        "type": "prospecting",
        "status": row.status,
        "source": row.source,
        "maxResults": row.max_results,
        "searchEmails": row.search_emails,
        "createdAt": iso_millis(row.created_at),
        "updatedAt": iso_millis(row.updated_at),
        "startedAt": _iso(row.started_at),
        "finishedAt": _iso(row.finished_at),
        "stages": {
            "import": _stage(row.import_status, row.import_progress),
            "enrichment": _stage(row.enrichment_status, row.enrichment_progress),
        },
        "counts": {
            "found": row.found,
            "created": row.created,
            "updated": row.updated,
            "unchanged": row.unchanged,
            "failed": row.failed,
        },
        "credits": {"reserved": row.credits_reserved, "charged": row.credits_charged},
        "error": error,
    }


# The list's cursor: the group it was issued for and the (created_at, id) of the page's last
# job. A cursor of another endpoint or another group is refused rather than misread.
_CURSOR_VERSION = "pj1"


def encode_cursor(account_group_id: str, created_at: datetime, job_id: str) -> str:
    micros = int(created_at.timestamp()) * 1_000_000 + created_at.microsecond
    raw = f"{_CURSOR_VERSION}:{account_group_id}:{micros}:{job_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(account_group_id: str, cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, group, micros, job_id = raw.split(":")
        seconds, rest = divmod(int(micros), 1_000_000)
        created_at = datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest)
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError, OSError):
        version = group = job_id = ""
        created_at = datetime.min
    if version != _CURSOR_VERSION or group != account_group_id or not is_id(job_id):
        raise BadRequest("cursor: not a cursor returned by this list for this account group.")
    return created_at, job_id


async def list_jobs(
    db: Database, principal: Principal, raw_account_group_id: str, params: Any
) -> dict[str, Any]:
    """The `data` of GET …/prospecting (shape: schemas.ProspectingJobPage)."""
    group = validation.path_id(raw_account_group_id, "accountGroupId")
    principal.ensure_account_group(group)
    query = validation.list_query(params)
    after = None if query.cursor is None else decode_cursor(group, query.cursor)
    rows = await db.read(repository.list_jobs, group, query.status, after, query.limit + 1)
    page, has_more = rows[: query.limit], len(rows) > query.limit
    return {
        "items": [
            {
                "jobId": r.id,
                "type": "prospecting",
                "status": r.status,
                "createdAt": iso_millis(r.created_at),
                "updatedAt": iso_millis(r.updated_at),
            }
            for r in page
        ],
        "nextCursor": encode_cursor(group, page[-1].created_at, page[-1].id) if has_more else None,
        "hasMore": has_more,
    }


async def cancel_job(
    db: Database, principal: Principal, raw_account_group_id: str, raw_job_id: str
) -> dict[str, Any]:
    """Cancel and release the rest of the job's reservation, in one transaction."""
    group = validation.path_id(raw_account_group_id, "accountGroupId")
    job_id = validation.path_id(raw_job_id, "jobId")
    principal.ensure_account_group(group)
    async with db.engine.begin() as conn:
        if await repository.cancel_job(conn, group, job_id):
            await credits.release(conn, group, job_id)
            return {"jobId": job_id, "status": "cancelled"}
        status = await repository.job_status(conn, group, job_id)
    if status is None:
        raise JobNotFound()
    raise ValidationFailed(
        f"jobId: the job is {status}; only a queued or running job can be cancelled."
    )
