"""What every request is checked for, on the fast lane and the framework's stack alike:
a path that is not UTF-8 is refused by the route's validation in its place in the order of
checks (never a match on a replaced character), HEAD is served wherever GET is, ambiguous
requests are 400."""

from __future__ import annotations

import httpx

from tests.conftest import Factory, bearer

LOOKUP = "/v1/accounts/{group}/prospects/by-provider-id/{provider_id}"


def lookup(group: str, provider_id: str) -> str:
    return LOOKUP.format(group=group, provider_id=provider_id)


class TestPathNotUtf8:
    async def test_is_422_and_never_matches_a_replacement_character(
        self, any_client: httpx.AsyncClient, factory: Factory
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        await factory.prospect(group, "x\ufffd")
        # The stored value answers when asked for in UTF-8 ...
        found = await any_client.get(lookup(group, "x%EF%BF%BD"), headers=bearer(key))
        assert found.json()["data"]["resolution"] == "unique"
        # ... and an invalid byte is refused, not replaced.
        response = await any_client.get(lookup(group, "x%ff"), headers=bearer(key))
        assert response.status_code == 422
        body = response.json()
        assert body["error"] == {
            "code": "VALIDATION_ERROR",
            "message": "Request validation failed.",
            "details": "providerId: must be valid UTF-8 once percent-decoded.",
        }
        assert body["traceId"] == response.headers["x-trace-id"]

    async def test_comes_after_authentication_and_permission(
        self, any_client: httpx.AsyncClient, factory: Factory
    ) -> None:
        """The lookup's order: 401 -> 429 -> 403 PERMISSION_DENIED -> 422."""
        group = await factory.group()
        _, no_permission = await factory.key([group], permissions=("prospecting:read",))

        keyless = await any_client.get(lookup(group, "x%ff"))
        forbidden = await any_client.get(lookup(group, "x%ff"), headers=bearer(no_permission))

        assert keyless.status_code == 401
        assert keyless.json()["error"]["code"] == "UNAUTHORIZED"
        assert forbidden.status_code == 403
        assert forbidden.json()["error"]["code"] == "PERMISSION_DENIED"

    async def test_a_bad_account_group_byte_is_the_group_rule(
        self, any_client: httpx.AsyncClient, factory: Factory
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        response = await any_client.get(lookup(group[:-1] + "%ff", "one"), headers=bearer(key))
        assert response.status_code == 422
        assert response.json()["error"]["details"] == (
            "accountGroupId: must be 24 hexadecimal characters."
        )

    async def test_an_overlong_encoding_is_422_too(
        self, any_client: httpx.AsyncClient, factory: Factory
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        # "/" encoded in two bytes: not UTF-8, though a lax decoder reads a slash.
        response = await any_client.get(lookup(group, "a%C0%AFb"), headers=bearer(key))
        assert response.status_code == 422

    async def test_on_any_route_it_matches_nothing_it_should_not(
        self, any_client: httpx.AsyncClient
    ) -> None:
        response = await any_client.get("/v1/accounts%ff")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "NOT_FOUND"
        assert response.json()["error"]["details"] == "No route matches GET /v1/accounts\\xff."


class TestHead:
    async def test_the_lookup(self, any_client: httpx.AsyncClient, factory: Factory) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        await factory.prospect(group, "head-1")
        path = lookup(group, "head-1")
        got = await any_client.get(path, headers=bearer(key))
        head = await any_client.head(path, headers=bearer(key))
        assert head.status_code == got.status_code == 200
        assert head.content == b""
        assert head.headers["content-length"] == got.headers["content-length"]
        assert head.headers["content-type"] == "application/json"
        assert head.headers["x-ratelimit-limit"] == got.headers["x-ratelimit-limit"]
        assert len(head.headers["x-trace-id"]) == 32

    async def test_errors_too(self, any_client: httpx.AsyncClient, factory: Factory) -> None:
        group = await factory.group()
        head = await any_client.head(lookup(group, "p"))
        assert head.status_code == 401
        assert head.content == b""
        assert head.headers["www-authenticate"] == "Bearer"

    async def test_other_get_routes(self, any_client: httpx.AsyncClient, factory: Factory) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        for path, headers in (("/healthz", {}), ("/v1/accounts", bearer(key))):
            got = await any_client.get(path, headers=headers)
            head = await any_client.head(path, headers=headers)
            assert (head.status_code, head.content) == (200, b""), path
            assert head.headers["content-length"] == got.headers["content-length"]

    async def test_allow_lists_head_beside_get(
        self, any_client: httpx.AsyncClient, factory: Factory
    ) -> None:
        group = await factory.group()
        response = await any_client.post(lookup(group, "p"))
        assert response.status_code == 405
        assert response.headers["allow"] == "GET, HEAD"
        assert response.json()["error"]["details"] == (
            "POST is not allowed here. Allowed: GET, HEAD."
        )

    async def test_not_where_get_is_not(self, any_client: httpx.AsyncClient) -> None:
        response = await any_client.head("/no-such-route")
        assert response.status_code == 404
        assert response.content == b""


class TestAmbiguous:
    async def test_two_authorization_headers_are_400(
        self, any_client: httpx.AsyncClient, factory: Factory
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        headers = [("Authorization", f"Bearer {key}"), ("Authorization", "Bearer other")]
        response = await any_client.get(lookup(group, "p"), headers=headers)
        assert response.status_code == 400
        assert response.json()["error"] == {
            "code": "VALIDATION_ERROR",
            "message": "The request is malformed.",
            "details": "The request has 2 Authorization headers; send exactly one.",
        }
