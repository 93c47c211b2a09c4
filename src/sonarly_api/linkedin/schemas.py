"""Wire schemas of the Sales Navigator listings."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from sonarly_api.envelope import TRACE_ID_EXAMPLE, CamelModel


class SalesNavigatorItem(CamelModel):
    id: str = Field(examples=["7012345678"], description="The id a sales_navigator job takes.")
    name: str = Field(examples=["CTOs in Berlin"])


class SalesNavigatorList(CamelModel):
    items: list[SalesNavigatorItem]


class SalesNavigatorListSuccessResponse(CamelModel):
    success: Literal[True]
    data: SalesNavigatorList
    error: None
    trace_id: str = Field(examples=[TRACE_ID_EXAMPLE])


SALES_NAVIGATOR_LIST_EXAMPLE: dict[str, Any] = {
    "success": True,
    "data": {
        "items": [
            {"id": "7012345678", "name": "CTOs in Berlin"},
            {"id": "7012345679", "name": "Series A founders"},
        ]
    },
    "error": None,
    "traceId": TRACE_ID_EXAMPLE,
}
