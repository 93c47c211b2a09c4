"""`PROVIDER=http`: the provider of docs/provider-api.md, on one pooled `httpx.AsyncClient`.

Every call is bounded: a timeout per attempt, a few attempts with backoff and jitter (429, 5xx,
timeouts, dropped connections), `Retry-After` honoured, a total deadline, and at most
`account_concurrency` requests in flight per provider account. A call returns the base
dataclasses or raises `ProviderError`; nothing the provider sent (text, URL) and never the token
reaches the error or a log line.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from sonarly_api.config import Settings
from sonarly_api.providers import wire
from sonarly_api.providers.base import (
    Enrichment,
    FailureClass,
    Page,
    Profile,
    ProviderAccount,
    ProviderError,
    SourceItem,
)
from sonarly_api.providers.calls import Backoff, failure, judge, retry_after_seconds

logger = logging.getLogger("sonarly_api.providers")
T = TypeVar("T")

PAGE_SIZE = 25  # LinkedIn's own result pages; also the most URLs/ids one lookup takes
MAX_LISTING_PAGES = 20  # lead lists / saved searches read per listing (2,000 at 100 a page)
LISTING_PAGE_SIZE = 100

# The group's provider account id, None when it has connected none (the linkedin package).
AccountResolver = Callable[[str], Awaitable[str | None]]


@dataclass(frozen=True)
class HttpProviderOptions:
    """The adapter's bounds; `from_settings` maps the PROVIDER_* settings."""

    timeout_seconds: float = 10.0
    max_attempts: int = 4
    deadline_seconds: float = 120.0
    listing_deadline_seconds: float = 15.0
    account_concurrency: int = 4
    max_connections: int = 20
    backoff: Backoff = field(default_factory=Backoff)

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpProviderOptions:
        return cls(
            timeout_seconds=settings.provider_timeout_seconds,
            max_attempts=settings.provider_max_attempts,
            deadline_seconds=settings.provider_deadline_seconds,
            listing_deadline_seconds=settings.provider_listing_deadline_seconds,
            account_concurrency=settings.provider_account_concurrency,
            max_connections=settings.provider_max_connections,
        )


