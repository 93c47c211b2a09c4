"""POST/GET /v1/accounts/{accountGroupId}/prospecting[/{jobId}[/cancel]].

The normal FastAPI stack (not the lookup's DirectRoute). Path, query and body are declared
for the document only: the endpoints read them raw and validate them in the service, after
the dependency (401 → 429 → 403 PERMISSION_DENIED) and in the contract's order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any, ClassVar

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

# Registers the `anytext` path convertor the paths below use (whatever the import order).
import sonarly_api.prospects.router  # noqa: F401
from sonarly_api.auth.dependencies import require
from sonarly_api.auth.principal import Principal
from sonarly_api.envelope import success_response
from sonarly_api.openapi import error_responses
from sonarly_api.prospecting import docs, service
from sonarly_api.prospecting.idempotency import is_finished
from sonarly_api.prospecting.schemas import (
    ProspectingJobCancelSuccessResponse,
    ProspectingJobListSuccessResponse,
    ProspectingJobStartSuccessResponse,
    ProspectingJobStatusSuccessResponse,
)
from sonarly_api.prospecting.validation import DEFAULT_LIMIT, MAX_LIMIT
from sonarly_api.timestamps import iso_millis


class JobRoute(APIRoute):
    """A 405 lists every method of the path, not only this route's: the list and the start
    share one path, and Starlette answers a method neither has (e.g. OPTIONS) from the first
    route whose path matches, so `Allow` would name only that route's method."""

    methods_by_path: ClassVar[dict[str, set[str]]] = {}

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.methods_by_path.setdefault(self.path, set()).update(self.methods or ())

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.methods and scope["method"] not in self.methods:
            allowed = ", ".join(sorted(self.methods_by_path[self.path]))
            raise HTTPException(status_code=405, headers={"Allow": allowed})
        await super().handle(scope, receive, send)


logger = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["Prospecting jobs"], route_class=JobRoute)

# How long a client should wait before polling a job that is not finished.
RETRY_AFTER_SECONDS = "2"

# `anytext` (registered by the lookup's router) also matches a decoded %2F or newline in the
# group id: such a request gets the contract's 400, not a 404 for a missed route.
_BASE = "/accounts/{accountGroupId:anytext}/prospecting"

AccountGroupId = Annotated[
    str,
    Path(
        alias="accountGroupId",
        description="Account group ID that scopes the request.",
        json_schema_extra=docs.ID_SCHEMA,
    ),
]
JobId = Annotated[
    str,
    Path(
        alias="jobId", description="The job's id, from its start.", json_schema_extra=docs.ID_SCHEMA
    ),
]


def _job_location(account_group_id: str, job_id: str) -> str:
    return f"/v1/accounts/{account_group_id}/prospecting/{job_id}"


@router.post(
    _BASE,
    status_code=202,
    response_model=ProspectingJobStartSuccessResponse,
    responses={
        **docs.START_RESPONSES,
        **error_responses(400, 401, 402, 403, 409, 429, 500, 502, 503),
        **docs.START_ERROR_RESPONSES,
    },
    operation_id="startProspectingJob",
    summary="Start a prospecting job",
    response_description="The job was queued",
    openapi_extra=docs.START_REQUEST_BODY,
)
async def start_prospecting_job(
    request: Request,
    principal: Annotated[Principal, Depends(require("prospecting:write"))],
    account_group_id: AccountGroupId,
) -> Response:
    """Start an asynchronous prospecting job: 202 with the job's id; poll its `Location`.

    Reserves the job's worst case in credits (`maxResults`, or the number of URLs, times 2
    with `searchEmails`). With an `Idempotency-Key`, the same body sent again returns the
    same job (`Idempotent-Replayed: true`), another body is 409 `IDEMPOTENCY_KEY_REUSED`.
    A source read through LinkedIn (every one but `url_upload`) needs a connected LinkedIn
    account (409 `LINKEDIN_NOT_CONNECTED`); a `leadListId` or `savedSearchId` must be one of
    the group's Sales Navigator listings (400); 502 `UPSTREAM_ERROR` when the data provider
    cannot say.
    """
    outcome = await service.start_job(
        request.app.state.sonarly.db,
        request.app.state.sonarly.provider,
        principal,
        account_group_id,
        await request.body(),
        request.headers.get("idempotency-key"),
    )
    job = outcome.job
    request.state.job_id = job.id  # the access log's jobId
    if not outcome.replayed:
        await _queue(request, job.id)
    group = account_group_id.lower()
    headers = {"Location": _job_location(group, job.id)}
    finished = is_finished(job.status)
    if not finished:
        headers["Retry-After"] = RETRY_AFTER_SECONDS
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    response = success_response(
        {"jobId": job.id, "status": job.status, "createdAt": iso_millis(job.created_at)},
        headers=headers,
    )
    response.status_code = 200 if outcome.replayed and finished else 202
    return response


