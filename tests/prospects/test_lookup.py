"""GET /v1/accounts/{accountGroupId}/prospects/by-provider-id/{providerId}."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import Factory, bearer
from tests.support import assert_error

PATH = "/v1/accounts/{group}/prospects/by-provider-id/{provider}"


def url(group: str, provider: str) -> str:
    return PATH.format(group=group, provider=provider)


def assert_envelope_ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    assert body["error"] is None
    assert body["traceId"] == response.headers["x-trace-id"]
    assert response.headers["cache-control"] == "no-store"
    data: dict[str, Any] = body["data"]
    return data


class TestResolution:
    async def test_unique(self, client: httpx.AsyncClient, factory: Factory) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        match = await factory.prospect(
            group,
            "crm-42",
            public_identifier="avery-stone",
            linkedin_url="https://www.linkedin.com/in/avery-stone",
            name="Avery Stone",
            company_name="Stone & Co",
            title="CTO",
        )

        response = await client.get(url(group, "crm-42"), headers=bearer(key))

        assert assert_envelope_ok(response) == {
            "providerId": "crm-42",
            "resolution": "unique",
            "matches": [match],
        }

    async def test_none(self, client: httpx.AsyncClient, factory: Factory) -> None:
        group = await factory.group()
        _, key = await factory.key([group])

        response = await client.get(url(group, "no-such-id"), headers=bearer(key))

        assert assert_envelope_ok(response) == {
            "providerId": "no-such-id",
            "resolution": "none",
            "matches": [],
        }

    async def test_ambiguous_returns_every_match_in_creation_order(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        first = await factory.prospect(group, "dup", name="First")
        second = await factory.prospect(group, "dup", name="Second")
        third = await factory.prospect(group, "dup", name="Third")

        data = assert_envelope_ok(await client.get(url(group, "dup"), headers=bearer(key)))

        assert data["resolution"] == "ambiguous"
        assert data["matches"] == [first, second, third]

    async def test_ambiguous_is_capped_at_50(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        for _ in range(52):
            await factory.prospect(group, "many")

        data = assert_envelope_ok(await client.get(url(group, "many"), headers=bearer(key)))

        assert data["resolution"] == "ambiguous"
        assert len(data["matches"]) == 50

    async def test_metadata_is_null_when_nothing_is_stored(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        match = await factory.prospect(group, "bare")

        data = assert_envelope_ok(await client.get(url(group, "bare"), headers=bearer(key)))

        (only,) = data["matches"]
        assert only == match
        for field in ("publicIdentifier", "linkedinUrl", "name", "companyName", "title"):
            assert only[field] is None

    async def test_matching_is_exact_and_case_sensitive(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        await factory.prospect(group, "AbC")

        for other in ("abc", "ABC", "AbC0", "Ab"):
            data = assert_envelope_ok(await client.get(url(group, other), headers=bearer(key)))
            assert (data["providerId"], data["resolution"]) == (other, "none")

    async def test_provider_id_is_echoed_after_url_decoding(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        match = await factory.prospect(group, "zoë:7?#&é")

        response = await client.get(url(group, "zo%C3%AB%3A7%3F%23%26%C3%A9"), headers=bearer(key))

        data = assert_envelope_ok(response)
        assert data == {"providerId": "zoë:7?#&é", "resolution": "unique", "matches": [match]}

    async def test_account_group_id_is_case_insensitive(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        match = await factory.prospect(group, "p1")

        data = assert_envelope_ok(await client.get(url(group.upper(), "p1"), headers=bearer(key)))

        assert data["matches"] == [match]


class TestIsolation:
    async def test_prospect_of_another_group_is_invisible(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        mine, theirs = await factory.group("mine"), await factory.group("theirs")
        _, key = await factory.key([mine])
        await factory.prospect(theirs, "shared-provider-id", name="Not yours")

        data = assert_envelope_ok(
            await client.get(url(mine, "shared-provider-id"), headers=bearer(key))
        )

        assert data == {"providerId": "shared-provider-id", "resolution": "none", "matches": []}

    async def test_duplicates_across_groups_are_not_ambiguous(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        mine, theirs = await factory.group("mine"), await factory.group("theirs")
        _, key = await factory.key([mine])
        match = await factory.prospect(mine, "p")
        await factory.prospect(theirs, "p")

        data = assert_envelope_ok(await client.get(url(mine, "p"), headers=bearer(key)))

        assert (data["resolution"], data["matches"]) == ("unique", [match])

    async def test_same_person_in_two_groups_shows_each_groups_own_record(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        first, second = await factory.group(), await factory.group()
        _, key = await factory.key([first, second])
        in_first = await factory.prospect(first, "p", title="VP Sales")
        in_second = await factory.prospect(
            second, "p", person_id=in_first["personId"], title="Advisor"
        )

        one = assert_envelope_ok(await client.get(url(first, "p"), headers=bearer(key)))
        two = assert_envelope_ok(await client.get(url(second, "p"), headers=bearer(key)))

        assert one["matches"] == [in_first]
        assert two["matches"] == [in_second]
        assert in_first["personId"] == in_second["personId"]
        assert in_first["prospectId"] != in_second["prospectId"]

    async def test_group_not_granted_is_forbidden_and_says_nothing_about_existence(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        mine, existing = await factory.group(), await factory.group()
        _, key = await factory.key([mine])
        await factory.prospect(existing, "p")
        missing = "0" * 24

        to_existing = await client.get(url(existing, "p"), headers=bearer(key))
        to_missing = await client.get(url(missing, "p"), headers=bearer(key))

        first = assert_error(to_existing, 403, "ACCOUNT_GROUP_FORBIDDEN")
        second = assert_error(to_missing, 403, "ACCOUNT_GROUP_FORBIDDEN")
        assert first == second


class TestValidation:
    @pytest.mark.parametrize(
        ("provider", "fragment"),
        [
            ("a%2Fb", "'/'"),
            ("a%2fb", "'/'"),
            ("a%20b", "whitespace"),
            ("a%09b", "whitespace"),
            ("a%00b", "control"),
            ("a%7Fb", "control"),
            ("%E2%80%A8", "control"),
            ("x" * 257, "1 to 256"),
            ("", "1 to 256"),
            ("a/b", "'/'"),
        ],
    )
    async def test_bad_provider_id(
        self, client: httpx.AsyncClient, factory: Factory, provider: str, fragment: str
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])

        error = assert_error(
            await client.get(url(group, provider), headers=bearer(key)), 422, "VALIDATION_ERROR"
        )

        assert error["details"].startswith("providerId:")
        assert fragment in error["details"]

    async def test_provider_id_of_256_characters_is_accepted(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        longest = "é" * 256
        match = await factory.prospect(group, longest)

        data = assert_envelope_ok(await client.get(url(group, longest), headers=bearer(key)))

        assert data["matches"] == [match]

    @pytest.mark.parametrize(
        "group",
        ["abc", "g" * 24, "0" * 23, "0" * 25, "0" * 12 + "%2F" + "0" * 11, "%20" + "0" * 23],
    )
    async def test_bad_account_group_id(
        self, client: httpx.AsyncClient, factory: Factory, group: str
    ) -> None:
        mine = await factory.group()
        _, key = await factory.key([mine])

        error = assert_error(
            await client.get(url(group, "p"), headers=bearer(key)), 422, "VALIDATION_ERROR"
        )

        assert error["details"] == "accountGroupId: must be 24 hexadecimal characters."


class TestOrderOfChecks:
    """401 → 429 → 403 PERMISSION_DENIED → 422 → 403 ACCOUNT_GROUP_FORBIDDEN → 200."""

    async def test_missing_permission_comes_before_validation(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group], permissions=("prospecting:read",))

        response = await client.get(url("not-an-id", "a%2Fb"), headers=bearer(key))

        error = assert_error(response, 403, "PERMISSION_DENIED")
        assert error["details"] == "Missing permission: prospects:read."

    async def test_validation_comes_before_the_group_grant(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        group, other = await factory.group(), await factory.group()
        _, key = await factory.key([group])

        response = await client.get(url(other, "a%2Fb"), headers=bearer(key))

        assert_error(response, 422, "VALIDATION_ERROR")

    async def test_no_permission_implies_another(
        self, client: httpx.AsyncClient, factory: Factory
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group], permissions=("prospecting:read", "prospecting:write"))

        response = await client.get(url(group, "p"), headers=bearer(key))

        assert_error(response, 403, "PERMISSION_DENIED")

    async def test_unauthenticated_comes_first(self, client: httpx.AsyncClient) -> None:
        response = await client.get(url("not-an-id", "a%2Fb"))

        assert_error(response, 401, "UNAUTHORIZED")
        assert response.headers["www-authenticate"] == "Bearer"
