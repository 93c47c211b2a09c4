"""The `{success, data, error, traceId}` envelope: wire models and the one place that renders it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic_core import to_json
from starlette.responses import Response

from sonarly_api.tracing import current_trace_id

TRACE_ID_EXAMPLE = "4bf92f3577b34da6a3ce929d0e0e4736"


class CamelModel(BaseModel):
    """Base of every wire schema: snake_case in Python, camelCase on the wire."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class ErrorBody(CamelModel):
    code: str = Field(examples=["UNAUTHORIZED"])
    message: str = Field(examples=["Invalid or missing API key."])
    details: str | None = Field(examples=["API key checksum is invalid."])


class ValidationErrorBody(ErrorBody):
    code: Literal["VALIDATION_ERROR"]


class ErrorResponse(CamelModel):
    success: Literal[False]
    data: None
    error: ErrorBody
    trace_id: str = Field(examples=[TRACE_ID_EXAMPLE])


class ValidationErrorResponse(CamelModel):
    success: Literal[False]
    data: None
    error: ValidationErrorBody
    trace_id: str = Field(examples=[TRACE_ID_EXAMPLE])


JSON = "application/json"


def success_response(
    data: BaseModel | Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> Response:
    """200 envelope around `data`. Built from bytes: one serialisation, no re-validation."""
    body = b"".join(
        (
            b'{"success":true,"data":',
            data.model_dump_json(by_alias=True).encode()
            if isinstance(data, BaseModel)
            else to_json(data),
            b',"error":null,"traceId":"',
            current_trace_id().encode(),
            b'"}',
        )
    )
    return Response(body, media_type=JSON, headers=headers)


def error_body(code: str, message: str, details: str | None) -> bytes:
    envelope: dict[str, Any] = {
        "success": False,
        "data": None,
        "error": {"code": code, "message": message, "details": details},
        "traceId": current_trace_id(),
    }
    return to_json(envelope)


def error_response(
    status: int,
    code: str,
    message: str,
    details: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    return Response(
        error_body(code, message, details), status_code=status, media_type=JSON, headers=headers
    )
