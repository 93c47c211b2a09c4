"""What a prospecting job needs from a source of LinkedIn data: pages of profiles per source,
enrichment, and the Sales Navigator listings. One protocol, several implementations
(`sandbox.py`, `http.py`), one behaviour."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

ErrorCode = Literal[
    "UPSTREAM_ERROR", "LINKEDIN_DISCONNECTED", "SOURCE_NOT_FOUND", "LINKEDIN_NOT_CONNECTED"
]
Failure = Literal[
    "timeout", "refused", "rate_limited", "disconnected", "bad_answer", "not_found", "not_connected"
]


@dataclass(frozen=True)
class ProviderAccount:
    account_group_id: str
    provider_account_id: str | None


@dataclass(frozen=True)
class Profile:
    member_id: str  # LinkedIn member id -> the prospect's providerId
    public_identifier: str  # e.g. "avery-stone"
    profile_url: str  # "https://www.linkedin.com/in/avery-stone" (normalised)
    name: str | None
    headline: str | None


@dataclass(frozen=True)
class Enrichment:
    member_id: str
    company_name: str | None
    title: str | None
    work_email: str | None


@dataclass(frozen=True)
class Page:
    profiles: list[Profile]
    next_cursor: str | None  # None: last page. A job stores it to resume after a crash.


@dataclass(frozen=True)
class SourceItem:
    id: str
    name: str


class ProviderError(Exception):
    """A provider failure a client may see: `message` never holds the provider's own text."""

    def __init__(self, code: ErrorCode, failure: Failure, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.failure: Failure = failure
        self.message = message


class Provider(Protocol):
    async def is_connected(self, account_group_id: str) -> ProviderAccount | None: ...

    async def list_lead_lists(self, account: ProviderAccount) -> list[SourceItem]: ...

    async def list_saved_searches(self, account: ProviderAccount) -> list[SourceItem]: ...

    async def search_page(
        self, account: ProviderAccount, search_url: str, cursor: str | None
    ) -> Page: ...

    async def lead_list_page(
        self, account: ProviderAccount, lead_list_id: str, cursor: str | None
    ) -> Page: ...

    async def saved_search_page(
        self, account: ProviderAccount, saved_search_id: str, cursor: str | None
    ) -> Page: ...

    async def post_commenters_page(
        self, account: ProviderAccount, post_url: str, cursor: str | None
    ) -> Page: ...

    async def profiles_by_url(
        self, account: ProviderAccount, profile_urls: Sequence[str]
    ) -> list[Profile]:
        """url_upload: at most 25 URLs per call; unknown profiles are left out."""
        ...

    async def enrich(
        self, account: ProviderAccount, profiles: Sequence[Profile], with_email: bool
    ) -> list[Enrichment]: ...

    async def aclose(self) -> None: ...
