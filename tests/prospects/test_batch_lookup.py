"""POST /v1/accounts/{accountGroupId}/prospects/by-provider-id: the batch lookup's contract."""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from sonarly_api.app import create_app
from sonarly_api.errors import ValidationFailed
from sonarly_api.migrations import upgrade
from sonarly_api.prospects import validation
from tests.conftest import Factory, QueryCounter, bearer, client_for, make_settings, started
from tests.support import assert_error, batch_url, data_bytes, post_batch, single_url


def items_of(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["success"], body["error"]) == (True, None)
    assert body["traceId"] == response.headers["x-trace-id"]
    assert response.headers["cache-control"] == "no-store"
    assert list(body["data"]) == ["items"]
    items: list[dict[str, Any]] = body["data"]["items"]
    return items


class TestAnswers:
    async def test_one_item_per_id_in_request_order_repeats_answered_twice(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        unique = await factory.prospect(group, "crm-1", name="Avery Stone", title="CTO")
        first = await factory.prospect(group, "dup", company_name="Stone & Co")
        second = await factory.prospect(group, "dup")

        response = await post_batch(client, group, ["dup", "nobody", "crm-1", "dup"], key)

        assert items_of(response) == [
            {"providerId": "dup", "resolution": "ambiguous", "matches": [first, second]},
            {"providerId": "nobody", "resolution": "none", "matches": []},
            {"providerId": "crm-1", "resolution": "unique", "matches": [unique]},
            {"providerId": "dup", "resolution": "ambiguous", "matches": [first, second]},
        ]

    async def test_each_item_is_the_single_lookups_data_byte_for_byte(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        for provider in ("zoë:7?#&é", "many", "many", "x"):
            await factory.prospect(group, provider, name='Zoë "Z" <Müller>', title=None)
        ids = ["zoë:7?#&é", "many", "absent", "x"]

        batch = await post_batch(client, group, ids, key)
        singles = [
            data_bytes(await client.get(single_url(group, p), headers=bearer(key))) for p in ids
        ]

        assert data_bytes(batch) == b'{"items":[' + b",".join(singles) + b"]}"

    async def test_at_most_50_matches_per_id(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        for _ in range(52):
            await factory.prospect(group, "many")

        items = items_of(await post_batch(client, group, ["many", "many"], key))

        assert [(i["resolution"], len(i["matches"])) for i in items] == [("ambiguous", 50)] * 2

    async def test_only_the_groups_own_prospects_and_the_group_id_in_either_case(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        mine, theirs = await factory.group(), await factory.group()
        _, key = await factory.key([mine])
        own = await factory.prospect(mine, "shared")
        await factory.prospect(theirs, "shared")
        await factory.prospect(theirs, "only-theirs")

        items = items_of(await post_batch(client, mine.upper(), ["shared", "only-theirs"], key))

        assert items == [
            {"providerId": "shared", "resolution": "unique", "matches": [own]},
            {"providerId": "only-theirs", "resolution": "none", "matches": []},
        ]

    async def test_a_hundred_ids_are_one_sql_statement(
        self, client: httpx.AsyncClient, factory: Factory, count_queries: QueryCounter
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        for i in range(0, 100, 3):
            await factory.prospect(group, f"crm-{i}")
        # The key read and its cache are not what is counted here.
        assert (await post_batch(client, group, ["warm"], key)).status_code == 200
        before = await count_queries.settled()

        items = items_of(await post_batch(client, group, [f"crm-{i}" for i in range(100)], key))

        assert await count_queries.settled() - before == 1
        assert [i["resolution"] for i in items] == [
            "unique" if i % 3 == 0 else "none" for i in range(100)
        ]


NOT_JSON = 'request body: must be JSON (UTF-8), {"providerIds": [...]}'
NOT_OBJECT = 'request body: must be a JSON object {"providerIds": [...]}'
CONTROL = "must not contain whitespace or control characters"
LENGTH = "must be 1 to 256 characters long, got"

# (body sent, details expected)
BAD_BODIES: list[tuple[bytes, str]] = [
    (b"", NOT_JSON),
    (b"providerIds=a", NOT_JSON),
    (b'{"providerIds": ["a"]', NOT_JSON),
    (b'\xff{"providerIds": ["a"]}', NOT_JSON),
    (b'{"providerIds": ["\\ud800"]}', NOT_JSON),  # a lone surrogate
    (b'{"providerIds": ' + b"[" * 5000, NOT_JSON),  # nested past the parser's depth limit
    (b'["a"]', NOT_OBJECT),
    (b"null", NOT_OBJECT),
    (b"{}", "providerIds: required"),
    (b'{"providerIDs": ["a"]}', "providerIds: required"),
    (b'{"providerIds": ["a"], "x": 1}', "request body: unknown field; providerIds is the only one"),
    (b'{"providerIds": "a"}', "providerIds: must be an array of provider ids"),
    (b'{"providerIds": null}', "providerIds: must be an array of provider ids"),
    (b'{"providerIds": []}', "providerIds: must hold 1 to 100 ids, got 0"),
    (json.dumps({"providerIds": ["a"] * 101}).encode(), "providerIds: must hold 1 to 100 ids, got 101"),  # noqa: E501
    (b'{"providerIds": ["a", 7]}', "providerIds[1]: must be a string"),
    (b'{"providerIds": ["a", null]}', "providerIds[1]: must be a string"),
    (b'{"providerIds": ["a", "b", "c", "d/e", "f g"]}', "providerIds[3]: must not contain '/'"),
    (b'{"providerIds": ["a", "f g"]}', f"providerIds[1]: {CONTROL}"),
    (b'{"providerIds": ["a\\u0000"]}', f"providerIds[0]: {CONTROL}"),
    (b'{"providerIds": ["a\\u2028"]}', f"providerIds[0]: {CONTROL}"),
    (b'{"providerIds": ["ok", ""]}', f"providerIds[1]: {LENGTH} 0"),
    (json.dumps({"providerIds": ["ok", "x" * 257]}).encode(), f"providerIds[1]: {LENGTH} 257"),
]  # fmt: skip


class TestValidation:
    @pytest.mark.parametrize(("body", "details"), BAD_BODIES)
    async def test_bad_body_is_a_422_naming_the_first_bad_element(
        self, client: httpx.AsyncClient, factory: Factory, body: bytes, details: str
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])

        response = await client.post(batch_url(group), content=body, headers=bearer(key))

        error = assert_error(response, 422, "VALIDATION_ERROR")
        assert error["details"] == details

    async def test_ids_of_256_characters_and_any_allowed_character_pass(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        longest = "é" * 256
        match = await factory.prospect(group, longest)

        items = items_of(await post_batch(client, group, [longest, "%2F", ".."], key))

        assert items[0]["matches"] == [match]
        assert [i["providerId"] for i in items] == [longest, "%2F", ".."]

    @pytest.mark.parametrize("group", ["abc", "g" * 24, "0" * 25])
    async def test_bad_account_group_id_comes_before_the_body(
        self, client: httpx.AsyncClient, factory: Factory, group: str
    ) -> None:
        mine = await factory.group()
        _, key = await factory.key([mine])

        response = await client.post(batch_url(group), content=b"not json", headers=bearer(key))

        error = assert_error(response, 422, "VALIDATION_ERROR")
        assert error["details"] == "accountGroupId: must be 24 hexadecimal characters."

    async def test_a_body_over_64_kib_is_refused_from_its_content_length(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        body = b'{"providerIds": ["' + b"a" * (64 * 1024) + b'"]}'

        response = await client.post(batch_url(group), content=body, headers=bearer(key))

        error = assert_error(response, 422, "VALIDATION_ERROR")
        assert error["details"] == "request body: must be at most 64 KiB"

    async def test_a_streamed_body_over_64_kib_is_refused_without_reading_it_all(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        sent = []

        async def chunks() -> AsyncIterator[bytes]:
            # No Content-Length: chunked. A megabyte in all, 4 KiB at a time.
            for _ in range(256):
                sent.append(1)
                yield b" " * 4096

        response = await client.post(batch_url(group), content=chunks(), headers=bearer(key))

        error = assert_error(response, 422, "VALIDATION_ERROR")
        assert error["details"] == "request body: must be at most 64 KiB"
        assert len(sent) <= 64 // 4 + 2  # stopped right after the limit, not at the end

    async def test_a_body_of_exactly_64_kib_is_read(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        body = b'{"providerIds": ["a"]}'
        body += b" " * (64 * 1024 - len(body))

        items = items_of(await client.post(batch_url(group), content=body, headers=bearer(key)))

        assert items == [{"providerId": "a", "resolution": "none", "matches": []}]

    def test_the_quick_check_agrees_with_the_rules_on_every_code_point(self) -> None:
        """validation's one-regex test (the common case) refuses exactly the characters the
        per-character rules refuse, lone surrogates included (a JSON body can carry them)."""
        refused = re.compile(validation._REFUSED.pattern)
        disagreements = []
        for code_point in range(sys.maxunicode + 1):
            char = chr(code_point)
            by_rules = (
                char == "/"
                or char.isspace()
                or unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp")
            )
            if (refused.search(char) is not None) != by_rules:
                disagreements.append(hex(code_point))
            if by_rules:
                with pytest.raises(ValidationFailed):
                    validation.provider_ids({"providerIds": [f"a{char}b"]})
        assert disagreements == []


class TestOrderOfChecks:
    """401 → 429 → 403 PERMISSION_DENIED → 422 → 429 for the batch's cost → 403
    ACCOUNT_GROUP_FORBIDDEN → 200; the body is read only after the first three."""

    async def test_unauthenticated_comes_first_whatever_the_body(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post(batch_url("not-an-id"), content=b"\xff" * 70_000)

        assert_error(response, 401, "UNAUTHORIZED")
        assert response.headers["www-authenticate"] == "Bearer"

    async def test_a_wrong_key_is_401(self, client: httpx.AsyncClient) -> None:
        response = await post_batch(client, "0" * 24, ["a"], "sk_live_notakey")

        assert_error(response, 401, "UNAUTHORIZED")

    async def test_missing_permission_comes_before_validation(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group], permissions=("prospecting:read",))

        response = await client.post(batch_url("nope"), content=b"nope", headers=bearer(key))

        error = assert_error(response, 403, "PERMISSION_DENIED")
        assert error["details"] == "Missing permission: prospects:read."

    async def test_validation_comes_before_the_group_grant(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        group, other = await factory.group(), await factory.group()
        _, key = await factory.key([group])

        response = await post_batch(client, other, ["a/b"], key)

        error = assert_error(response, 422, "VALIDATION_ERROR")
        assert error["details"] == "providerIds[0]: must not contain '/'"

    async def test_group_not_granted_is_forbidden_and_says_nothing_about_existence(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        mine, existing = await factory.group(), await factory.group()
        _, key = await factory.key([mine])
        await factory.prospect(existing, "p")

        first = await post_batch(client, existing, ["p"], key)
        second = await post_batch(client, "0" * 24, ["p"], key)

        assert assert_error(first, 403, "ACCOUNT_GROUP_FORBIDDEN") == assert_error(
            second, 403, "ACCOUNT_GROUP_FORBIDDEN"
        )

    async def test_get_on_the_batch_path_is_405_and_post_on_a_single_path_too(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])

        get = await client.get(batch_url(group), headers=bearer(key))
        post = await client.post(batch_url(group) + "/p", content=b"{}", headers=bearer(key))

        assert_error(get, 405, "METHOD_NOT_ALLOWED")
        assert get.headers["allow"] == "POST"
        assert_error(post, 405, "METHOD_NOT_ALLOWED")
        assert post.headers["allow"] == "GET, HEAD"


@pytest.fixture
def own_database(create_database: Any) -> str:
    """A migrated database of the test's own, which it may break."""
    url: str = create_database()
    upgrade(url)
    return url


class TestServerSideFailures:
    """Real faults, each in a database of its own: the batch statement cannot run."""

    async def test_a_statement_timeout_is_a_503_with_retry_after(self, own_database: str) -> None:
        url = own_database
        engine = create_async_engine(url)
        locker = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
        try:
            factory = Factory(engine)
            group = await factory.group()
            _, key = await factory.key([group])
            settings = make_settings(url, db_statement_timeout_ms=300)
            async for app in started(create_app(settings)):
                async with client_for(app) as http:
                    assert (await post_batch(http, group, ["a"], key)).status_code == 200
                    # The key is cached now; only the lookup waits for the lock.
                    await locker.execute("BEGIN; LOCK TABLE prospects IN ACCESS EXCLUSIVE MODE")
                    response = await post_batch(http, group, ["a", "b"], key)
                    await locker.execute("ROLLBACK")
                    after = await post_batch(http, group, ["a", "b"], key)
        finally:
            await locker.close()
            await engine.dispose()

        error = assert_error(response, 503, "SERVICE_UNAVAILABLE")
        assert response.headers["retry-after"] == "2"
        assert "prospects" not in response.text
        assert "SELECT" not in response.text
        assert error["details"] == "The database cannot be reached. Retry shortly."
        assert after.status_code == 200

    async def test_an_unexpected_database_error_is_a_500_that_says_nothing_of_it(
        self, own_database: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        url = own_database
        engine = create_async_engine(url)
        try:
            factory = Factory(engine)
            group = await factory.group()
            _, key = await factory.key([group])
            async with engine.begin() as conn:
                await conn.execute(text("ALTER TABLE prospects RENAME COLUMN title TO role"))
            async for app in started(create_app(make_settings(url))):
                async with client_for(app) as http:
                    response = await post_batch(http, group, ["a"], key)
        finally:
            await engine.dispose()

        assert_error(response, 500, "INTERNAL_ERROR")
        for leak in ("title", "column", "SELECT", "prospects"):
            assert leak not in response.text
        assert "UndefinedColumnError" in caplog.text
        assert "title" not in caplog.text


class TestDocument:
    """The batch lookup in the OpenAPI document: its body documented (not enforced by FastAPI
    before authentication), its answer schema with an example, its statuses."""

    @pytest.fixture
    async def document(self, client: httpx.AsyncClient) -> dict[str, Any]:
        response = await client.get("/openapi.json")
        assert response.status_code == 200
        document: dict[str, Any] = response.json()
        return document

    def test_operation_body_and_statuses(self, document: dict[str, Any]) -> None:
        operation = document["paths"]["/v1/accounts/{accountGroupId}/prospects/by-provider-id"]
        assert list(operation) == ["post"]
        post = operation["post"]
        assert post["operationId"] == "lookupProspectsByProviderIds"
        assert post["security"] == [{"bearerAuth": []}]
        assert [p["name"] for p in post["parameters"]] == ["accountGroupId"]
        body = post["requestBody"]["content"]["application/json"]
        assert post["requestBody"]["required"] is True
        assert body["schema"] == {
            "$ref": "#/components/schemas/ProviderIdProspectBatchLookupRequest"
        }
        assert body["example"] == {"providerIds": ["507f1f77bcf86cd799439011", "crm-42"]}
        assert set(post["responses"]) == {"200", "401", "403", "422", "429", "500", "503"}
        ok = post["responses"]["200"]["content"]["application/json"]
        assert ok["schema"] == {
            "$ref": "#/components/schemas/ProviderIdProspectBatchLookupSuccessResponse"
        }
        items = ok["example"]["data"]["items"]
        assert [i["resolution"] for i in items] == ["unique", "none"]
        assert post["responses"]["422"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ValidationErrorResponse"
        }

    def test_body_schema_states_the_rules(self, document: dict[str, Any]) -> None:
        schema = document["components"]["schemas"]["ProviderIdProspectBatchLookupRequest"]
        assert schema["required"] == ["providerIds"]
        assert schema["additionalProperties"] is False
        ids = schema["properties"]["providerIds"]
        assert (ids["type"], ids["minItems"], ids["maxItems"]) == ("array", 1, 100)
        assert ids["items"] == {"type": "string", **validation.PROVIDER_ID_SCHEMA}

    def test_answer_schema_is_a_list_of_single_lookups(self, document: dict[str, Any]) -> None:
        schemas = document["components"]["schemas"]
        envelope = schemas["ProviderIdProspectBatchLookupSuccessResponse"]
        assert set(envelope["properties"]) == {"success", "data", "error", "traceId"}
        data = schemas["ProviderIdProspectBatchLookup"]
        assert data["properties"]["items"]["items"] == {
            "$ref": "#/components/schemas/ProviderIdProspectLookup"
        }
