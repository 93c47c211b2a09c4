"""OpenAPI: the reference's schema names, descriptions and examples; bearer auth; no leftovers."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from sonarly_api.envelope import ErrorResponse, ValidationErrorResponse

_REFERENCE_MESSAGE = "Thanks for the context. I can send over details this afternoon."
_REFERENCE_TRACE = "507f1f77bcf86cd799439011"


def _error_example(code: str) -> dict[str, Any]:
    return {
        "success": False,
        "data": None,
        "error": {"code": code, "message": _REFERENCE_MESSAGE, "details": "string"},
        "traceId": _REFERENCE_TRACE,
    }


LOOKUP_EXAMPLE: dict[str, Any] = {
    "success": True,
    "data": {
        "providerId": "507f1f77bcf86cd799439011",
        "resolution": "none",
        "matches": [
            {
                "prospectId": "507f1f77bcf86cd799439011",
                "personId": "507f1f77bcf86cd799439011",
                "publicIdentifier": "string",
                "linkedinUrl": "https://example.com/resource",
                "name": "Avery Stone",
                "companyName": "Avery Stone",
                "title": "string",
            }
        ],
    },
    "error": None,
    "traceId": _REFERENCE_TRACE,
}

_MATCH_EXAMPLE = LOOKUP_EXAMPLE["data"]["matches"][0]
BATCH_LOOKUP_EXAMPLE: dict[str, Any] = {
    "success": True,
    "data": {
        "items": [
            {
                "providerId": "507f1f77bcf86cd799439011",
                "resolution": "unique",
                "matches": [_MATCH_EXAMPLE],
            },
            {"providerId": "crm-42", "resolution": "none", "matches": []},
        ]
    },
    "error": None,
    "traceId": _REFERENCE_TRACE,
}

_ERRORS: dict[int, tuple[str, type[Any], str]] = {
    401: ("Invalid or missing API key", ErrorResponse, "string"),
    403: ("Missing required permission", ErrorResponse, "string"),
    422: ("Request validation failed", ValidationErrorResponse, "VALIDATION_ERROR"),
    429: ("Rate limit exceeded", ErrorResponse, "string"),
    500: ("Internal server error", ErrorResponse, "string"),
    503: ("Database unavailable; retry after `Retry-After` seconds", ErrorResponse, "string"),
    # Prospecting jobs (sonarly_api/prospecting/).
    400: ("Request validation failed", ValidationErrorResponse, "VALIDATION_ERROR"),
    402: ("Not enough credits for the job", ErrorResponse, "INSUFFICIENT_CREDITS"),
    404: ("Job not found in this account group", ErrorResponse, "NOT_FOUND"),
    409: ("Idempotency-Key reused with another body", ErrorResponse, "IDEMPOTENCY_KEY_REUSED"),
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: each documented error status with its envelope model."""
    return {
        status: {
            "model": _ERRORS[status][1],
            "description": _ERRORS[status][0],
        }
        for status in statuses
    }


BEARER = "bearerAuth"

# Request bodies that routes read themselves (after authentication, see `documented_body`):
# their models, added to the document's schemas.
_BODY_MODELS: dict[str, type[BaseModel]] = {}


def documented_body(model: type[BaseModel], example: Any) -> dict[str, Any]:
    """The `openapi_extra=` of a route that reads its JSON body itself instead of declaring a
    body parameter (FastAPI would parse and validate it before the route's dependencies,
    that is before authentication): the document shows `model` as the request body."""
    _BODY_MODELS[model.__name__] = model
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema, "example": example}},
        }
    }


