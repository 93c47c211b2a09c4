"""Wire schemas of the job endpoints, named as the reference names them.

The answers are built as plain dicts (service.py); these models document them. The start
body is documented as a hand-written JSON Schema (START_REQUEST_SCHEMA) that FastAPI never
enforces: the endpoint validates the body itself, after authentication (validation.py).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from sonarly_api.envelope import TRACE_ID_EXAMPLE, CamelModel
from sonarly_api.prospecting import urls
from sonarly_api.prospecting.validation import MAX_PROFILE_URLS, SALES_NAVIGATOR_ID_PATTERN

JobStatus = Literal["queued", "running", "completed", "failed", "cancelled"]
JOB_ID_EXAMPLE = "665f1c2ab4e3a91d07c2f4e1"
CREATED_EXAMPLE = "2026-04-28T15:30:00.000Z"
MAX_CAP = 2000  # the largest plan's cap (scale, enterprise)


class LinkedinSearchSource(CamelModel):
    source: Literal["linkedin_search"]
    search_url: str = Field(
        examples=["https://www.linkedin.com/search/results/people/?keywords=cto"]
    )


class SalesNavigatorSavedSearchSource(CamelModel):
    source: Literal["sales_navigator"]
    saved_search_id: str = Field(examples=["51234567"])


class SalesNavigatorLeadListSource(CamelModel):
    source: Literal["sales_navigator"]
    lead_list_id: str = Field(examples=["7061234567890123456"])


class PostCommentersSource(CamelModel):
    source: Literal["post_commenters"]
    post_url: str = Field(examples=["https://www.linkedin.com/posts/avery-stone_launch-123"])


class UrlUploadSource(CamelModel):
    source: Literal["url_upload"]
    profile_urls: list[str] = Field(examples=[["https://www.linkedin.com/in/avery-stone"]])


ProspectingSource = (
    LinkedinSearchSource
    | SalesNavigatorSavedSearchSource
    | SalesNavigatorLeadListSource
    | PostCommentersSource
    | UrlUploadSource
)


class ProspectingJobStart(CamelModel):
    job_id: str = Field(examples=[JOB_ID_EXAMPLE])
    status: JobStatus = Field(
        description="`queued` for a new job; a replay shows the job's current status.",
        examples=["queued"],
    )
    created_at: str = Field(examples=[CREATED_EXAMPLE])


class ProspectingJobStartSuccessResponse(CamelModel):
    success: Literal[True]
    data: ProspectingJobStart
    error: None
    trace_id: str = Field(examples=[TRACE_ID_EXAMPLE])


class ProspectingJobStage(CamelModel):
    status: JobStatus
    progress: float = Field(ge=0, le=1, examples=[0.82])


class ProspectingJobStages(CamelModel):
    import_: ProspectingJobStage = Field(alias="import")
    enrichment: ProspectingJobStage


class ProspectingJobCounts(CamelModel):
    found: int = Field(ge=0, description="Profiles the source gave.")
    created: int = Field(ge=0, description="Prospects created.")
    updated: int = Field(ge=0, description="Existing prospects whose fields changed.")
    unchanged: int = Field(ge=0, description="Existing prospects already up to date (free).")
    failed: int = Field(ge=0, description="Profiles that could not be written.")


class ProspectingJobCredits(CamelModel):
    reserved: int = Field(ge=0, description="Reserved at start (the worst case); never changes.")
    charged: int = Field(ge=0, description="Charged so far; final once the job is.")


class ProspectingJobError(CamelModel):
    code: str = Field(examples=["UPSTREAM_ERROR"])
    message: str = Field(examples=["The prospect provider did not answer in time."])


class ProspectingJobStatus(CamelModel):
    job_id: str = Field(examples=[JOB_ID_EXAMPLE])
    type: Literal["prospecting"]
    status: JobStatus
    source: ProspectingSource = Field(description="The source as requested (URLs normalised).")
    max_results: int = Field(ge=1)
    search_emails: bool
    created_at: str = Field(examples=[CREATED_EXAMPLE])
    updated_at: str = Field(examples=[CREATED_EXAMPLE])
    started_at: str | None = Field(examples=[CREATED_EXAMPLE])
    finished_at: str | None = Field(examples=[None])
    stages: ProspectingJobStages
    counts: ProspectingJobCounts
    credits: ProspectingJobCredits
    error: ProspectingJobError | None = Field(description="Set for a failed job only.")


class ProspectingJobStatusSuccessResponse(CamelModel):
    success: Literal[True]
    data: ProspectingJobStatus
    error: None
    trace_id: str = Field(examples=[TRACE_ID_EXAMPLE])


class ProspectingJobListItem(CamelModel):
    job_id: str = Field(examples=[JOB_ID_EXAMPLE])
    type: Literal["prospecting"]
    status: JobStatus
    created_at: str = Field(examples=[CREATED_EXAMPLE])
    updated_at: str = Field(examples=[CREATED_EXAMPLE])


class ProspectingJobPage(CamelModel):
    items: list[ProspectingJobListItem]
    next_cursor: str | None = Field(examples=[None])
    has_more: bool


class ProspectingJobListSuccessResponse(CamelModel):
    success: Literal[True]
    data: ProspectingJobPage
    error: None
    trace_id: str = Field(examples=[TRACE_ID_EXAMPLE])


class ProspectingJobCancel(CamelModel):
    job_id: str = Field(examples=[JOB_ID_EXAMPLE])
    status: Literal["cancelled"]


class ProspectingJobCancelSuccessResponse(CamelModel):
    success: Literal[True]
    data: ProspectingJobCancel
    error: None
    trace_id: str = Field(examples=[TRACE_ID_EXAMPLE])


_MAX_RESULTS = {
    "type": "integer",
    "minimum": 1,
    "maximum": MAX_CAP,
    "description": "1 to the plan's cap (tester 100, starter 1000, scale and enterprise 2000); "
    "default: the cap.",
}
_IGNORED_MAX_RESULTS = {
    "type": "integer",
    "description": "Ignored: the job's size is the number of distinct URLs.",
}


def _variant(source: str, inputs: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["source", *required],
        "properties": {
            "source": {"type": "string", "enum": [source]},
            **inputs,
            "maxResults": _IGNORED_MAX_RESULTS if source == "url_upload" else _MAX_RESULTS,
            "searchEmails": {"type": "boolean", "default": False},
        },
    }


_SALES_NAVIGATOR_ID = {"type": "string", "pattern": SALES_NAVIGATOR_ID_PATTERN}

# One variant per source (sales_navigator twice: exactly one of its two ids).
START_REQUEST_SCHEMA: dict[str, Any] = {
    "title": "ProspectingJobStartRequest",
    "description": "Strict: an unknown field, a wrong type or a missing or extra source input "
    "is 400 VALIDATION_ERROR.",
    "oneOf": [
        _variant(
            "linkedin_search",
            {"searchUrl": {"type": "string", "pattern": urls.SEARCH_URL_PATTERN}},
            ["searchUrl"],
        ),
        _variant("sales_navigator", {"savedSearchId": _SALES_NAVIGATOR_ID}, ["savedSearchId"]),
        _variant("sales_navigator", {"leadListId": _SALES_NAVIGATOR_ID}, ["leadListId"]),
        _variant(
            "post_commenters",
            {"postUrl": {"type": "string", "pattern": urls.POST_URL_PATTERN}},
            ["postUrl"],
        ),
        _variant(
            "url_upload",
            {
                "profileUrls": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_PROFILE_URLS,
                    "items": {"type": "string", "pattern": urls.PROFILE_URL_PATTERN},
                    "description": "Normalised; duplicates collapse into one.",
                }
            },
            ["profileUrls"],
        ),
    ],
}

START_REQUEST_EXAMPLES: dict[str, Any] = {
    "linkedin_search": {
        "value": {
            "source": "linkedin_search",
            "searchUrl": "https://www.linkedin.com/search/results/people/?keywords=cto",
            "maxResults": 50,
            "searchEmails": False,
        }
    },
    "url_upload": {
        "value": {
            "source": "url_upload",
            "profileUrls": ["https://www.linkedin.com/in/avery-stone"],
            "searchEmails": True,
        }
    },
}
