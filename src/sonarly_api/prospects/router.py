"""GET /v1/accounts/{accountGroupId}/prospects/by-provider-id/{providerId}."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from starlette.convertors import PathConvertor, register_url_convertor
from starlette.responses import Response

from sonarly_api.auth.dependencies import require
from sonarly_api.auth.principal import Principal
from sonarly_api.envelope import success_response
from sonarly_api.openapi import error_responses
from sonarly_api.prospects import validation
from sonarly_api.prospects.schemas import ProviderIdProspectLookupSuccessResponse
from sonarly_api.prospects.service import lookup_by_provider_id
from sonarly_api.routing import DirectRoute

# DirectRoute: this is the hot path; see sonarly_api/routing.py.
router = APIRouter(prefix="/v1", tags=["Prospects"], route_class=DirectRoute)


class AnyTextConvertor(PathConvertor):
    """Starlette's `path` (a decoded %2F matches), also across a decoded %0A: `.` stops at a
    newline, so such a request missed the route and got a 404 instead of the contract's 422
    (found by tests/test_schemathesis.py)."""

    regex = "(?s:.*)"


register_url_convertor("anytext", AnyTextConvertor())


# A convertor that matches anything on both parameters: Starlette decodes %2F (and %0A) before
# routing, and a request the route misses answers 404 instead of the contract's 422.
@router.get(
    "/accounts/{accountGroupId:anytext}/prospects/by-provider-id/{providerId:anytext}",
    response_model=ProviderIdProspectLookupSuccessResponse,
    responses=error_responses(401, 403, 422, 429, 500, 503),
    operation_id="lookupProspectsByProviderId",
    summary="Lookup prospects by provider ID",
    response_description="Provider ID prospect lookup result with identity, company, and title "
    "metadata",
)
async def lookup_prospects_by_provider_id(
    request: Request,
    principal: Annotated[Principal, Depends(require("prospects:read"))],
    account_group_id: Annotated[
        str,
        # json_schema_extra documents the rules without FastAPI enforcing them (it would answer
        # 422 before authentication, against the contract's order of checks).
        Path(
            alias="accountGroupId",
            description="Account group ID that scopes the request.",
            json_schema_extra=validation.ACCOUNT_GROUP_ID_SCHEMA,
        ),
    ],
    provider_id: Annotated[
        str,
        Path(
            alias="providerId",
            description="External provider ID used to map the source record to Sonarly.",
            json_schema_extra=validation.PROVIDER_ID_SCHEMA,
        ),
    ],
) -> Response:
    """Lookup prospects by provider ID.

    Returns the provider-id lookup result plus any company name and title metadata Sonarly has
    already stored for the matched prospect. Only prospects of the requested account group are
    considered, and the lookup never guesses between duplicate matches.
    """
    result = await lookup_by_provider_id(
        request.app.state.sonarly.db, principal, account_group_id, provider_id
    )
    return success_response(result)
