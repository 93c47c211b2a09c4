"""The job endpoints' OpenAPI extras: the start body (a schema FastAPI does not enforce),
response headers, examples and the links start → get → cancel that let a client (and
Schemathesis' stateful phase) follow a job from the id its start returned."""

from __future__ import annotations

from typing import Any

from sonarly_api.envelope import ErrorResponse
from sonarly_api.openapi import EXTRA_EXAMPLES, EXTRA_SCHEMAS, reference_trace_id
from sonarly_api.prospecting.models import JOB_STATUSES
from sonarly_api.prospecting.schemas import (
    CREATED_EXAMPLE,
    JOB_ID_EXAMPLE,
    START_REQUEST_EXAMPLES,
    START_REQUEST_SCHEMA,
    ProspectingJobStartSuccessResponse,
)

STATUSES = JOB_STATUSES
ID_SCHEMA: dict[str, Any] = {"pattern": "^[0-9a-fA-F]{24}$", "minLength": 24, "maxLength": 24}
REF = "#/components/schemas/"

EXTRA_SCHEMAS["ProspectingJobStartRequest"] = START_REQUEST_SCHEMA

START_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"$ref": REF + "ProspectingJobStartRequest"},
                "examples": START_REQUEST_EXAMPLES,
            }
        },
    }
}

_JOB_FROM_BODY = {
    "accountGroupId": "$request.path.accountGroupId",
    "jobId": "$response.body#/data/jobId",
}
_LINK_GET = {"operationId": "getProspectingJob", "parameters": _JOB_FROM_BODY}
_LINK_CANCEL = {"operationId": "cancelProspectingJob", "parameters": _JOB_FROM_BODY}

_RETRY_AFTER = {
    "description": "Seconds to wait before polling the job again (while it is not finished).",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}
_START_HEADERS = {
    "Location": {
        "description": "The job's URL: /v1/accounts/{accountGroupId}/prospecting/{jobId}.",
        "schema": {"type": "string"},
    },
    "Retry-After": _RETRY_AFTER,
    "Idempotent-Replayed": {
        "description": "`true` when an Idempotency-Key replayed an existing job.",
        "schema": {"type": "string", "enum": ["true"]},
    },
}

START_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {
        "headers": _START_HEADERS,
        "links": {"StartedJobStatus": _LINK_GET, "CancelStartedJob": _LINK_CANCEL},
    },
    200: {
        "model": ProspectingJobStartSuccessResponse,
        "description": "An Idempotency-Key replayed a job that is already finished",
        "headers": _START_HEADERS,
        "links": {"ReplayedJobStatus": _LINK_GET},
    },
}
# The start's 409 and 502 (the shared table describes only one code per status).
START_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorResponse,
        "description": "`IDEMPOTENCY_KEY_REUSED`: the Idempotency-Key went with another body; "
        "or `LINKEDIN_NOT_CONNECTED`: the source reads LinkedIn and the account group has no "
        "connected LinkedIn account",
    },
    502: {
        "model": ErrorResponse,
        "description": "`UPSTREAM_ERROR`: the data provider failed while the source was "
        "checked (`details` names the class of failure)",
    },
}
STATUS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"headers": {"Retry-After": _RETRY_AFTER}, "links": {"CancelPolledJob": _LINK_CANCEL}},
}


def _success(data: dict[str, Any]) -> dict[str, Any]:
    return {"success": True, "data": data, "error": None, "traceId": reference_trace_id()}


_START_EXAMPLE = _success(
    {"jobId": JOB_ID_EXAMPLE, "status": "queued", "createdAt": CREATED_EXAMPLE}
)
EXTRA_EXAMPLES[("startProspectingJob", "202")] = _START_EXAMPLE
EXTRA_EXAMPLES[("startProspectingJob", "200")] = _success(
    {"jobId": JOB_ID_EXAMPLE, "status": "completed", "createdAt": CREATED_EXAMPLE}
)
EXTRA_EXAMPLES[("getProspectingJob", "200")] = _success(
    {
        "jobId": JOB_ID_EXAMPLE,
        "type": "prospecting",
        "status": "running",
        "source": {
            "source": "linkedin_search",
            "searchUrl": "https://www.linkedin.com/search/results/people/?keywords=cto",
        },
        "maxResults": 500,
        "searchEmails": False,
        "createdAt": CREATED_EXAMPLE,
        "updatedAt": "2026-04-28T15:30:04.210Z",
        "startedAt": "2026-04-28T15:30:00.050Z",
        "finishedAt": None,
        "stages": {
            "import": {"status": "running", "progress": 0.82},
            "enrichment": {"status": "queued", "progress": 0},
        },
        "counts": {"found": 410, "created": 380, "updated": 20, "unchanged": 10, "failed": 0},
        "credits": {"reserved": 500, "charged": 0},
        "error": None,
    }
)
EXTRA_EXAMPLES[("listProspectingJobs", "200")] = _success(
    {
        "items": [
            {
                "jobId": JOB_ID_EXAMPLE,
                "type": "prospecting",
                "status": "completed",
                "createdAt": CREATED_EXAMPLE,
                "updatedAt": "2026-04-28T15:30:09.480Z",
            }
        ],
        "nextCursor": None,
        "hasMore": False,
    }
)
EXTRA_EXAMPLES[("cancelProspectingJob", "200")] = _success(
    {"jobId": JOB_ID_EXAMPLE, "status": "cancelled"}
)