class HttpProvider:
    """The `Provider` protocol over HTTP. One instance per process (it owns the pool)."""

    def __init__(
        self,
        base_url: str,
        token: SecretStr,
        options: HttpProviderOptions | None = None,
        resolve_account: AccountResolver | None = None,
    ) -> None:
        self.options = options or HttpProviderOptions()
        self._resolve_account = resolve_account
        limits = httpx.Limits(
            max_connections=self.options.max_connections,
            max_keepalive_connections=self.options.max_connections,
        )
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            # The secret is read here only, into the client's default headers, which neither
            # httpx's logging nor ours ever prints.
            headers={
                "Authorization": f"Bearer {token.get_secret_value()}",
                "Accept": "application/json",
            },
            timeout=httpx.Timeout(self.options.timeout_seconds),
            limits=limits,
            follow_redirects=False,
        )
        self._slots: dict[str, asyncio.Semaphore] = {}

    # --- the Provider protocol ----------------------------------------------------------------

    async def is_connected(self, account_group_id: str) -> ProviderAccount | None:
        if self._resolve_account is None:
            raise RuntimeError("HttpProvider was built without the LinkedIn connections lookup")
        account_id = await self._resolve_account(account_group_id)
        return None if account_id is None else ProviderAccount(account_group_id, account_id)

    async def list_lead_lists(self, account: ProviderAccount) -> list[SourceItem]:
        return await self._listing(account, "sales-navigator/lead-lists", "lead_lists")

    async def list_saved_searches(self, account: ProviderAccount) -> list[SourceItem]:
        return await self._listing(account, "sales-navigator/saved-searches", "saved_searches")

    async def search_page(
        self, account: ProviderAccount, search_url: str, cursor: str | None
    ) -> Page:
        return await self._page(account, "people/search", {"url": search_url}, cursor, "search")

    async def lead_list_page(
        self, account: ProviderAccount, lead_list_id: str, cursor: str | None
    ) -> Page:
        path = f"sales-navigator/lead-lists/{_segment(lead_list_id)}/members"
        return await self._page(account, path, {}, cursor, "lead_list")

    async def saved_search_page(
        self, account: ProviderAccount, saved_search_id: str, cursor: str | None
    ) -> Page:
        path = f"sales-navigator/saved-searches/{_segment(saved_search_id)}/results"
        return await self._page(account, path, {}, cursor, "saved_search")

    async def post_commenters_page(
        self, account: ProviderAccount, post_url: str, cursor: str | None
    ) -> Page:
        return await self._page(
            account, "posts/commenters", {"postUrl": post_url}, cursor, "post_commenters"
        )

    async def profiles_by_url(
        self, account: ProviderAccount, profile_urls: Sequence[str]
    ) -> list[Profile]:
        found: list[Profile] = []
        ends = self._ends(self.options.deadline_seconds)
        for start in range(0, len(profile_urls), PAGE_SIZE):
            chunk = list(profile_urls[start : start + PAGE_SIZE])
            body = await self._call(
                account,
                "POST",
                "profiles/lookup",
                "profiles",
                ends,
                json_body={"profileUrls": chunk},
                public=True,
            )
            found.extend(self._read(wire.profiles, body, "profiles"))
        return found

    async def enrich(
        self, account: ProviderAccount, profiles: Sequence[Profile], with_email: bool
    ) -> list[Enrichment]:
        result: list[Enrichment] = []
        ends = self._ends(self.options.deadline_seconds)
        for start in range(0, len(profiles), PAGE_SIZE):
            ids = [p.member_id for p in profiles[start : start + PAGE_SIZE]]
            body = await self._call(
                account,
                "POST",
                "profiles/enrich",
                "enrich",
                ends,
                json_body={"memberIds": ids, "workEmail": with_email},
                public=True,
            )
            result.extend(self._read(wire.enrichments, body, "enrich"))
        return result

    async def aclose(self) -> None:
        await self._client.aclose()

    # --- paging -------------------------------------------------------------------------------

    async def _page(
        self,
        account: ProviderAccount,
        path: str,
        params: dict[str, str],
        cursor: str | None,
        operation: str,
    ) -> Page:
        query = {**params, "limit": str(PAGE_SIZE)}
        if cursor is not None:
            query["cursor"] = cursor
        ends = self._ends(self.options.deadline_seconds)
        body = await self._call(account, "GET", path, operation, ends, params=query)
        return self._read(partial(wire.profile_page, sent_cursor=cursor), body, operation)

    async def _listing(
        self, account: ProviderAccount, path: str, operation: str
    ) -> list[SourceItem]:
        """Every page of a listing, within one (short) deadline: a client waits for it."""
        ends = self._ends(self.options.listing_deadline_seconds)
        items: list[SourceItem] = []
        cursor: str | None = None
        for _ in range(MAX_LISTING_PAGES):
            query = {"limit": str(LISTING_PAGE_SIZE)}
            if cursor is not None:
                query["cursor"] = cursor
            body = await self._call(account, "GET", path, operation, ends, params=query)
            page, cursor = self._read(
                partial(wire.source_page, sent_cursor=cursor), body, operation
            )
            items.extend(page)
            if cursor is None:
                return items
        logger.warning(
            "provider listing cut at %d pages: operation=%s", MAX_LISTING_PAGES, operation
        )
        return items

    def _read(self, parse: Callable[[Any], T], body: Any, operation: str) -> T:
        try:
            return parse(body)
        except wire.BadAnswer as exc:
            logger.warning("provider answer refused: operation=%s reason=%s", operation, exc)
            raise failure("bad_answer") from None

    # --- one call: attempts, waits, deadline ------------------------------------------------------

    @staticmethod
    def _ends(deadline_seconds: float) -> float:
        return asyncio.get_running_loop().time() + deadline_seconds

    def _slot(self, account_id: str) -> asyncio.Semaphore:
        slot = self._slots.get(account_id)
        if slot is None:
            slot = self._slots[account_id] = asyncio.Semaphore(self.options.account_concurrency)
        return slot

    async def _call(
        self,
        account: ProviderAccount,
        method: str,
        path: str,
        operation: str,
        ends: float,
        *,
        params: dict[str, str] | None = None,
        json_body: Any = None,
        public: bool = False,
    ) -> Any:
        """The JSON body of a 2xx answer to `method path` for the account, or ProviderError.

        `ends` is the loop time by which the call (every attempt, wait and slot) is over.
        `public`: public profile data, read with the token alone (`path` is not under the
        provider account), so a group without a connected account can still upload URLs.
        """
        if public:
            url = path
            # Still one concurrency bound per group: the token's budget is shared.
            account_id = account.provider_account_id or f"group:{account.account_group_id}"
        elif account.provider_account_id is None:
            raise failure("not_connected")
        else:
            account_id = account.provider_account_id
            url = f"accounts/{_segment(account_id)}/{path}"
        loop = asyncio.get_running_loop()
        kind: FailureClass = "timeout"
        for attempt in range(1, self.options.max_attempts + 1):
            retry_after: float | None = None
            try:
                async with asyncio.timeout_at(ends), self._slot(account_id):
                    async with asyncio.timeout(self.options.timeout_seconds):
                        response = await self._client.request(
                            method, url, params=params, json=json_body
                        )
            except TimeoutError:
                kind = "timeout"
            except httpx.TimeoutException:
                kind = "timeout"
            except httpx.TransportError:
                # Refused, reset, or closed in the middle of the answer (also TLS failures).
                kind = "refused"
            else:
                body, readable = _json(response)
                verdict = judge(response.status_code, wire.error_code(body) if readable else None)
                if verdict.action == "ok":
                    if not readable:
                        logger.warning("provider answer is not JSON: operation=%s", operation)
                        raise failure("bad_answer")
                    return body
                assert verdict.failure is not None
                kind = verdict.failure
                if verdict.action == "fail":
                    logger.warning(
                        "provider call failed: operation=%s status=%d failure=%s account=%s",
                        operation,
                        response.status_code,
                        kind,
                        account_id,
                    )
                    raise failure(kind)
                retry_after = retry_after_seconds(response.headers.get("retry-after"))
            if attempt == self.options.max_attempts:
                break
            wait = self.options.backoff.wait(attempt, retry_after)
            if loop.time() + wait >= ends:
                break  # the deadline cannot cover the wait: fail now rather than later
            logger.info(
                "provider call retried: operation=%s failure=%s attempt=%d wait=%.2fs account=%s",
                operation,
                kind,
                attempt,
                wait,
                account_id,
            )
            await asyncio.sleep(wait)
        logger.warning(
            "provider call gave up: operation=%s failure=%s account=%s", operation, kind, account_id
        )
        raise failure(kind)


def _segment(value: str) -> str:
    """A path segment, percent-encoded (an id with '/' or '?' stays one segment)."""
    return quote(value, safe="")


def _json(response: httpx.Response) -> tuple[Any, bool]:
    try:
        return json.loads(response.content), True
    except (ValueError, UnicodeDecodeError):
        return None, False


__all__ = ["AccountResolver", "HttpProvider", "HttpProviderOptions", "ProviderError"]
