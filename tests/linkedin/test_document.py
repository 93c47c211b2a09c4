"""The listings in the OpenAPI document: schema name, example, statuses, security."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI

from sonarly_api.linkedin.schemas import SALES_NAVIGATOR_LIST_EXAMPLE

PATHS = {
    "/v1/accounts/{accountGroupId}/sales-navigator/lead-lists": "listSalesNavigatorLeadLists",
    "/v1/accounts/{accountGroupId}/sales-navigator/saved-searches": (
        "listSalesNavigatorSavedSearches"
    ),
}
REF = "#/components/schemas/"


@pytest.fixture(scope="module")
def document(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


@pytest.mark.parametrize(("path", "operation_id"), sorted(PATHS.items()))
def test_operation(document: dict[str, Any], path: str, operation_id: str) -> None:
    operation = document["paths"][path]["get"]
    responses = operation["responses"]

    assert operation["operationId"] == operation_id
    assert operation["security"] == [{"bearerAuth": []}]
    assert set(responses) == {"200", "400", "401", "403", "409", "429", "500", "502", "503"}
    ok = responses["200"]["content"]["application/json"]
    assert ok["schema"] == {"$ref": REF + "SalesNavigatorListSuccessResponse"}
    assert ok["example"] == SALES_NAVIGATOR_LIST_EXAMPLE
    assert responses["409"]["content"]["application/json"]["example"]["error"]["code"] == (
        "LINKEDIN_NOT_CONNECTED"
    )
    assert responses["502"]["content"]["application/json"]["example"]["error"]["code"] == (
        "UPSTREAM_ERROR"
    )
    (parameter,) = operation["parameters"]
    assert parameter["name"] == "accountGroupId"
    assert parameter["schema"]["pattern"] == "^[0-9a-fA-F]{24}$"


def test_schema(document: dict[str, Any]) -> None:
    schema = document["components"]["schemas"]["SalesNavigatorListSuccessResponse"]

    assert set(schema["properties"]) == {"success", "data", "error", "traceId"}
    items = document["components"]["schemas"]["SalesNavigatorList"]["properties"]["items"]
    assert items["items"] == {"$ref": REF + "SalesNavigatorItem"}
