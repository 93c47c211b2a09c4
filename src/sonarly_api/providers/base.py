"""The provider interface every source of LinkedIn data implements (sandbox, HTTP).

A provider answers with these plain dataclasses and fails only with `ProviderError`, whose
`message` is safe to show a client: implementations never put the upstream's raw text, URL or
token in it. Paging is by an opaque cursor: a job stores `Page.next_cursor` to resume after a
crash, so a cursor must stay valid across processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

ProviderErrorCode = Literal[
    "UPSTREAM_ERROR", "LINKEDIN_DISCONNECTED", "SOURCE_NOT_FOUND", "LINKEDIN_NOT_CONNECTED"
]
FailureClass = Literal[
    "timeout", "refused", "rate_limited", "disconnected", "bad_answer", "not_found", "not_connected"
]


@dataclass(frozen=True)
class ProviderAccount:
    """The provider account an account group reads LinkedIn through (None for the sandbox)."""

    account_group_id: str
    provider_account_id: str | None


@dataclass(frozen=True)
class Profile:
    """One LinkedIn member as a source lists it."""

    member_id: str  # LinkedIn member id -> the prospect's providerId
    public_identifier: str  # e.g. "avery-stone"
    profile_url: str  # "https://www.linkedin.com/in/avery-stone" (normalised)
    name: str | None
    headline: str | None


@dataclass(frozen=True)
class Enrichment:
    """What enrichment adds to a profile; None where the provider knows nothing."""

    member_id: str
    company_name: str | None
    title: str | None
    work_email: str | None


@dataclass(frozen=True)
class Page:
    """One page of a source."""

    profiles: list[Profile]
    next_cursor: str | None  # None: last page. A job stores it to resume after a crash.


@dataclass(frozen=True)
class SourceItem:
    """A Sales Navigator lead list or saved search."""

    id: str
    name: str


class ProviderError(Exception):
    """A provider call that failed for good (after the implementation's own retries).

    `code` is the client-facing error code, `failure` the class of failure (for details,
    metrics and logs), `message` a sentence safe for clients.
    """

    def __init__(self, code: ProviderErrorCode, failure: FailureClass, message: str) -> None:
        super().__init__(message)
        self.code: ProviderErrorCode = code
        self.failure: FailureClass = failure
        self.message: str = message

    def __repr__(self) -> str:
        return (
            f"ProviderError(code={self.code!r}, failure={self.failure!r}, message={self.message!r})"
        )


class Provider(Protocol):
    """A source of LinkedIn data. Every method may raise `ProviderError` (and nothing else
    for upstream failures); a rate-limited upstream makes a call slower, not a failure, as long
    as the implementation's deadline allows."""

    async def is_connected(self, account_group_id: str) -> ProviderAccount | None:
        """The group's provider account, or None when the group has not connected one."""
        ...

    async def list_lead_lists(self, account: ProviderAccount) -> list[SourceItem]:
        """The Sales Navigator lead lists of the account."""
        ...

    async def list_saved_searches(self, account: ProviderAccount) -> list[SourceItem]:
        """The Sales Navigator saved searches of the account."""
        ...

    async def search_page(
        self, account: ProviderAccount, search_url: str, cursor: str | None
    ) -> Page:
        """One page of a LinkedIn people search given by its URL (cursor None: first page)."""
        ...

    async def lead_list_page(
        self, account: ProviderAccount, lead_list_id: str, cursor: str | None
    ) -> Page:
        """One page of a Sales Navigator lead list."""
        ...

    async def saved_search_page(
        self, account: ProviderAccount, saved_search_id: str, cursor: str | None
    ) -> Page:
        """One page of a Sales Navigator saved search's results."""
        ...

    async def post_commenters_page(
        self, account: ProviderAccount, post_url: str, cursor: str | None
    ) -> Page:
        """One page of the members who commented on a post."""
        ...

    async def profiles_by_url(
        self, account: ProviderAccount, profile_urls: Sequence[str]
    ) -> list[Profile]:
        """The profiles behind these URLs (url_upload; at most 25 URLs per call).
        Unknown profiles are left out."""
        ...

    async def enrich(
        self, account: ProviderAccount, profiles: Sequence[Profile], with_email: bool
    ) -> list[Enrichment]:
        """Company, title and (with_email) a work email of each profile."""
        ...

    async def aclose(self) -> None:
        """Release connections; the provider is not used afterwards."""
        ...
