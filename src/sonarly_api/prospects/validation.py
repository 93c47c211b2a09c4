"""Path parameter rules of the lookup (422 VALIDATION_ERROR), checked in the contract's order
after authentication, rate limit and permission, so FastAPI must not validate them first; and
what a LinkedIn profile URL is (imports, jobs)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any
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


def _provider_id_problem(raw: str) -> str | None:
    """What is wrong with a provider id (the rule it breaks), None if nothing."""
    if not 1 <= len(raw) <= MAX_PROVIDER_ID_LENGTH:
        return f"must be 1 to {MAX_PROVIDER_ID_LENGTH} characters long, got {len(raw)}"
    if _REFUSED.search(raw) is None:  # the common case, in one pass of the regex engine
        return None
    if "/" in raw:
        return _NO_SLASH
    for char in raw:
        if unicodedata.category(char) == "Cs":
            # A byte of the path that is not UTF-8: the guard keeps it as a lone surrogate
            # (a JSON body with one is refused as not JSON before this).
            return "must be valid UTF-8 once percent-decoded"
        if char.isspace() or unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            return "must not contain whitespace or control characters"
    return None


_NO_SLASH = "must not contain '/'"
# Every character the rules refuse: '/', whitespace (str.isspace), control characters (Cc, Zl,
# Zp) and lone surrogates (Cs: possible in a JSON body). A quick test before the per-character
# check, which then only runs on a refused id to say why (tests/prospects/test_batch_lookup.py
# checks that both agree on every code point).
_REFUSED = re.compile(
    "[\x00-\x20/\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ud800-\udfff]"
)


def provider_id(raw: str) -> str:
    """1–256 characters; no whitespace, no control characters, no '/' (also when sent as %2F)."""
    problem = _provider_id_problem(raw)
    if problem is None:
        return raw
    if problem is _NO_SLASH:
        raise ValidationFailed("providerId: must not contain '/' (also not as %2F).")
    raise ValidationFailed(f"providerId: {problem}.")


MAX_BATCH = 100
MAX_BATCH_BODY_BYTES = 64 * 1024

# The batch body's rules as JSON Schema, for the OpenAPI document (not enforced by FastAPI:
# authentication and the rate limit come before the body is read).
BATCH_PROVIDER_IDS_SCHEMA: dict[str, Any] = {
    "minItems": 1,
    "maxItems": MAX_BATCH,
    "items": {"type": "string", **PROVIDER_ID_SCHEMA},
}


def provider_ids(payload: object) -> list[str]:
    """The batch body `{"providerIds": [1 to 100 provider ids]}` (parsed JSON), each id under
    the single lookup's rules; the first bad element is named by its index."""
    if not isinstance(payload, dict):
        raise ValidationFailed('request body: must be a JSON object {"providerIds": [...]}')
    if "providerIds" not in payload:
        raise ValidationFailed("providerIds: required")
    if len(payload) > 1:
        # Not echoed: a field name is client data of any length.
        raise ValidationFailed("request body: unknown field; providerIds is the only one")
    ids = payload["providerIds"]
    if not isinstance(ids, list):
        raise ValidationFailed("providerIds: must be an array of provider ids")
    if not 1 <= len(ids) <= MAX_BATCH:
        raise ValidationFailed(f"providerIds: must hold 1 to {MAX_BATCH} ids, got {len(ids)}")
    for index, value in enumerate(ids):
        if not isinstance(value, str):
            raise ValidationFailed(f"providerIds[{index}]: must be a string")
        problem = _provider_id_problem(value)
        if problem is not None:
            raise ValidationFailed(f"providerIds[{index}]: {problem}")
    return ids


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
