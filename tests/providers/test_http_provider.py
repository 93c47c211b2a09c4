"""The HTTP provider against a real fake provider (tests/fakeprovider.py): what it sends, how it
pages, and how each upstream fault ends (retries, waits, deadline, failure class)."""

from __future__ import annotations

import pytest

from sonarly_api.providers.base import Page, Profile, ProviderAccount
from sonarly_api.providers.http import HttpProvider
from tests.fakeprovider import FakeProvider, make_profiles
from tests.support import PROVIDER_ACCOUNT as ACCOUNT


@pytest.fixture
def fake(server: FakeProvider) -> FakeProvider:
    server.reset()
    server.account(ACCOUNT.provider_account_id or "").lead_lists["ll-1"] = (
        "CTOs",
        make_profiles("cto", 60),
    )
    return server


async def read_all(provider: HttpProvider, lead_list: str = "ll-1") -> list[Profile]:
    profiles: list[Profile] = []
    cursor: str | None = None
    while True:
        page: Page = await provider.lead_list_page(ACCOUNT, lead_list, cursor)
        profiles.extend(page.profiles)
        if page.next_cursor is None:
            return profiles
        cursor = page.next_cursor


class TestRequests:
    async def test_pages_carry_the_token_and_pass_the_cursor_back(
        self, provider: HttpProvider, fake: FakeProvider
    ) -> None:
        profiles = await read_all(provider)

        assert [p.member_id for p in profiles] == [f"cto-m{i}" for i in range(60)]
        assert profiles[1] == Profile(
            member_id="cto-m1",
            public_identifier="cto-1",
            profile_url="https://www.linkedin.com/in/cto-1",
            name="Cto Person 1",
            headline="Headline 1",
        )
        sent = fake.requests_to("/members")
        assert [r.path for r in sent] == [
            "/v1/accounts/acc-1/sales-navigator/lead-lists/ll-1/members"
        ] * 3
        assert all(r.headers["authorization"] == f"Bearer {fake.token}" for r in sent)
        assert all(r.query["limit"] == "25" for r in sent)
        assert "cursor" not in sent[0].query
        # Each request carries the cursor the previous answer gave.
        first = await provider.lead_list_page(ACCOUNT, "ll-1", None)
        second = await provider.lead_list_page(ACCOUNT, "ll-1", first.next_cursor)
        assert sent[1].query["cursor"] == first.next_cursor
        assert sent[2].query["cursor"] == second.next_cursor

    async def test_listings_read_every_page(
        self, provider: HttpProvider, fake: FakeProvider
    ) -> None:
        account = fake.account("acc-1")
        for i in range(130):
            account.saved_searches[f"ss-{i}"] = (f"Search {i}", [])

        items = await provider.list_saved_searches(ACCOUNT)

        assert [(i.id, i.name) for i in items] == [(f"ss-{i}", f"Search {i}") for i in range(130)]
        sent = fake.requests_to("/saved-searches")
        assert [r.query.get("cursor") is None for r in sent] == [True, False]
        assert [r.query["limit"] for r in sent] == ["100", "100"]

    async def test_search_commenters_lookup_and_enrich(
        self, provider: HttpProvider, fake: FakeProvider
    ) -> None:
        account = fake.account("acc-1")
        search = "https://www.linkedin.com/search/results/people/?keywords=cto&page=1"
        post = "https://www.linkedin.com/posts/someone_activity-1/"
        account.searches[search] = make_profiles("s", 3)
        account.posts[post] = make_profiles("c", 2)
        known = make_profiles("u", 30)
        fake.profiles = {p["profileUrl"]: p for p in known}
        fake.enrichments = {
            "u-m0": {"companyName": "Stone & Co", "title": "CTO", "workEmail": "u0@stone.example"}
        }

        found = await provider.search_page(ACCOUNT, search, None)
        commenters = await provider.post_commenters_page(ACCOUNT, post, None)
        urls = [p["profileUrl"] for p in known] + ["https://www.linkedin.com/in/nobody/"]
        looked_up = await provider.profiles_by_url(ACCOUNT, urls)
        enriched = await provider.enrich(ACCOUNT, looked_up[:2], with_email=True)
        without_email = await provider.enrich(ACCOUNT, looked_up[:1], with_email=False)

        assert [p.member_id for p in found.profiles] == ["s-m0", "s-m1", "s-m2"]
        assert fake.requests_to("/people/search")[0].query["url"] == search
        assert [p.member_id for p in commenters.profiles] == ["c-m0", "c-m1"]
        assert fake.requests_to("/posts/commenters")[0].query["postUrl"] == post
        # 31 URLs: two calls of at most 25; the unknown one is left out.
        assert [len(r.body["profileUrls"]) for r in fake.requests_to("/profiles/lookup")] == [25, 6]
        assert [p.member_id for p in looked_up] == [f"u-m{i}" for i in range(30)]
        assert [(e.member_id, e.company_name, e.title, e.work_email) for e in enriched] == [
            ("u-m0", "Stone & Co", "CTO", "u0@stone.example")
        ]
        assert without_email[0].work_email is None
        assert [r.body for r in fake.requests_to("/profiles/enrich")] == [
            {"memberIds": ["u-m0", "u-m1"], "workEmail": True},
            {"memberIds": ["u-m0"], "workEmail": False},
        ]
        # Public profile data: read with the token alone, not under the provider account.
        assert {r.path for r in fake.requests_to("/profiles/")} == {
            "/v1/profiles/lookup",
            "/v1/profiles/enrich",
        }

    async def test_url_upload_needs_no_connected_account(
        self, provider: HttpProvider, fake: FakeProvider
    ) -> None:
        known = make_profiles("u", 2)
        fake.profiles = {p["profileUrl"]: p for p in known}
        fake.enrichments = {"u-m1": {"companyName": "Acme", "title": None}}
        unconnected = ProviderAccount("4" * 24, None)

        looked_up = await provider.profiles_by_url(unconnected, [p["profileUrl"] for p in known])
        enriched = await provider.enrich(unconnected, looked_up, with_email=False)

        assert [p.member_id for p in looked_up] == ["u-m0", "u-m1"]
        assert [(e.member_id, e.company_name) for e in enriched] == [("u-m1", "Acme")]
        assert all(r.headers["authorization"] == f"Bearer {fake.token}" for r in fake.requests)

    async def test_ids_stay_one_path_segment(
        self, provider: HttpProvider, fake: FakeProvider
    ) -> None:
        fake.account("acc-1").lead_lists["a/b?c"] = ("Odd id", make_profiles("odd", 2))

        page = await provider.lead_list_page(ACCOUNT, "a/b?c", None)

        assert [p.member_id for p in page.profiles] == ["odd-m0", "odd-m1"]
        assert fake.requests[-1].path == (
            "/v1/accounts/acc-1/sales-navigator/lead-lists/a%2Fb%3Fc/members"
        )
