"""Wire schemas of the provider-id lookup, named as the reference names them."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from sonarly_api.envelope import TRACE_ID_EXAMPLE, CamelModel
from sonarly_api.prospects import validation

Resolution = Literal["none", "unique", "ambiguous"]


class ProviderIdProspectMatch(CamelModel):
    prospect_id: str = Field(examples=["507f1f77bcf86cd799439011"])
    person_id: str = Field(examples=["507f1f77bcf86cd799439011"])
    public_identifier: str | None = Field(examples=["string"])
    linkedin_url: str | None = Field(examples=["https://example.com/resource"])
    name: str | None = Field(examples=["Avery Stone"])
    company_name: str | None = Field(examples=["Avery Stone"])
    title: str | None = Field(examples=["string"])


class ProviderIdProspectLookup(CamelModel):
    provider_id: str = Field(
        description="The requested provider id, exactly as sent (after URL decoding).",
        examples=["507f1f77bcf86cd799439011"],
    )
    resolution: Resolution = Field(
        description="`none`: no prospect of the account group carries it; `unique`: exactly "
        "one does; `ambiguous`: several do, and all are returned (never a guess).",
        examples=["none"],
    )
    matches: list[ProviderIdProspectMatch] = Field(
        description="At most 50, ordered by prospect creation time, then id."
    )


class ProviderIdProspectLookupSuccessResponse(CamelModel):
    success: Literal[True]
    data: ProviderIdProspectLookup
    error: None
    trace_id: str = Field(examples=[TRACE_ID_EXAMPLE])


# Documentation only: the route reads and checks the body itself, after authentication and
# the rate limit (validation.provider_ids), so FastAPI never sees this model.
class ProviderIdProspectBatchLookupRequest(CamelModel):
    """A JSON object of at most 64 KiB."""

    model_config = ConfigDict(extra="forbid")

    provider_ids: list[str] = Field(
        description=f"1 to {validation.MAX_BATCH} provider ids, each under the single "
        "lookup's rules. An id sent twice is answered twice. Each id spends one unit of the "
        "key's rate-limit budget.",
        examples=[["507f1f77bcf86cd799439011", "crm-42"]],
        json_schema_extra=validation.BATCH_PROVIDER_IDS_SCHEMA,
    )


class ProviderIdProspectBatchLookup(CamelModel):
    items: list[ProviderIdProspectLookup] = Field(
        description="One per requested provider id, in request order (an id sent twice is "
        "answered twice), each exactly what the single lookup answers for it."
    )


class ProviderIdProspectBatchLookupSuccessResponse(CamelModel):
    success: Literal[True]
    data: ProviderIdProspectBatchLookup
    error: None
    trace_id: str = Field(examples=[TRACE_ID_EXAMPLE])
