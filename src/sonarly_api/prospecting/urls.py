"""LinkedIn URLs of a start request: checked and written one way, so that the same profile
sent twice (another case, `http`, no `www`, a trailing slash, tracking parameters) is one URL.

Each function returns the normalised URL or raises ValueError with the rule it broke (the
caller prefixes the field's name).
"""

from __future__ import annotations

import unicodedata
from urllib.parse import SplitResult, quote, unquote, urlsplit

MAX_URL_LENGTH = 2048
MAX_IDENTIFIER_LENGTH = 100
CANONICAL_HOST = "www.linkedin.com"

# The rules as JSON Schema patterns for the OpenAPI document: every string they match is
# accepted (the service also accepts other spellings of the same URLs, and normalises them).
SEARCH_URL_PATTERN = r"^https://www\.linkedin\.com/search/results/[A-Za-z0-9._~:/?&=%+-]*$"
POST_URL_PATTERN = r"^https://www\.linkedin\.com/(posts|feed/update)/[A-Za-z0-9._~:%-]+/?$"
PROFILE_URL_PATTERN = r"^https://www\.linkedin\.com/in/[A-Za-z0-9_-]{3,100}/?$"


def _has_bad_characters(value: str) -> bool:
    return any(c.isspace() or unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in value)


def _split_linkedin(raw: str, what: str) -> SplitResult:
    value = raw.strip()
    if not value or len(value) > MAX_URL_LENGTH:
        raise ValueError(f"must be {what} of 1 to {MAX_URL_LENGTH} characters")
    if _has_bad_characters(value):
        raise ValueError(f"must be {what} without spaces or control characters")
    if "://" not in value:
        value = "https://" + value  # "www.linkedin.com/in/…" as copied from a browser bar
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError(f"must be {what}") from None
    host = (parts.hostname or "").lower()
    if (
        parts.scheme.lower() not in ("http", "https")
        or port is not None
        or parts.username is not None
        or not (host == "linkedin.com" or host.endswith(".linkedin.com"))
    ):
        raise ValueError(f"must be {what} on linkedin.com (https://www.linkedin.com/…)")
    return parts


def search_url(raw: str) -> str:
    what = "a LinkedIn people search URL"
    parts = _split_linkedin(raw, what)
    if not parts.path.startswith("/search/results/"):
        raise ValueError(f"must be {what} (https://www.linkedin.com/search/results/…)")
    query = f"?{parts.query}" if parts.query else ""
    return f"https://{CANONICAL_HOST}{parts.path}{query}"


def post_url(raw: str) -> str:
    what = "a LinkedIn post URL"
    parts = _split_linkedin(raw, what)
    path = parts.path.rstrip("/")
    kind, _, rest = path.removeprefix("/").partition("/")
    if path.startswith("/feed/update/"):
        kind, rest = "feed/update", path.removeprefix("/feed/update/")
    if kind not in ("posts", "feed/update") or not rest or "/" in rest:
        raise ValueError(
            f"must be {what} (https://www.linkedin.com/posts/… or …/feed/update/urn:li:…)"
        )
    # The query only carries tracking parameters: the same post with or without them is one.
    return f"https://{CANONICAL_HOST}{path}"


def profile_url(raw: str) -> str:
    what = "a LinkedIn profile URL"
    parts = _split_linkedin(raw, what)
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) < 2 or segments[0].lower() != "in":
        raise ValueError(f"must be {what} (https://www.linkedin.com/in/…)")
    identifier = unquote(segments[1]).lower()
    if not 1 <= len(identifier) <= MAX_IDENTIFIER_LENGTH or _has_bad_characters(identifier):
        raise ValueError(
            f"must be {what} whose public identifier has 1 to {MAX_IDENTIFIER_LENGTH} characters"
        )
    # Public identifiers are case-insensitive; /in/x/details/… and any query are the same
    # person, so the profile is reduced to its identifier.
    return f"https://{CANONICAL_HOST}/in/{quote(identifier, safe='-_.~')}"


def profile_url_of(public_identifier: str | None) -> str:
    """The profile URL of a public identifier ("" without one), in profile_url's form."""
    if not public_identifier:
        return ""
    return f"https://{CANONICAL_HOST}/in/{quote(public_identifier, safe='-_.~')}"
