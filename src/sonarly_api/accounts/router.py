"""GET /v1/accounts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from sonarly_api.accounts.schemas import AccountGroupListSuccessResponse
from sonarly_api.accounts.service import granted_account_groups
from sonarly_api.auth.dependencies import authenticated
from sonarly_api.auth.principal import Principal
from sonarly_api.envelope import success_response
from sonarly_api.openapi import error_responses
from sonarly_api.pagination import DEFAULT_LIMIT, MAX_LIMIT

router = APIRouter(prefix="/v1", tags=["Accounts"])


@router.get(
    "/accounts",
    response_model=AccountGroupListSuccessResponse,
    responses=error_responses(401, 422, 429, 500, 503),
    operation_id="listAccountGroups",
    summary="List account groups",
)
async def list_account_groups(
    request: Request,
    principal: Annotated[Principal, Depends(authenticated)],
    cursor: Annotated[str | None, Query(description="Opaque cursor from a previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size.")] = DEFAULT_LIMIT,
) -> Response:
    """List the account groups this API key may use."""
    page = await granted_account_groups(request.app.state.sonarly.db, principal, cursor, limit)
    return success_response(page)
