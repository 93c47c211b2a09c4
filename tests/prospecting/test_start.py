"""POST /v1/accounts/{accountGroupId}/prospecting: every status, the body's rules, credits."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api.ids import new_id
from tests.conftest import Factory, bearer
from tests.support import (
    SEARCH_URL,
    count_jobs,
    credits_view,
    job_row,
    jobs_path,
    sandbox_listing_id,
    search_body,
    set_job,
    start,
    tenant,
)

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert body["success"] is False
    assert body["data"] is None
    assert re.fullmatch(r"[0-9a-f]{32}", body["traceId"])
    error: dict[str, Any] = body["error"]
    return error


class TestStartAccepted:
    async def test_202_with_the_job_location_and_retry_after(
        self, client: httpx.AsyncClient, factory: Factory, engine: AsyncEngine
    ) -> None:
        who = await tenant(factory)

        response = await start(client, who, search_body(maxResults=50))

        assert response.status_code == 202, response.text
        body = response.json()
        assert body["success"] is True
        assert body["error"] is None
        data = body["data"]
        assert set(data) == {"jobId", "status", "createdAt"}
        assert re.fullmatch(r"[0-9a-f]{24}", data["jobId"])
        assert data["status"] == "queued"
        assert ISO_MS.match(data["createdAt"])
        assert response.headers["location"] == f"{who.jobs}/{data['jobId']}"
        assert int(response.headers["retry-after"]) >= 1
        assert "idempotent-replayed" not in response.headers
        row = await job_row(engine, data["jobId"])
        assert (row["account_group_id"], row["api_key_id"]) == (who.group, who.key_id)
        assert row["source"] == {"source": "linkedin_search", "searchUrl": SEARCH_URL}
        assert (row["max_results"], row["search_emails"], row["status"]) == (50, False, "queued")
        assert (row["credits_reserved"], row["credits_charged"]) == (50, 0)

    async def test_reserves_the_worst_case_on_the_ledger(
        self, client: httpx.AsyncClient, factory: Factory, engine: AsyncEngine
    ) -> None:
        who = await tenant(factory, credits=1000)

        response = await start(client, who, search_body(maxResults=300, searchEmails=True))

        assert response.status_code == 202
        job_id = response.json()["data"]["jobId"]
        view = await credits_view(engine, who.group)
        assert (view.balance, view.reserved, view.available) == (1000, 600, 400)
        reserve = [e for e in view.entries if e.kind == "reserve"]
        assert [(e.amount, e.job_id) for e in reserve] == [(600, job_id)]

    @pytest.mark.parametrize(("plan", "cap"), [("tester", 100), ("starter", 1000), ("scale", 2000)])
    async def test_max_results_defaults_to_the_plan_cap(
        self, client: httpx.AsyncClient, factory: Factory, engine: AsyncEngine, plan: str, cap: int
    ) -> None:
        who = await tenant(factory, plan=plan)

        response = await start(client, who, {"source": "post_commenters", "postUrl": POST_URL})

        assert response.status_code == 202, response.text
        row = await job_row(engine, response.json()["data"]["jobId"])
        assert (row["max_results"], row["credits_reserved"]) == (cap, cap)

    async def test_the_cap_itself_is_accepted(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        who = await tenant(factory, plan="tester")

        response = await start(client, who, search_body(maxResults=100))

        assert response.status_code == 202, response.text

    async def test_url_upload_normalises_collapses_and_ignores_max_results(
        self, client: httpx.AsyncClient, factory: Factory, engine: AsyncEngine
    ) -> None:
        who = await tenant(factory, plan="tester", credits=100)
        urls = [
            "https://www.linkedin.com/in/avery-stone",
            "http://linkedin.com/in/Avery-Stone/",
            "www.linkedin.com/in/avery-stone?trk=abc",
            "https://de.linkedin.com/in/jo-park/details/experience/",
            " https://www.linkedin.com/in/caro-lee ",
        ]

        response = await start(
            client,
            who,
            {"source": "url_upload", "profileUrls": urls, "maxResults": 5000, "searchEmails": True},
        )

        assert response.status_code == 202, response.text
        row = await job_row(engine, response.json()["data"]["jobId"])
        assert row["source"] == {
            "source": "url_upload",
            "profileUrls": [
                "https://www.linkedin.com/in/avery-stone",
                "https://www.linkedin.com/in/jo-park",
                "https://www.linkedin.com/in/caro-lee",
            ],
        }
        assert (row["max_results"], row["credits_reserved"]) == (3, 6)

    @pytest.mark.parametrize(
        ("body", "stored"),
        [
            # LISTED: one of the group's listings (the sandbox's), as the start requires.
            (
                {"source": "sales_navigator", "savedSearchId": "LISTED"},
                {"source": "sales_navigator", "savedSearchId": "LISTED"},
            ),
            (
                {"source": "sales_navigator", "leadListId": "LISTED"},
                {"source": "sales_navigator", "leadListId": "LISTED"},
            ),
            (
                {
                    "source": "post_commenters",
                    "postUrl": "HTTPS://WWW.LinkedIn.com/posts/a_b-1/?x=1",
                },
                {"source": "post_commenters", "postUrl": "https://www.linkedin.com/posts/a_b-1"},
            ),
            (
                {"source": "linkedin_search", "searchUrl": "linkedin.com/search/results/people/"},
                {
                    "source": "linkedin_search",
                    "searchUrl": "https://www.linkedin.com/search/results/people/",
                },
            ),
        ],
    )
    async def test_every_source_kind(
        self,
        client: httpx.AsyncClient,
        factory: Factory,
        engine: AsyncEngine,
        body: dict[str, Any],
        stored: dict[str, Any],
    ) -> None:
        who = await tenant(factory)
        for field in ("leadListId", "savedSearchId"):
            if body.get(field) == "LISTED":
                listed = await sandbox_listing_id(who.group, field)
                body, stored = {**body, field: listed}, {**stored, field: listed}

        response = await start(client, who, {**body, "maxResults": 10})

        assert response.status_code == 202, response.text
        assert (await job_row(engine, response.json()["data"]["jobId"]))["source"] == stored


POST_URL = "https://www.linkedin.com/posts/avery-stone_launch-123"

# (body, the field the details must name, a word of the rule)
INVALID_BODIES: list[tuple[Any, str, str]] = [
    ({"source": "linkedin_search"}, "searchUrl", "required"),
    ({"searchUrl": SEARCH_URL}, "source", "required"),
    ({"source": "linkedin", "searchUrl": SEARCH_URL}, "source", "one of"),
    ({"source": 3, "searchUrl": SEARCH_URL}, "source", "one of"),
    (search_body(extra=1), "extra", "unknown field"),
    (search_body(postUrl=POST_URL), "postUrl", "not allowed with source linkedin_search"),
    (search_body(maxResults="10"), "maxResults", "integer"),
    (search_body(maxResults=10.5), "maxResults", "integer"),
    (search_body(maxResults=True), "maxResults", "integer"),
    (search_body(maxResults=None), "maxResults", "integer"),
    (search_body(maxResults=0), "maxResults", "at least 1"),
    (search_body(maxResults=1001), "maxResults", "at most 1000"),
    (search_body(searchEmails="yes"), "searchEmails", "true or false"),
    (search_body(searchEmails=None), "searchEmails", "true or false"),
    ({"source": "linkedin_search", "searchUrl": 42}, "searchUrl", "string"),
    (
        {"source": "linkedin_search", "searchUrl": "https://evil.com/search/results/"},
        "searchUrl",
        "linkedin",
    ),
    (
        {"source": "linkedin_search", "searchUrl": "https://www.linkedin.com/in/x"},
        "searchUrl",
        "search",
    ),
    ({"source": "sales_navigator"}, "savedSearchId, leadListId", "exactly one"),
    (
        {"source": "sales_navigator", "savedSearchId": "1", "leadListId": "2"},
        "savedSearchId, leadListId",
        "exactly one",
    ),
    ({"source": "sales_navigator", "leadListId": ""}, "leadListId", "1 to 128"),
    ({"source": "sales_navigator", "leadListId": "a b"}, "leadListId", "1 to 128"),
    ({"source": "post_commenters", "postUrl": "https://www.linkedin.com/feed/"}, "postUrl", "post"),
    ({"source": "url_upload", "profileUrls": []}, "profileUrls", "1 to 1000"),
    (
        {"source": "url_upload", "profileUrls": "https://www.linkedin.com/in/a"},
        "profileUrls",
        "array",
    ),
    (
        {
            "source": "url_upload",
            "profileUrls": [f"https://www.linkedin.com/in/p{i}" for i in range(1001)],
        },
        "profileUrls",
        "1 to 1000",
    ),
    (
        {"source": "url_upload", "profileUrls": ["https://www.linkedin.com/in/a", 7]},
        "profileUrls[1]",
        "string",
    ),
    (
        {
            "source": "url_upload",
            "profileUrls": ["https://www.linkedin.com/in/a", "https://x.com/in/b"],
        },
        "profileUrls[1]",
        "linkedin",
    ),
    (
        {"source": "url_upload", "profileUrls": ["https://www.linkedin.com/company/x"]},
        "profileUrls[0]",
        "profile",
    ),
    ([search_body()], "body", "JSON object"),
    ("linkedin_search", "body", "JSON object"),
]


class TestStartRejected:
    @pytest.mark.parametrize(("body", "field", "rule"), INVALID_BODIES)
    async def test_400_names_the_field_and_the_rule(
        self,
        client: httpx.AsyncClient,
        factory: Factory,
        engine: AsyncEngine,
        body: Any,
        field: str,
        rule: str,
    ) -> None:
        who = await tenant(factory)

        response = await start(client, who, body)

        assert response.status_code == 400, response.text
        error = error_of(response)
        assert error["code"] == "VALIDATION_ERROR"
        assert error["details"].startswith(f"{field}: "), error
        assert rule in error["details"], error
        assert await count_jobs(engine, who.group) == 0

    @pytest.mark.parametrize(
        "raw",
        [b"", b"{", b"not json", b'{"source": NaN}', b"\xff\xfe", b'{"source":"a","source":"b"}'],
    )
    async def test_a_body_that_is_not_a_json_object_is_400(
        self, client: httpx.AsyncClient, factory: Factory, raw: bytes
    ) -> None:
        who = await tenant(factory)

        response = await client.post(
            who.jobs, content=raw, headers={**who.headers, "Content-Type": "application/json"}
        )

        assert response.status_code == 400, response.text
        error = error_of(response)
        assert error["code"] == "VALIDATION_ERROR"
        assert error["details"].startswith(("body: ", "source: "))

    async def test_the_cap_in_details_is_the_plans(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        who = await tenant(factory, plan="tester")

        response = await start(client, who, search_body(maxResults=101))

        assert response.status_code == 400
        assert error_of(response)["details"] == (
            "maxResults: must be at most 100, the cap of the account group's tester plan; got 101."
        )

    async def test_402_says_what_is_needed_and_available(
        self, client: httpx.AsyncClient, factory: Factory, engine: AsyncEngine
    ) -> None:
        who = await tenant(factory, credits=150)

        response = await start(client, who, search_body(maxResults=100, searchEmails=True))

        assert response.status_code == 402, response.text
        error = error_of(response)
        assert error["code"] == "INSUFFICIENT_CREDITS"
        assert error["details"] == "requires 200 credits, 150 available"
        assert await count_jobs(engine, who.group) == 0
        view = await credits_view(engine, who.group)
        assert (view.balance, view.reserved) == (150, 0)

    async def test_402_counts_other_jobs_reservations(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        who = await tenant(factory, credits=150)
        assert (await start(client, who, search_body(maxResults=100))).status_code == 202

        response = await start(client, who, search_body(maxResults=100))

        assert response.status_code == 402
        assert error_of(response)["details"] == "requires 100 credits, 50 available"

    async def test_401_without_a_key(self, client: httpx.AsyncClient, factory: Factory) -> None:
        who = await tenant(factory)

        response = await client.post(who.jobs, json=search_body())

        assert response.status_code == 401
        assert error_of(response)["code"] == "UNAUTHORIZED"
        assert response.headers["www-authenticate"] == "Bearer"

    async def test_403_without_prospecting_write(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        who = await tenant(factory, permissions=("prospecting:read", "prospects:read"))

        response = await start(client, who)

        assert response.status_code == 403
        error = error_of(response)
        assert error["code"] == "PERMISSION_DENIED"
        assert "prospecting:write" in error["details"]

    async def test_403_for_a_group_not_granted(
        self, client: httpx.AsyncClient, factory: Factory, engine: AsyncEngine
    ) -> None:
        who = await tenant(factory)
        other = await tenant(factory)

        response = await client.post(
            jobs_path(other.group), json=search_body(), headers=who.headers
        )

        assert response.status_code == 403
        assert error_of(response)["code"] == "ACCOUNT_GROUP_FORBIDDEN"
        assert await count_jobs(engine, other.group) == 0

    @pytest.mark.parametrize("group", ["123", "g" * 24, "507f1f77bcf86cd79943901%0A"])
    async def test_400_for_a_malformed_group_id(
        self, client: httpx.AsyncClient, factory: Factory, group: str
    ) -> None:
        who = await tenant(factory)

        response = await client.post(jobs_path(group), json=search_body(), headers=who.headers)

        assert response.status_code == 400
        error = error_of(response)
        assert (error["code"], error["details"]) == (
            "VALIDATION_ERROR",
            "accountGroupId: must be 24 hexadecimal characters.",
        )

    async def test_group_id_in_upper_case_is_the_same_group(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        who = await tenant(factory)

        response = await client.post(
            jobs_path(who.group.upper()), json=search_body(), headers=who.headers
        )

        assert response.status_code == 202
        assert response.headers["location"].startswith(who.jobs + "/")


class TestIdempotency:
    async def test_same_key_same_body_replays_the_job(
        self, client: httpx.AsyncClient, factory: Factory, engine: AsyncEngine
    ) -> None:
        who = await tenant(factory, credits=100)
        first = await start(client, who, search_body(maxResults=60), "order-1")

        # The same request, spelled differently: key order and the URL's case.
        again = await start(
            client,
            who,
            {
                "maxResults": 60,
                "searchUrl": SEARCH_URL.replace("www.linkedin", "WWW.LinkedIn"),
                "source": "linkedin_search",
            },
            "order-1",
        )

        assert first.status_code == 202
        assert again.status_code == 202, again.text
        assert again.json()["data"] == first.json()["data"]
        assert again.headers["idempotent-replayed"] == "true"
        assert again.headers["location"] == first.headers["location"]
        assert await count_jobs(engine, who.group) == 1
        # One reservation: the replay reserved nothing (else this 60 would not fit in 100).
        assert (await credits_view(engine, who.group)).reserved == 60

    async def test_a_finished_job_replays_as_200_with_its_status(
        self, client: httpx.AsyncClient, factory: Factory, engine: AsyncEngine
    ) -> None:
        who = await tenant(factory)
        first = await start(client, who, search_body(), "k")
        job_id = first.json()["data"]["jobId"]
        await set_job(engine, job_id, status="completed")

        again = await start(client, who, search_body(), "k")

        assert again.status_code == 200
        assert again.json()["data"] == {**first.json()["data"], "status": "completed"}
        assert again.headers["idempotent-replayed"] == "true"
        assert "retry-after" not in again.headers

    async def test_same_key_other_body_is_409(
        self, client: httpx.AsyncClient, factory: Factory, engine: AsyncEngine
    ) -> None:
        who = await tenant(factory)
        assert (await start(client, who, search_body(maxResults=10), "k")).status_code == 202

        response = await start(client, who, search_body(maxResults=11), "k")

        assert response.status_code == 409
        error = error_of(response)
        assert error["code"] == "IDEMPOTENCY_KEY_REUSED"
        assert error["details"].startswith("Idempotency-Key: ")
        assert await count_jobs(engine, who.group) == 1

    async def test_the_key_is_scoped_to_the_api_key_and_the_group(
        self, client: httpx.AsyncClient, factory: Factory, engine: AsyncEngine
    ) -> None:
        who = await tenant(factory)
        _, second_key = await factory.key([who.group], ("prospecting:write",))
        first = await start(client, who, search_body(), "shared")

        other = await client.post(
            who.jobs,
            json=search_body(),
            headers={**bearer(second_key), "Idempotency-Key": "shared"},
        )

        assert other.status_code == 202
        assert other.json()["data"]["jobId"] != first.json()["data"]["jobId"]
        assert "idempotent-replayed" not in other.headers
        assert await count_jobs(engine, who.group) == 2

    @pytest.mark.parametrize("key", ["", "a b", "é", "x" * 256, "tab\there"])
    async def test_a_malformed_key_is_400(
        self, client: httpx.AsyncClient, factory: Factory, key: str
    ) -> None:
        who = await tenant(factory)

        response = await client.post(
            who.jobs,
            json=search_body(),
            headers=[
                *((name.encode(), value.encode()) for name, value in who.headers.items()),
                (b"Idempotency-Key", key.encode("utf-8")),
            ],
        )

        assert response.status_code == 400, response.text
        assert error_of(response)["details"].startswith("Idempotency-Key: ")

    async def test_the_longest_key_is_accepted(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        who = await tenant(factory)

        response = await start(client, who, search_body(), "~" * 255)

        assert response.status_code == 202


class TestOrderOfChecks:
    """401 → 429 → 403 PERMISSION_DENIED → 400 path → 403 GROUP → 400 body → 409 → 402."""

    async def test_401_before_a_bad_body_and_a_bad_path(self, client: httpx.AsyncClient) -> None:
        response = await client.post(jobs_path("nope"), content=b"{")

        assert response.status_code == 401

    async def test_permission_before_a_bad_path(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        who = await tenant(factory, permissions=("prospecting:read",))

        response = await client.post(jobs_path("nope"), content=b"{", headers=who.headers)

        assert (response.status_code, error_of(response)["code"]) == (403, "PERMISSION_DENIED")

    async def test_bad_path_before_the_group_check(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        who = await tenant(factory)

        response = await client.post(jobs_path("z" * 24), content=b"{", headers=who.headers)

        assert response.status_code == 400
        assert error_of(response)["details"].startswith("accountGroupId: ")

    async def test_group_check_before_the_body(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        who = await tenant(factory)

        response = await client.post(jobs_path(new_id()), content=b"{", headers=who.headers)

        assert (response.status_code, error_of(response)["code"]) == (
            403,
            "ACCOUNT_GROUP_FORBIDDEN",
        )

    async def test_body_before_credits(self, client: httpx.AsyncClient, factory: Factory) -> None:
        who = await tenant(factory, credits=0)

        response = await start(client, who, search_body(maxResults=0))

        assert response.status_code == 400

    async def test_key_reuse_before_credits(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        who = await tenant(factory, credits=10)
        assert (await start(client, who, search_body(maxResults=10), "k")).status_code == 202

        response = await start(client, who, search_body(maxResults=5), "k")

        assert response.status_code == 409

    async def test_a_replay_needs_no_credits(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        who = await tenant(factory, credits=10)
        assert (await start(client, who, search_body(maxResults=10), "k")).status_code == 202

        response = await start(client, who, search_body(maxResults=10), "k")

        assert response.status_code == 202
        assert response.headers["idempotent-replayed"] == "true"
