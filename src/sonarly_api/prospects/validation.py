"""Path parameter rules of the lookup (422 VALIDATION_ERROR), checked in the contract's order
after authentication, rate limit and permission, so FastAPI must not validate them first; and
what a LinkedIn profile URL is (imports, jobs)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from sonarly_api.errors import ValidationFailed
from sonarly_api.ids import is_id

MAX_PROVIDER_ID_LENGTH = 256

# The same rules as JSON Schema keywords, for the OpenAPI document: clients and contract fuzzers
# (tests/test_schemathesis.py) learn which values are valid. The providerId class lists exactly
# the characters `provider_id` refuses: '/', whitespace (str.isspace) and control characters
# (Cc, Zl, Zp) — tests/test_schemathesis.py checks the equivalence over every code point.
ACCOUNT_GROUP_ID_SCHEMA: dict[str, object] = {
    "pattern": "^[0-9a-fA-F]{24}$",
    "minLength": 24,
    "maxLength": 24,
}
PROVIDER_ID_SCHEMA: dict[str, object] = {
    "pattern": r"^[^\u0000-\u0020/\u007f-\u00a0\u1680\u2000-\u200a"
    r"\u2028\u2029\u202f\u205f\u3000]+$",
    "minLength": 1,
    "maxLength": MAX_PROVIDER_ID_LENGTH,
}


def account_group_id(raw: str) -> str:
    """24 hex characters in either case, normalised to lowercase."""
    value = raw.lower()
    if len(value) != 24 or not is_id(value):
        raise ValidationFailed("accountGroupId: must be 24 hexadecimal characters.")
    return value


def provider_id(raw: str) -> str:
    """1–256 characters; no whitespace, no control characters, no '/' (also when sent as %2F)."""
    if not 1 <= len(raw) <= MAX_PROVIDER_ID_LENGTH:
        raise ValidationFailed(
            f"providerId: must be 1 to {MAX_PROVIDER_ID_LENGTH} characters long, got {len(raw)}."
        )
    if "/" in raw:
        raise ValidationFailed("providerId: must not contain '/' (also not as %2F).")
    for char in raw:
        if char.isspace() or unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp"):
            raise ValidationFailed("providerId: must not contain whitespace or control characters.")
    return raw


# --- LinkedIn profile URLs ---------------------------------------------------------------------

PROFILE_URL_PREFIX = "https://www.linkedin.com/in/"
PROFILE_URL_RULE = f"a LinkedIn profile URL such as {PROFILE_URL_PREFIX}jane-doe"
# linkedin.com itself, www, the mobile site and the two-letter country/locale sites (uk., de.).
_PROFILE_HOST = re.compile(r"(?:(?:www|m|mobile|[a-z]{2})\.)?linkedin\.com")
_PROFILE_PATH = re.compile(r"/in/([^/]+)/*", re.IGNORECASE)


@dataclass(frozen=True)
class ProfileUrl:
    url: str  # canonical: PROFILE_URL_PREFIX + the identifier, percent-encoded
    public_identifier: str  # decoded and lowercased (LinkedIn treats case as insignificant)


def profile_url(raw: str) -> ProfileUrl:
    """The canonical form of a LinkedIn profile URL: https, www, the identifier lowercased,
    without trailing slash, query or fragment. Accepts a missing scheme, http, any case, the
    mobile and country subdomains. ValueError (saying what is expected) for anything else.

    One profile, one URL: persons are found by URL across account groups, so two spellings
    of a URL must not become two identities, nor a URL become someone else's."""
    value = raw.strip()
    if "://" not in value:
        value = "https://" + value
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError(f"must be {PROFILE_URL_RULE}") from None
    match = _PROFILE_PATH.fullmatch(parts.path)
    if (
        parts.scheme.lower() not in ("http", "https")
        or port is not None
        or parts.username is not None
        or not _PROFILE_HOST.fullmatch(parts.hostname or "")
        or match is None
    ):
        raise ValueError(f"must be {PROFILE_URL_RULE}")
    try:
        identifier = unquote(match[1], errors="strict").lower()
    except UnicodeDecodeError:
        raise ValueError(f"must be {PROFILE_URL_RULE}") from None
    if not _plain_identifier(identifier):
        raise ValueError(f"must be {PROFILE_URL_RULE}")
    return ProfileUrl(PROFILE_URL_PREFIX + quote(identifier, safe=""), identifier)


def _plain_identifier(identifier: str) -> bool:
    return bool(identifier) and not any(
        char in "/?#" or char.isspace() or unicodedata.category(char) in ("Cc", "Cf", "Cs")
        for char in identifier
    )


def names_profile(public_identifier: str, profile: ProfileUrl) -> bool:
    """Whether `public_identifier` is the identifier in `profile` (either case, either
    percent-encoded or not)."""
    return profile.public_identifier in (
        public_identifier.lower(),
        unquote(public_identifier).lower(),
    )
