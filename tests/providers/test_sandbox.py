"""The sandbox provider: deterministic, paged like LinkedIn, sizes from none to beyond every
cap, people shared between sources, and the knobs demos and tests use."""

from __future__ import annotations

import pytest

from sonarly_api.ids import new_id
from sonarly_api.providers.base import Page, Profile, ProviderAccount, ProviderError
from sonarly_api.providers.sandbox import MAX_SOURCE_SIZE, PAGE_SIZE, SandboxProvider

SEARCH = "https://www.linkedin.com/search/results/people/?keywords=cto"


def account(group: str | None = None) -> ProviderAccount:
    return ProviderAccount(group or new_id(), None)


async def everything(provider: SandboxProvider, who: ProviderAccount, url: str) -> list[Page]:
    pages, cursor = [], None
    while True:
        page = await provider.search_page(who, url, cursor)
        pages.append(page)
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


@pytest.fixture
def sandbox() -> SandboxProvider:
    return SandboxProvider(page_delay_ms=0)


class TestPages:
    async def test_same_group_and_source_same_data(self, sandbox: SandboxProvider) -> None:
        who = account()
        first = await everything(sandbox, who, SEARCH + "&sandboxResults=60")
        again = await everything(
            SandboxProvider(page_delay_ms=0), who, SEARCH + "&sandboxResults=60"
        )

        assert first == again
        assert [len(p.profiles) for p in first] == [25, 25, 10]
        assert [p.next_cursor for p in first] == ["o:25", "o:50", None]

    async def test_another_group_gets_other_people(self, sandbox: SandboxProvider) -> None:
        url = SEARCH + "&sandboxResults=25"
        mine = (await sandbox.search_page(account(), url, None)).profiles
        theirs = (await sandbox.search_page(account(), url, None)).profiles

        assert {p.member_id for p in mine} != {p.member_id for p in theirs}

    async def test_profiles_look_like_linkedin(self, sandbox: SandboxProvider) -> None:
        page = await sandbox.search_page(account(), SEARCH + "&sandboxResults=25", None)

        for p in page.profiles:
            assert p.member_id.isdigit()
            assert p.profile_url == f"https://www.linkedin.com/in/{p.public_identifier}"
            assert p.name
            assert " " in p.name
        assert len({p.public_identifier for p in page.profiles}) == 25

    async def test_sizes_from_none_to_beyond_every_cap(self, sandbox: SandboxProvider) -> None:
        who = account("0" * 24)
        sizes = []
        for n in range(40):
            pages = await everything(sandbox, who, f"{SEARCH}&page={n}")
            assert all(len(p.profiles) <= PAGE_SIZE for p in pages)
            sizes.append(sum(len(p.profiles) for p in pages))

        assert min(sizes) == 0
        assert max(sizes) > 2_000
        assert max(sizes) <= MAX_SOURCE_SIZE

    async def test_sources_of_a_group_share_people(self, sandbox: SandboxProvider) -> None:
        who = account()
        ids = []
        for source in ("a", "b"):
            pages = await everything(sandbox, who, f"{SEARCH}&q={source}&sandboxResults=1000")
            ids.append({p.public_identifier for page in pages for p in page.profiles})

        assert len(ids[0]) == len(ids[1]) == 1000
        assert len(ids[0] & ids[1]) > 50  # a second job re-imports many

    async def test_a_member_id_with_two_profiles(self, sandbox: SandboxProvider) -> None:
        pages = await everything(sandbox, account(), SEARCH + "&sandboxResults=2000")
        profiles = [p for page in pages for p in page.profiles]
        by_member: dict[str, set[str]] = {}
        for p in profiles:
            by_member.setdefault(p.member_id, set()).add(p.public_identifier)

        assert any(len(handles) == 2 for handles in by_member.values())

    async def test_fails_from_the_page_asked(self, sandbox: SandboxProvider) -> None:
        url = SEARCH + "&sandboxResults=100&sandboxFailAtPage=3"
        who = account()
        first = await sandbox.search_page(who, url, None)
        second = await sandbox.search_page(who, url, first.next_cursor)

        with pytest.raises(ProviderError) as failed:
            await sandbox.search_page(who, url, second.next_cursor)
        assert failed.value.code == "UPSTREAM_ERROR"
        assert failed.value.failure == "timeout"
        assert "linkedin.com" not in failed.value.message

    async def test_a_foreign_cursor_is_refused(self, sandbox: SandboxProvider) -> None:
        with pytest.raises(ProviderError):
            await sandbox.search_page(account(), SEARCH, "not-a-cursor")

    async def test_every_source_kind(self, sandbox: SandboxProvider) -> None:
        who = account()
        lists = await sandbox.list_lead_lists(who)
        searches = await sandbox.list_saved_searches(who)

        assert lists == await sandbox.list_lead_lists(who)
        assert len(lists) == 3
        assert len(searches) == 2
        lead = await sandbox.lead_list_page(who, lists[0].id, None)
        saved = await sandbox.saved_search_page(who, searches[0].id, None)
        post = await sandbox.post_commenters_page(
            who, "https://www.linkedin.com/posts/x-123?sandboxResults=7", None
        )
        assert all(len(p.profiles) <= PAGE_SIZE for p in (lead, saved, post))
        assert len(post.profiles) == 7
        assert post.next_cursor is None
        assert await sandbox.is_connected(who.account_group_id) is not None


class TestUrlsAndEnrichment:
    async def test_profiles_by_url(self, sandbox: SandboxProvider) -> None:
        known = (await sandbox.search_page(account(), SEARCH + "&sandboxResults=2", None)).profiles
        urls = [
            known[0].profile_url,
            "https://www.linkedin.com/in/someone-else/",
            "https://www.linkedin.com/in/unknown-person",
        ]
        found = await sandbox.profiles_by_url(account(), urls)

        assert len(found) == 2  # the unknown profile is left out
        assert found[0] == known[0]
        assert found[1].public_identifier == "someone-else"
        assert found[1] == (await sandbox.profiles_by_url(account(), urls[1:2]))[0]

    async def test_enrich_gives_company_title_and_email_when_asked(
        self, sandbox: SandboxProvider
    ) -> None:
        page = await sandbox.search_page(account(), SEARCH + "&sandboxResults=25", None)
        plain = await sandbox.enrich(account(), page.profiles, with_email=False)
        emails = await sandbox.enrich(account(), page.profiles, with_email=True)

        assert [e.member_id for e in plain] == [p.member_id for p in page.profiles]
        assert all(e.work_email is None for e in plain)
        assert sum(e.company_name is not None for e in plain) >= 20
        assert sum(e.work_email is not None for e in emails) >= 10
        assert [(e.company_name, e.title) for e in plain] == [
            (e.company_name, e.title) for e in emails
        ]

    async def test_enrich_a_made_up_profile(self, sandbox: SandboxProvider) -> None:
        profile = Profile(
            "42", "someone-else", "https://www.linkedin.com/in/someone-else", None, None
        )
        (enriched,) = await sandbox.enrich(account(), [profile], with_email=True)

        assert enriched.member_id == "42"
