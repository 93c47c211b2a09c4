"""Wire schemas of GET /v1/accounts."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from sonarly_api.envelope import TRACE_ID_EXAMPLE, CamelModel


class AccountGroupOut(CamelModel):
    id: str = Field(examples=["507f1f77bcf86cd799439011"])
    name: str = Field(examples=["Acme EMEA"])
    created_at: str = Field(examples=["2026-04-28T15:30:00.000Z"])


class AccountGroupPage(CamelModel):
    items: list[AccountGroupOut]
    next_cursor: str | None = Field(examples=[None])
    has_more: bool


class AccountGroupListSuccessResponse(CamelModel):
    success: Literal[True]
    data: AccountGroupPage
    error: None
    trace_id: str = Field(examples=[TRACE_ID_EXAMPLE])
