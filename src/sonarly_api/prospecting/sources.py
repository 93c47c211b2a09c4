"""A job's source (the `source` column, as the client asked for it) read as pages of the
provider: the four kinds behind one async iterator, resumable from a stored cursor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sonarly_api.providers.base import Page, Provider, ProviderAccount

URLS_PER_CALL = 25  # the provider's bound for profiles_by_url
_URL_CURSOR = "u:"


@dataclass(frozen=True)
class Source:
    kind: str
    value: str  # the search/post URL or the lead list / saved search id ("" for url_upload)
    urls: tuple[str, ...]  # url_upload only
    limit: int  # at most this many profiles: maxResults, or the URL count for url_upload

    @classmethod
    def of(cls, source: dict[str, Any], max_results: int) -> Source:
        kind = str(source.get("source"))
        if kind == "url_upload":
            urls = tuple(str(u) for u in source.get("profileUrls") or ())
            return cls(kind, "", urls, len(urls))
        keys = {
            "linkedin_search": ("searchUrl",),
            "sales_navigator": ("leadListId", "savedSearchId"),
            "post_commenters": ("postUrl",),
        }.get(kind)
        if keys is None:
            raise ValueError(f"unknown source kind {kind!r}")
        for key in keys:
            if source.get(key):
                kind = f"{kind}:{key}"
                return cls(kind, str(source[key]), (), max_results)
        raise ValueError(f"source {kind!r} without its input")

    def progress(self, found: int, next_cursor: str | None) -> float:
        """The import stage's progress once a page is in (1 only at its end)."""
        if next_cursor is None:
            return 1.0
        if self.kind == "url_upload":
            done = _url_offset(next_cursor)
            return min(0.99, done / len(self.urls)) if self.urls else 1.0
        return min(0.99, found / self.limit) if self.limit else 1.0


def _url_offset(cursor: str | None) -> int:
    if cursor is None:
        return 0
    if not cursor.startswith(_URL_CURSOR) or not cursor[2:].isdigit():
        raise ValueError("not a url_upload cursor")
    return int(cursor[2:])


async def fetch_page(
    provider: Provider, account: ProviderAccount, source: Source, cursor: str | None
) -> Page:
    """The source's page at `cursor` (None: the first); its `next_cursor` is None at the end."""
    kind = source.kind
    if kind == "url_upload":
        offset = _url_offset(cursor)
        urls = source.urls[offset : offset + URLS_PER_CALL]
        profiles = await provider.profiles_by_url(account, urls) if urls else []
        end = offset + len(urls)
        return Page(profiles, f"{_URL_CURSOR}{end}" if end < len(source.urls) else None)
    if kind == "linkedin_search:searchUrl":
        return await provider.search_page(account, source.value, cursor)
    if kind == "sales_navigator:leadListId":
        return await provider.lead_list_page(account, source.value, cursor)
    if kind == "sales_navigator:savedSearchId":
        return await provider.saved_search_page(account, source.value, cursor)
    return await provider.post_commenters_page(account, source.value, cursor)
