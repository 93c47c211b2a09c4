"""GET /v1/accounts/{accountGroupId}/prospects/by-provider-id/{providerId}, and its batch form
POST /v1/accounts/{accountGroupId}/prospects/by-provider-id."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from pydantic_core import from_json
from starlette.convertors import PathConvertor, register_url_convertor
from starlette.responses import Response

from sonarly_api.auth.dependencies import require, spend_per_item
from sonarly_api.auth.principal import Principal
from sonarly_api.envelope import success_response
from sonarly_api.errors import ValidationFailed
from sonarly_api.openapi import BATCH_LOOKUP_EXAMPLE, documented_body, error_responses
from sonarly_api.prospects import validation
from sonarly_api.prospects.schemas import (
    ProviderIdProspectBatchLookupRequest,
    ProviderIdProspectBatchLookupSuccessResponse,
    ProviderIdProspectLookupSuccessResponse,
)
from sonarly_api.prospects.service import lookup_by_provider_id, lookup_by_provider_ids
from sonarly_api.routing import DirectRoute

# DirectRoute: this is the hot path; see sonarly_api/routing.py.
router = APIRouter(prefix="/v1", tags=["Prospects"], route_class=DirectRoute)


class AnyTextConvertor(PathConvertor):
    """Starlette's `path` (a decoded %2F matches), also across a decoded %0A: `.` stops at a
    newline, so such a request missed the route and got a 404 instead of the contract's 422
    (found by tests/test_schemathesis.py)."""

    regex = "(?s:.*)"


register_url_convertor("anytext", AnyTextConvertor())

# json_schema_extra documents the rules without FastAPI enforcing them (it would answer 422
# before authentication, against the contract's order of checks).
AccountGroupId = Annotated[
    str,
    Path(
        alias="accountGroupId",
        description="Account group ID that scopes the request.",
        json_schema_extra=validation.ACCOUNT_GROUP_ID_SCHEMA,
    ),
]


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
    account_group_id: AccountGroupId,
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


_BODY_EXAMPLE = {
    "providerIds": [item["providerId"] for item in BATCH_LOOKUP_EXAMPLE["data"]["items"]]
}


async def _json_body(request: Request, limit: int) -> object:
    """The request's body parsed as JSON, read only up to `limit` bytes: a larger body is
    refused (422) from its Content-Length, or as soon as that many bytes have arrived,
    without reading the rest."""
    too_large = f"request body: must be at most {limit // 1024} KiB"
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ValidationFailed(too_large)
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ValidationFailed(too_large)
        chunks.append(chunk)
    try:
        return from_json(b"".join(chunks))
    except ValueError:
        # The parser's message is not echoed: it quotes the client's bytes.
        raise ValidationFailed(
            'request body: must be JSON (UTF-8), {"providerIds": [...]}'
        ) from None


@router.post(
    "/accounts/{accountGroupId:anytext}/prospects/by-provider-id",
    response_model=ProviderIdProspectBatchLookupSuccessResponse,
    responses=error_responses(401, 403, 422, 429, 500, 503),
    operation_id="lookupProspectsByProviderIds",
    summary="Lookup prospects by provider IDs (batch)",
    response_description="For each requested provider ID, in request order, the provider ID "
    "prospect lookup result",
    # The body is documented, not declared: FastAPI would read and validate a declared body
    # before the dependencies, so before authentication and the rate limit.
    openapi_extra=documented_body(ProviderIdProspectBatchLookupRequest, _BODY_EXAMPLE),
)
async def lookup_prospects_by_provider_ids(
    request: Request,
    principal: Annotated[Principal, Depends(require("prospects:read"))],
    account_group_id: AccountGroupId,
) -> Response:
    """Lookup prospects by provider IDs (batch).

    Up to 100 provider IDs in one request, for CRM syncs: each item of the answer is exactly
    what the single lookup answers for that ID, in request order. Each ID spends one unit of
    the key's rate limit; a batch the remaining budget cannot cover is refused whole (429).
    A `422` names the first invalid ID by its index (`providerIds[3]: …`).
    """
    # The single lookup's order of checks: 401, 429 and 403 PERMISSION_DENIED in the
    # dependency (which spends the request's first unit), then 422 (path, then body), then
    # the batch's other units (429: its cost is known once the body is), then 403
    # ACCOUNT_GROUP_FORBIDDEN.
    group = validation.account_group_id(account_group_id)
    provider_ids = validation.provider_ids(
        await _json_body(request, validation.MAX_BATCH_BODY_BYTES)
    )
    await spend_per_item(request, principal, len(provider_ids))
    result = await lookup_by_provider_ids(
        request.app.state.sonarly.db, principal, group, provider_ids
    )
    return success_response(result)
