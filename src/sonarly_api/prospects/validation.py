"""Path parameter rules of the lookup (422 VALIDATION_ERROR), checked in the contract's order
after authentication, rate limit and permission, so FastAPI must not validate them first."""

from __future__ import annotations

import unicodedata

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
