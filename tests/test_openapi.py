"""GET /openapi.json, /docs, /redoc: the reference's schema names and examples, bearer auth."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

LOOKUP = "/v1/accounts/{accountGroupId}/prospects/by-provider-id/{providerId}"
ACCOUNTS = "/v1/accounts"
REF = "#/components/schemas/"
SEED_PAGE = (
    Path(__file__).resolve().parents[2] / "shared" / "seed" / "lookup-prospects-by-provider-id.txt"
)

# The reference page's examples, verbatim (see `test_examples_match_the_seed_page`).
REFERENCE_SUCCESS_EXAMPLE: dict[str, Any] = {
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
    "traceId": "507f1f77bcf86cd799439011",
}


def reference_error_example(code: str) -> dict[str, Any]:
    return {
        "success": False,
        "data": None,
        "error": {
            "code": code,
            "message": "Thanks for the context. I can send over details this afternoon.",
            "details": "string",
        },
        "traceId": "507f1f77bcf86cd799439011",
    }


REFERENCE_RESPONSES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "200": (
        "Provider ID prospect lookup result with identity, company, and title metadata",
        "ProviderIdProspectLookupSuccessResponse",
        REFERENCE_SUCCESS_EXAMPLE,
    ),
    "401": ("Invalid or missing API key", "ErrorResponse", reference_error_example("string")),
    "403": ("Missing required permission", "ErrorResponse", reference_error_example("string")),
    "422": (
        "Request validation failed",
        "ValidationErrorResponse",
        reference_error_example("VALIDATION_ERROR"),
    ),
    "429": ("Rate limit exceeded", "ErrorResponse", reference_error_example("string")),
    "500": ("Internal server error", "ErrorResponse", reference_error_example("string")),
}


@pytest.fixture
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    return body


def json_content(response: dict[str, Any]) -> dict[str, Any]:
    content: dict[str, Any] = response["content"]["application/json"]
    return content


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]


class TestLookupOperation:
    def test_path_and_parameters(self, document: dict[str, Any]) -> None:
        operation = document["paths"][LOOKUP]["get"]

        parameters = {p["name"]: p for p in operation["parameters"]}
        assert set(parameters) == {"accountGroupId", "providerId"}
        for parameter in parameters.values():
            assert parameter["in"] == "path"
            assert parameter["required"] is True
            assert parameter["schema"]["type"] == "string"
        assert "requestBody" not in operation

    def test_no_other_spelling_of_the_path(self, document: dict[str, Any]) -> None:
        # `{accountGroupId:path}` in the route must not leak into the document.
        assert [p for p in document["paths"] if "by-provider-id" in p] == [
            LOOKUP,
            "/v1/accounts/{accountGroupId}/prospects/by-provider-id",  # the batch form (POST)
        ]
        assert ":path" not in json.dumps(document)

    def test_summary_and_operation_id(self, document: dict[str, Any]) -> None:
        operation = document["paths"][LOOKUP]["get"]

        assert operation["summary"] == "Lookup prospects by provider ID"
        assert operation["operationId"] == "lookupProspectsByProviderId"

    def test_documented_statuses(self, document: dict[str, Any]) -> None:
        responses = document["paths"][LOOKUP]["get"]["responses"]

        # The reference's statuses, plus the contract's 503 (database down).
        assert set(responses) - {"503"} == set(REFERENCE_RESPONSES)

    @pytest.mark.parametrize("status", sorted(REFERENCE_RESPONSES))
    def test_response_schema_description_and_example(
        self, document: dict[str, Any], status: str
    ) -> None:
        description, schema, example = REFERENCE_RESPONSES[status]
        response = document["paths"][LOOKUP]["get"]["responses"][status]

        assert response["description"] == description
        assert json_content(response)["schema"] == {"$ref": REF + schema}
        assert json_content(response)["example"] == example

    def test_named_schemas_are_defined_with_the_envelope_fields(
        self, document: dict[str, Any]
    ) -> None:
        schemas = document["components"]["schemas"]

        for name in (
            "ProviderIdProspectLookupSuccessResponse",
            "ErrorResponse",
            "ValidationErrorResponse",
        ):
            assert set(schemas[name]["required"]) == {"success", "data", "error", "traceId"}
        success = schemas["ProviderIdProspectLookupSuccessResponse"]["properties"]["success"]
        assert success["const"] is True
        assert schemas["ErrorResponse"]["properties"]["success"]["const"] is False

    def test_validation_error_schema_pins_the_code(self, document: dict[str, Any]) -> None:
        schemas = document["components"]["schemas"]
        error_ref = schemas["ValidationErrorResponse"]["properties"]["error"]["$ref"]
        error_schema = schemas[error_ref.removeprefix(REF)]

        assert error_schema["properties"]["code"]["const"] == "VALIDATION_ERROR"

    def test_match_fields(self, document: dict[str, Any]) -> None:
        schemas = document["components"]["schemas"]
        data_ref = schemas["ProviderIdProspectLookupSuccessResponse"]["properties"]["data"]["$ref"]
        data = schemas[data_ref.removeprefix(REF)]
        match_ref = data["properties"]["matches"]["items"]["$ref"]
        match = schemas[match_ref.removeprefix(REF)]

        assert set(data["required"]) == {"providerId", "resolution", "matches"}
        assert sorted(data["properties"]["resolution"]["enum"]) == ["ambiguous", "none", "unique"]
        assert set(match["properties"]) == set(REFERENCE_SUCCESS_EXAMPLE["data"]["matches"][0])


class TestSeedPage:
    def test_examples_match_the_seed_page(self, document: dict[str, Any]) -> None:
        if not SEED_PAGE.is_file():
            pytest.skip(f"reference page not available at {SEED_PAGE}")
        page = SEED_PAGE.read_text()
        decoder = json.JSONDecoder()
        examples: dict[str, tuple[str, Any]] = {}
        for heading in re.finditer(r"^(\d{3}) Example JSON(\w+)$", page, flags=re.MULTILINE):
            start = page.index("{", heading.end())
            examples[heading.group(1)] = (heading.group(2), decoder.raw_decode(page, start)[0])
        responses = document["paths"][LOOKUP]["get"]["responses"]

        assert set(examples) == set(REFERENCE_RESPONSES)
        for status, (schema, example) in examples.items():
            assert json_content(responses[status])["schema"] == {"$ref": REF + schema}
            assert json_content(responses[status])["example"] == example
            assert REFERENCE_RESPONSES[status][1:] == (schema, example)


class TestNoFastApiLeftovers:
    def test_no_http_validation_error_anywhere(self, document: dict[str, Any]) -> None:
        text = json.dumps(document)

        assert "HTTPValidationError" not in text
        # `ValidationError` on its own (FastAPI's item schema), not `ValidationErrorResponse`.
        assert re.search(r"(?<![A-Za-z])ValidationError(?![A-Za-z])", text) is None

    def test_every_422_is_the_envelope(self, document: dict[str, Any]) -> None:
        for path, method, operation in operations(document):
            response = operation["responses"].get("422")
            if response is None:
                continue
            schema = json_content(response)["schema"]
            assert schema == {"$ref": REF + "ValidationErrorResponse"}, (path, method)

    def test_every_error_response_is_an_envelope(self, document: dict[str, Any]) -> None:
        envelopes = {REF + "ErrorResponse", REF + "ValidationErrorResponse"}
        for path, method, operation in operations(document):
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    assert json_content(response)["schema"]["$ref"] in envelopes, (
                        path,
                        method,
                        status,
                    )


class TestSecurity:
    def test_bearer_scheme(self, document: dict[str, Any]) -> None:
        schemes = document["components"]["securitySchemes"]

        bearer = [
            name for name, s in schemes.items() if (s["type"], s["scheme"]) == ("http", "bearer")
        ]
        assert len(bearer) == 1

    def test_applied_to_every_v1_operation(self, document: dict[str, Any]) -> None:
        (scheme,) = document["components"]["securitySchemes"]
        v1 = [(p, m, op) for p, m, op in operations(document) if p.startswith("/v1/")]

        assert {p for p, _, _ in v1} >= {LOOKUP, ACCOUNTS}
        for path, method, operation in v1:
            assert operation.get("security") == [{scheme: []}], (path, method)


class TestAccountsOperation:
    def test_documented_statuses_and_schemas(self, document: dict[str, Any]) -> None:
        responses = document["paths"][ACCOUNTS]["get"]["responses"]

        assert {"200", "401", "429", "500"} <= set(responses)
        assert json_content(responses["200"])["schema"] == {
            "$ref": REF + "AccountGroupListSuccessResponse"
        }
        for status in ("401", "429", "500"):
            assert json_content(responses[status])["schema"] == {"$ref": REF + "ErrorResponse"}
            assert json_content(responses[status])["example"] == reference_error_example("string")

    def test_page_shape(self, document: dict[str, Any]) -> None:
        schemas = document["components"]["schemas"]
        page_ref = schemas["AccountGroupListSuccessResponse"]["properties"]["data"]["$ref"]
        page = schemas[page_ref.removeprefix(REF)]
        item = schemas[page["properties"]["items"]["items"]["$ref"].removeprefix(REF)]

        assert set(page["required"]) == {"items", "nextCursor", "hasMore"}
        assert set(item["required"]) == {"id", "name", "createdAt"}

    def test_query_parameters(self, document: dict[str, Any]) -> None:
        parameters = {p["name"]: p for p in document["paths"][ACCOUNTS]["get"]["parameters"]}

        assert set(parameters) == {"cursor", "limit"}
        assert all(p["in"] == "query" and not p["required"] for p in parameters.values())
        limit = parameters["limit"]["schema"]
        assert (limit["type"], limit["minimum"], limit["maximum"]) == ("integer", 1, 100)


class TestDocumentationPages:
    @pytest.mark.parametrize(
        ("path", "assets"),
        [
            ("/docs", ["swagger-ui-bundle.js", "swagger-ui.css"]),
            ("/redoc", ["redoc.standalone.js"]),
        ],
    )
    async def test_pages_load_their_scripts_from_the_api_not_a_cdn(
        self, client: httpx.AsyncClient, path: str, assets: list[str]
    ) -> None:
        response = await client.get(path)

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert "/openapi.json" in response.text
        referenced = re.findall(r"""(?:src|href)=["']?([^"' >]+)""", response.text)
        assert [url for url in referenced if "//" in url] == []  # nothing from another host
        for asset in assets:
            assert f"/docs-assets/{asset}" in referenced
            served = await client.get(f"/docs-assets/{asset}")
            assert served.status_code == 200
            assert len(served.content) > 10_000

    async def test_a_missing_asset_is_an_enveloped_404(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/docs-assets/missing.js")

        assert response.status_code == 404
        body = response.json()
        assert body["success"] is False
        assert body["error"]["code"] == "NOT_FOUND"

    async def test_document_is_stable_between_requests(self, client: httpx.AsyncClient) -> None:
        first = (await client.get("/openapi.json")).json()
        second = (await client.get("/openapi.json")).json()

        assert first == second