@router.get(
    _BASE,
    response_model=ProspectingJobListSuccessResponse,
    responses=error_responses(400, 401, 403, 429, 500, 503),
    operation_id="listProspectingJobs",
    summary="List prospecting jobs",
    response_description="The account group's jobs, newest first",
)
async def list_prospecting_jobs(
    request: Request,
    principal: Annotated[Principal, Depends(require("prospecting:read"))],
    account_group_id: AccountGroupId,
    # Documented only (typed `Any`, so FastAPI converts nothing): read raw from the query in
    # the service, after the account group check.
    cursor: Annotated[
        Any,
        Query(
            description="Opaque cursor from a previous page; empty: the first page.",
            json_schema_extra={"type": "string"},
        ),
    ] = None,
    limit: Annotated[
        Any,
        Query(
            description="Page size.",
            json_schema_extra={
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_LIMIT,
                "default": DEFAULT_LIMIT,
            },
        ),
    ] = None,
    status: Annotated[
        Any,
        Query(
            description="Only jobs in this status.",
            json_schema_extra={"type": "string", "enum": list(docs.STATUSES)},
        ),
    ] = None,
) -> Response:
    """The account group's prospecting jobs, newest first, `limit` per page."""
    page = await service.list_jobs(
        request.app.state.sonarly.db, principal, account_group_id, request.query_params
    )
    return success_response(page)


@router.get(
    _BASE + "/{jobId}",
    response_model=ProspectingJobStatusSuccessResponse,
    responses={**docs.STATUS_RESPONSES, **error_responses(400, 401, 403, 404, 429, 500, 503)},
    operation_id="getProspectingJob",
    summary="Get a prospecting job",
    response_description="The job's status, stages, counts and credits",
)
async def get_prospecting_job(
    request: Request,
    principal: Annotated[Principal, Depends(require("prospecting:read"))],
    account_group_id: AccountGroupId,
    job_id: JobId,
) -> Response:
    """A job's status; `Retry-After` while it is not finished."""
    data = await service.job_status(
        request.app.state.sonarly.db, principal, account_group_id, job_id
    )
    headers = None if is_finished(data["status"]) else {"Retry-After": RETRY_AFTER_SECONDS}
    return success_response(data, headers=headers)


@router.post(
    _BASE + "/{jobId}/cancel",
    response_model=ProspectingJobCancelSuccessResponse,
    responses=error_responses(400, 401, 403, 404, 422, 429, 500, 503),
    operation_id="cancelProspectingJob",
    summary="Cancel a prospecting job",
    response_description="The job is cancelled",
)
async def cancel_prospecting_job(
    request: Request,
    principal: Annotated[Principal, Depends(require("prospecting:write"))],
    account_group_id: AccountGroupId,
    job_id: JobId,
) -> Response:
    """Cancel a `queued` or `running` job; what it wrote before stays (and is charged), the
    rest of its reservation is released. Any other status is 422."""
    data = await service.cancel_job(
        request.app.state.sonarly.db, principal, account_group_id, job_id
    )
    return success_response(data)


async def _queue(request: Request, job_id: str) -> None:
    """Hand the committed job to the workers. Should this fail (or the process die first),
    the workers' reconcile loop queues it within seconds: the job row is the truth."""
    try:
        await request.app.state.sonarly.job_queue.defer(job_id)
    except Exception as exc:
        logger.warning("job %s not queued now (%s): reconciled later", job_id, type(exc).__name__)
