"""The job endpoints in /openapi.json: schema names, examples, the start body, links."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from sonarly_api.prospecting import urls
from sonarly_api.prospecting.validation import start_request
from tests.conftest import Factory
from tests.support import tenant

JOBS = "/v1/accounts/{accountGroupId}/prospecting"
JOB = JOBS + "/{jobId}"
CANCEL = JOB + "/cancel"
REF = "#/components/schemas/"


@pytest.fixture
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get("/openapi.json")).json()
    return body


def content(response: dict[str, Any]) -> dict[str, Any]:
    json_content: dict[str, Any] = response["content"]["application/json"]
    return json_content


OPERATIONS = [
    (JOBS, "post", "startProspectingJob", "202", "ProspectingJobStartSuccessResponse"),
    (JOBS, "get", "listProspectingJobs", "200", "ProspectingJobListSuccessResponse"),
    (JOB, "get", "getProspectingJob", "200", "ProspectingJobStatusSuccessResponse"),
    (CANCEL, "post", "cancelProspectingJob", "200", "ProspectingJobCancelSuccessResponse"),
]
STATUSES = {
    "startProspectingJob": {
        "200",
        "202",
        "400",
        "401",
        "402",
        "403",
        "409",
        "429",
        "500",
        "502",
        "503",
    },
    "listProspectingJobs": {"200", "400", "401", "403", "429", "500", "503"},
    "getProspectingJob": {"200", "400", "401", "403", "404", "429", "500", "503"},
    "cancelProspectingJob": {"200", "400", "401", "403", "404", "422", "429", "500", "503"},
}


def test_the_start_documents_both_409_codes_and_502(document: dict[str, Any]) -> None:
    responses = document["paths"][JOBS]["post"]["responses"]
    assert "IDEMPOTENCY_KEY_REUSED" in responses["409"]["description"]
    assert "LINKEDIN_NOT_CONNECTED" in responses["409"]["description"]
    assert "UPSTREAM_ERROR" in responses["502"]["description"]
    assert content(responses["502"])["example"]["error"]["code"] == "UPSTREAM_ERROR"


class TestJobOperations:
    @pytest.mark.parametrize(("path", "method", "operation_id", "status", "schema"), OPERATIONS)
    def test_named_success_schema_with_an_example_in_the_envelope(
        self,
        document: dict[str, Any],
        path: str,
        method: str,
        operation_id: str,
        status: str,
        schema: str,
    ) -> None:
        operation = document["paths"][path][method]
        success = content(operation["responses"][status])

        assert operation["operationId"] == operation_id
        assert set(operation["responses"]) == STATUSES[operation_id]
        assert success["schema"] == {"$ref": REF + schema}
        example = success["example"]
        assert (example["success"], example["error"]) == (True, None)
        named = document["components"]["schemas"][schema]
        assert set(named["required"]) == {"success", "data", "error", "traceId"}
        assert operation["security"] == [{"bearerAuth": []}]

    def test_errors_are_envelopes_with_their_codes(self, document: dict[str, Any]) -> None:
        codes = {
            "400": "VALIDATION_ERROR",
            "402": "INSUFFICIENT_CREDITS",
            "404": "NOT_FOUND",
            "409": "IDEMPOTENCY_KEY_REUSED",
            "422": "VALIDATION_ERROR",
        }
        for path, method, *_ in OPERATIONS:
            for status, response in document["paths"][path][method]["responses"].items():
                if status in codes:
                    assert content(response)["example"]["error"]["code"] == codes[status]
                if status.startswith(("4", "5")):
                    assert content(response)["schema"]["$ref"] in {
                        REF + "ErrorResponse",
                        REF + "ValidationErrorResponse",
                    }

    def test_status_example_has_every_field(self, document: dict[str, Any]) -> None:
        example = content(document["paths"][JOB]["get"]["responses"]["200"])["example"]["data"]

        assert set(example) == {
            "jobId",
            "type",
            "status",
            "source",
            "maxResults",
            "searchEmails",
            "createdAt",
            "updatedAt",
            "startedAt",
            "finishedAt",
            "stages",
            "counts",
            "credits",
            "error",
        }
        assert example["stages"]["import"]["progress"] == 0.82

    def test_list_query_parameters(self, document: dict[str, Any]) -> None:
        parameters = {p["name"]: p for p in document["paths"][JOBS]["get"]["parameters"]}

        assert set(parameters) == {"accountGroupId", "cursor", "limit", "status"}
        limit = parameters["limit"]["schema"]
        assert (limit["type"], limit["minimum"], limit["maximum"]) == ("integer", 1, 100)
        assert parameters["status"]["schema"]["enum"] == [
            "queued",
            "running",
            "completed",
            "failed",
            "cancelled",
        ]
        assert parameters["cursor"]["schema"]["type"] == "string"


class TestStartBody:
    def test_documented_not_enforced_by_the_framework(self, document: dict[str, Any]) -> None:
        body = document["paths"][JOBS]["post"]["requestBody"]
        schema = document["components"]["schemas"]["ProspectingJobStartRequest"]

        assert body["required"] is True
        assert content(body)["schema"] == {"$ref": REF + "ProspectingJobStartRequest"}
        variants = schema["oneOf"]
        assert [v["properties"]["source"]["enum"][0] for v in variants] == [
            "linkedin_search",
            "sales_navigator",
            "sales_navigator",
            "post_commenters",
            "url_upload",
        ]
        assert all(v["additionalProperties"] is False for v in variants)

    def test_the_request_examples_are_accepted(self, document: dict[str, Any]) -> None:
        examples = content(document["paths"][JOBS]["post"]["requestBody"])["examples"]

        for example in examples.values():
            start_request(httpx.Request("POST", "/", json=example["value"]).content)

    @pytest.mark.parametrize(
        ("pattern", "normalise", "value"),
        [
            (urls.SEARCH_URL_PATTERN, urls.search_url, "https://www.linkedin.com/search/results/"),
            (
                urls.SEARCH_URL_PATTERN,
                urls.search_url,
                "https://www.linkedin.com/search/results/a?b=c&d=%20",
            ),
            (urls.POST_URL_PATTERN, urls.post_url, "https://www.linkedin.com/posts/x_y-1/"),
            (
                urls.POST_URL_PATTERN,
                urls.post_url,
                "https://www.linkedin.com/feed/update/urn:li:activity:7/",
            ),
            (urls.PROFILE_URL_PATTERN, urls.profile_url, "https://www.linkedin.com/in/abc"),
            (urls.PROFILE_URL_PATTERN, urls.profile_url, "https://www.linkedin.com/in/A_b-C/"),
        ],
    )
    def test_what_a_pattern_matches_is_accepted(
        self, pattern: str, normalise: Any, value: str
    ) -> None:
        assert re.fullmatch(pattern, value)
        assert normalise(value).startswith("https://www.linkedin.com/")


class TestLinks:
    def test_start_links_to_status_and_cancel_with_the_returned_id(
        self, document: dict[str, Any]
    ) -> None:
        links = document["paths"][JOBS]["post"]["responses"]["202"]["links"]
        polled = document["paths"][JOB]["get"]["responses"]["200"]["links"]

        targets = {link["operationId"] for link in links.values()}
        assert targets == {"getProspectingJob", "cancelProspectingJob"}
        assert {link["operationId"] for link in polled.values()} == {"cancelProspectingJob"}
        for link in [*links.values(), *polled.values()]:
            assert link["parameters"] == {
                "accountGroupId": "$request.path.accountGroupId",
                "jobId": "$response.body#/data/jobId",
            }


class TestAllowHeader:
    async def test_a_405_on_the_jobs_path_lists_both_methods(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        who = await tenant(factory)

        response = await client.delete(who.jobs, headers=who.headers)
        job = await client.put(f"{who.jobs}/{'0' * 24}", headers=who.headers)

        assert response.status_code == 405
        assert response.headers["allow"] == "GET, POST, HEAD"  # HEAD is served wherever GET is
        assert response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
        assert job.headers["allow"] == "GET, HEAD"
