"""GET /v1/accounts/{accountGroupId}/sales-navigator/lead-lists and …/saved-searches."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from starlette.responses import Response

from sonarly_api.auth.dependencies import require
from sonarly_api.auth.principal import Principal
from sonarly_api.envelope import success_response
from sonarly_api.linkedin.schemas import SalesNavigatorListSuccessResponse
from sonarly_api.linkedin.service import SourceKind, list_sources
from sonarly_api.openapi import error_responses
from sonarly_api.prospects.validation import ACCOUNT_GROUP_ID_SCHEMA
from sonarly_api.state import AppState

router = APIRouter(prefix="/v1", tags=["Sales Navigator"])

# json_schema_extra documents the id's rule without FastAPI enforcing it (FastAPI would answer
# before authentication, against the contract's order of checks).
AccountGroupId = Annotated[
    str,
    Path(
        alias="accountGroupId",
        description="Account group ID that scopes the request.",
        json_schema_extra=ACCOUNT_GROUP_ID_SCHEMA,
    ),
]
ReadPrincipal = Annotated[Principal, Depends(require("prospecting:read"))]
RESPONSES = error_responses(400, 401, 403, 409, 429, 500, 502, 503)
RESPONSES[409] = {**RESPONSES[409], "description": "No LinkedIn account connected to the group"}


async def _listing(
    request: Request, principal: Principal, group: str, kind: SourceKind
) -> Response:
    state: AppState = request.app.state.sonarly
    data = await list_sources(state.db, state.provider, principal, group, kind)
    return success_response(data)


@router.get(
    "/accounts/{accountGroupId}/sales-navigator/lead-lists",
    response_model=SalesNavigatorListSuccessResponse,
    responses=RESPONSES,
    operation_id="listSalesNavigatorLeadLists",
    summary="List Sales Navigator lead lists",
)
async def list_lead_lists(
    request: Request, principal: ReadPrincipal, account_group_id: AccountGroupId
) -> Response:
    """List the Sales Navigator lead lists of the group's connected LinkedIn account.

    Their ids are what a `sales_navigator` prospecting job takes as `leadListId`.
    """
    return await _listing(request, principal, account_group_id, "lead_lists")


@router.get(
    "/accounts/{accountGroupId}/sales-navigator/saved-searches",
    response_model=SalesNavigatorListSuccessResponse,
    responses=RESPONSES,
    operation_id="listSalesNavigatorSavedSearches",
    summary="List Sales Navigator saved searches",
)
async def list_saved_searches(
    request: Request, principal: ReadPrincipal, account_group_id: AccountGroupId
) -> Response:
    """List the Sales Navigator saved searches of the group's connected LinkedIn account.

    Their ids are what a `sales_navigator` prospecting job takes as `savedSearchId`.
    """
    return await _listing(request, principal, account_group_id, "saved_searches")
