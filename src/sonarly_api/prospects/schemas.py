"""Wire schemas of the provider-id lookup, named as the reference names them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from sonarly_api.envelope import TRACE_ID_EXAMPLE, CamelModel

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
