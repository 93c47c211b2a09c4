"""The sandbox provider (PROVIDER=sandbox, the default): synthetic LinkedIn-like data, the same
on every machine, so that jobs work without any account anywhere.

- A global population of people (`_person`: member id, public identifier, name, headline,
  company, title, work email), each a pure function of its index.
- Each account group has a market of `MARKET` of them (seeded by the group); every source of
  the group draws its results from that market (seeded by the group and the source), so two
  sources of a group share people (a second job re-imports them) and groups overlap a little.
- One person in `TWIN_EVERY` shares the previous person's member id with a second profile
  (an old account, say): importing both gives an ambiguous provider id, as in life.
- A source's size goes from none to beyond every plan's cap, decided by a hash of the group
  and the source; a search or post URL may fix it with `sandboxResults=N`, and make the
  provider fail from a page on with `sandboxFailAtPage=N` (for demos and tests).
- Pages of at most `PAGE_SIZE` profiles, each after SANDBOX_PAGE_DELAY_MS.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import parse_qs, urlsplit

from sonarly_api.providers.base import (
    Enrichment,
    Page,
    Profile,
    ProviderAccount,
    ProviderError,
    SourceItem,
)

PAGE_SIZE = 25  # LinkedIn's own result pages
POPULATION = 300_000  # a multiple of TWIN_EVERY
MARKET = 6_000  # people a group's sources draw from
MAX_SOURCE_SIZE = 2_600  # beyond the largest plan cap (2,000)
TWIN_EVERY = 150
SIZE_PARAMETER = "sandboxResults"
FAIL_PARAMETER = "sandboxFailAtPage"


def _words(text: str, separator: str | None = None) -> tuple[str, ...]:
    return tuple(text.split(separator))


_FIRST = _words(
    "Avery Blake Casey Dana Elliot Finley Gray Harper Indra Jules Kai Logan Morgan Noor Oakley "
    "Parker Quinn Riley Sage Taylor Uma Val Wren Yael Zane Amara Bruno Chiara Dev Elena Farid "
    "Greta Hugo Ines Jonas Kenji Lena Mateo Nadia Omar Priya Rafael Sofia Tomas Yusuf Zoe"
)
_LAST = _words(
    "Stone Reed Lane Brooks Carter Diaz Ellis Fischer Garcia Hansen Ito Jensen Kowalski Laurent "
    "Moreau Novak Okafor Patel Quintero Rossi Schmidt Tanaka Ueda Varga Weber Xu Yilmaz Zhang "
    "Andersson Bianchi Costa Dubois Eriksen Ferreira Gomez Haddad Ivanova Jovanovic Kim"
)
_COMPANY_HEADS = _words(
    "Northwind Bluefin Cedar Copper Harbor Summit Lumen Vertex Orbit Meridian Granite Juniper "
    "Atlas Beacon Kestrel Pioneer Riverbend Silverline Tidewater Evergreen"
)
_COMPANY_TAILS = _words(
    "Analytics Logistics Health Robotics Capital Software Energy Foods Labs Systems"
)
_TITLES = _words(
    "CEO|CTO|CFO|VP Sales|VP Marketing|Head of Revenue Operations|Sales Director"
    "|Account Executive|Senior Account Executive|Business Development Manager|Head of Growth"
    "|Marketing Manager|Product Manager|Engineering Manager|Procurement Lead|Operations Director",
    "|",
)
_PROFILE_PATH = re.compile(r"/in/([^/?#]+)/?")
_SANDBOX_IDENTIFIER = re.compile(r"[a-z]+-[a-z]+-([0-9a-f]{8})")
_MEMBER_MULTIPLIER = 387_420_489  # odd and not a multiple of 5: a bijection mod 10**9


def _digest(*parts: str) -> int:
    """A stable hash (Python's own `hash` changes per process)."""
    data = "\x1f".join(parts).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


@dataclass(frozen=True)
class _Person:
    profile: Profile
    enrichment: Enrichment


def _identity(index: int) -> tuple[str, str, str]:
    """(first, last, 8 hex) of a person: the handle LinkedIn would give them."""
    rng = random.Random(index)
    return rng.choice(_FIRST), rng.choice(_LAST), f"{(index * 2_654_435_761) % 2**32:08x}"


def _member_id(index: int) -> str:
    if index % TWIN_EVERY == TWIN_EVERY - 1:
        index -= 1  # a second profile of the previous person's member
    return str(100_000_000 + (index * _MEMBER_MULTIPLIER) % 900_000_000)


@lru_cache(maxsize=20_000)
def _person(index: int) -> _Person:
    first, last, tag = _identity(index)
    handle = f"{first}-{last}-{tag}".lower()
    rng = random.Random(f"person:{index}")
    company: str | None = f"{rng.choice(_COMPANY_HEADS)} {rng.choice(_COMPANY_TAILS)}"
    title: str | None = rng.choice(_TITLES)
    if rng.random() < 0.03:
        company, title = None, None
    email = None
    if company is not None and rng.random() < 0.7:
        domain = company.lower().replace(" ", "") + ".example"
        email = f"{first}.{last}@{domain}".lower()
    member_id = _member_id(index)
    headline = f"{title} at {company}" if company and title else None
    profile = Profile(
        member_id=member_id,
        public_identifier=handle,
        profile_url=f"https://www.linkedin.com/in/{handle}",
        name=f"{first} {last}",
        headline=headline,
    )
    return _Person(profile, Enrichment(member_id, company, title, email))


def _index_of(public_identifier: str) -> int | None:
    """The population index behind a sandbox handle, or None for any other identifier."""
    match = _SANDBOX_IDENTIFIER.fullmatch(public_identifier)
    if match is None:
        return None
    index = (int(match.group(1), 16) * pow(2_654_435_761, -1, 2**32)) % 2**32
    if index >= POPULATION or _person(index).profile.public_identifier != public_identifier:
        return None
    return index


@lru_cache(maxsize=256)
def _market(account_group_id: str) -> tuple[int, ...]:
    """Whole blocks of TWIN_EVERY people, so that both profiles of a member are in it."""
    rng = random.Random(_digest("market", account_group_id))
    blocks = rng.sample(range(POPULATION // TWIN_EVERY), MARKET // TWIN_EVERY)
    return tuple(b * TWIN_EVERY + i for b in blocks for i in range(TWIN_EVERY))


def _default_size(account_group_id: str, source: str) -> int:
    h = _digest("size", account_group_id, source)
    bucket, rest = h % 10, h // 10
    if bucket == 0:
        return 0
    if bucket <= 2:
        return 1 + rest % PAGE_SIZE
    if bucket <= 5:
        return 26 + rest % 275
    if bucket <= 8:
        return 301 + rest % 1_200
    return 2_001 + rest % (MAX_SOURCE_SIZE - 2_000)


@lru_cache(maxsize=256)
def _source_members(account_group_id: str, source: str, size: int) -> tuple[int, ...]:
    market = _market(account_group_id)
    rng = random.Random(_digest("source", account_group_id, source))
    return tuple(rng.sample(market, min(size, len(market))))


def _url_options(url: str) -> tuple[int | None, int | None]:
    """(sandboxResults, sandboxFailAtPage) from a URL's query string."""
    query = parse_qs(urlsplit(url).query)

    def number(name: str) -> int | None:
        values = query.get(name)
        if not values or not values[0].isdigit():
            return None
        return int(values[0])

    size = number(SIZE_PARAMETER)
    return (None if size is None else min(size, MAX_SOURCE_SIZE)), number(FAIL_PARAMETER)


def _offset(cursor: str | None) -> int:
    if cursor is None:
        return 0
    if not cursor.startswith("o:") or not cursor[2:].isdigit():
        raise ProviderError("UPSTREAM_ERROR", "bad_answer", "the provider refused the page cursor")
    return int(cursor[2:])


class SandboxProvider:
    """Deterministic synthetic data; every account group counts as connected."""

    def __init__(self, page_delay_ms: int = 300) -> None:
        self._delay = page_delay_ms / 1000

    async def is_connected(self, account_group_id: str) -> ProviderAccount | None:
        return ProviderAccount(account_group_id, f"sandbox-{account_group_id}")

    async def list_lead_lists(self, account: ProviderAccount) -> list[SourceItem]:
        return self._listing(account, "lead list", ("Q3 pipeline", "Conference leads", "Churned"))

    async def list_saved_searches(self, account: ProviderAccount) -> list[SourceItem]:
        return self._listing(account, "saved search", ("VP Sales EMEA", "Founders in fintech"))

    def _listing(
        self, account: ProviderAccount, kind: str, names: Sequence[str]
    ) -> list[SourceItem]:
        items = []
        for name in names:
            item_id = f"{_digest(kind, account.account_group_id, name):016x}"
            items.append(SourceItem(item_id, name))
        return items

    async def search_page(
        self, account: ProviderAccount, search_url: str, cursor: str | None
    ) -> Page:
        size, fail_at = _url_options(search_url)
        return await self._page(account, f"search:{search_url}", cursor, size, fail_at)

    async def lead_list_page(
        self, account: ProviderAccount, lead_list_id: str, cursor: str | None
    ) -> Page:
        return await self._page(account, f"lead list:{lead_list_id}", cursor)

    async def saved_search_page(
        self, account: ProviderAccount, saved_search_id: str, cursor: str | None
    ) -> Page:
        return await self._page(account, f"saved search:{saved_search_id}", cursor)

    async def post_commenters_page(
        self, account: ProviderAccount, post_url: str, cursor: str | None
    ) -> Page:
        size, fail_at = _url_options(post_url)
        return await self._page(account, f"post:{post_url}", cursor, size, fail_at)

    async def _page(
        self,
        account: ProviderAccount,
        source: str,
        cursor: str | None,
        size: int | None = None,
        fail_at: int | None = None,
    ) -> Page:
        await self._wait()
        offset = _offset(cursor)
        if fail_at is not None and offset // PAGE_SIZE + 1 >= fail_at:
            raise ProviderError(
                "UPSTREAM_ERROR", "timeout", "the LinkedIn data provider did not answer in time"
            )
        group = account.account_group_id
        if size is None:
            size = _default_size(group, source)
        members = _source_members(group, source, size)
        chunk = members[offset : offset + PAGE_SIZE]
        end = offset + len(chunk)
        return Page([_person(i).profile for i in chunk], f"o:{end}" if end < len(members) else None)

    async def profiles_by_url(
        self, account: ProviderAccount, profile_urls: Sequence[str]
    ) -> list[Profile]:
        """A sandbox handle (first-last-8 hex) is that person; any other profile URL is a
        person made up from its handle, except handles starting with "unknown" (left out,
        as the provider leaves out profiles it cannot find)."""
        await self._wait()
        profiles = []
        for url in profile_urls:
            match = _PROFILE_PATH.search(urlsplit(url).path)
            if match is None:
                continue
            handle = match.group(1).lower()
            if handle.startswith("unknown"):
                continue
            index = _index_of(handle)
            if index is not None:
                profiles.append(_person(index).profile)
                continue
            profiles.append(_made_up(handle).profile)
        return profiles

    async def enrich(
        self, account: ProviderAccount, profiles: Sequence[Profile], with_email: bool
    ) -> list[Enrichment]:
        enriched = []
        for profile in profiles:
            index = _index_of(profile.public_identifier)
            person = _person(index) if index is not None else _made_up(profile.public_identifier)
            found = person.enrichment
            enriched.append(
                Enrichment(
                    profile.member_id,
                    found.company_name,
                    found.title,
                    found.work_email if with_email else None,
                )
            )
        return enriched

    async def aclose(self) -> None:
        return None

    async def _wait(self) -> None:
        if self._delay > 0:
            await asyncio.sleep(self._delay)


def _made_up(handle: str) -> _Person:
    """A person for a profile URL outside the sandbox population, stable per handle."""
    h = _digest("handle", handle)
    base = _person(POPULATION + h % 1_000_000)
    member_id = str(1_000_000_000 + h % 9_000_000_000)
    profile = Profile(
        member_id=member_id,
        public_identifier=handle,
        profile_url=f"https://www.linkedin.com/in/{handle}",
        name=base.profile.name,
        headline=base.profile.headline,
    )
    found = base.enrichment
    return _Person(
        profile, Enrichment(member_id, found.company_name, found.title, found.work_email)
    )