def install_openapi(app: FastAPI) -> None:
    """Generate the document once, then post-process it (FastAPI keeps its own
    `HTTPValidationError` even when the 422 handler is replaced, fastapi#3650)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        components = schema.setdefault("components", {})
        components.setdefault("securitySchemes", {})[BEARER] = {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "sk_live_…",
            "description": "An API key issued with `sonarly-api keys create`.",
        }
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                if _is_fastapi_422(operation):
                    del operation["responses"]["422"]
                if path.startswith("/v1/"):
                    operation["security"] = [{BEARER: []}]
                _add_examples(operation)
        schemas = components.setdefault("schemas", {})
        for name, model in _BODY_MODELS.items():
            schemas[name] = model.model_json_schema(
                by_alias=True, ref_template="#/components/schemas/{model}"
            )
        for leftover in ("HTTPValidationError", "ValidationError"):
            components.get("schemas", {}).pop(leftover, None)
        _apply_extras(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


# Examples are added after generation: FastAPI drops `null` members from inline examples.
_SUCCESS_EXAMPLES = {"lookupProspectsByProviderId": LOOKUP_EXAMPLE}
_SUCCESS_EXAMPLES["lookupProspectsByProviderIds"] = BATCH_LOOKUP_EXAMPLE


def _add_examples(operation: dict[str, Any]) -> None:
    for status, response in operation["responses"].items():
        content = response.get("content", {}).get("application/json")
        if content is None:
            continue
        if status == "200" and operation.get("operationId") in _SUCCESS_EXAMPLES:
            content["example"] = _SUCCESS_EXAMPLES[operation["operationId"]]
        elif status.isdigit() and int(status) in _ERRORS:
            content["example"] = _error_example(_ERRORS[int(status)][2])


def _is_fastapi_422(operation: dict[str, Any]) -> bool:
    ref: str = (
        operation["responses"]
        .get("422", {})
        .get("content", {})
        .get("application/json", {})
        .get("schema", {})
        .get("$ref", "")
    )
    return ref.endswith("/HTTPValidationError")


# Documentation a route cannot carry itself, registered by feature packages when they are
# imported (e.g. sonarly_api/prospecting/docs.py): component schemas that no model generates
# (a request body FastAPI must not enforce before authentication), and success examples, set
# after generation because FastAPI drops `null` members from inline examples.
EXTRA_SCHEMAS: dict[str, dict[str, Any]] = {}
EXTRA_EXAMPLES: dict[tuple[str, str], Any] = {}  # (operationId, status) -> example


def reference_trace_id() -> str:
    return _REFERENCE_TRACE


def _apply_extras(schema: dict[str, Any]) -> None:
    schema.setdefault("components", {}).setdefault("schemas", {}).update(EXTRA_SCHEMAS)
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                example = EXTRA_EXAMPLES.get((operation.get("operationId", ""), status))
                content = response.get("content", {}).get("application/json")
                if example is not None and content is not None:
                    content["example"] = example


# --- providers (branch provider): the Sales Navigator listings' statuses and example.
_ERRORS.setdefault(400, ("Request validation failed", ValidationErrorResponse, "VALIDATION_ERROR"))
_ERRORS.setdefault(409, ("No LinkedIn account connected", ErrorResponse, "LINKEDIN_NOT_CONNECTED"))
_ERRORS.setdefault(502, ("Upstream data provider failed", ErrorResponse, "UPSTREAM_ERROR"))


def _sales_navigator_examples() -> None:
    from sonarly_api.linkedin.schemas import SALES_NAVIGATOR_LIST_EXAMPLE

    _SUCCESS_EXAMPLES["listSalesNavigatorLeadLists"] = SALES_NAVIGATOR_LIST_EXAMPLE
    _SUCCESS_EXAMPLES["listSalesNavigatorSavedSearches"] = SALES_NAVIGATOR_LIST_EXAMPLE
    # 409 is IDEMPOTENCY_KEY_REUSED on the job start; on the listings it can only be this.
    for operation_id in ("listSalesNavigatorLeadLists", "listSalesNavigatorSavedSearches"):
        EXTRA_EXAMPLES[(operation_id, "409")] = _error_example("LINKEDIN_NOT_CONNECTED")


_sales_navigator_examples()
