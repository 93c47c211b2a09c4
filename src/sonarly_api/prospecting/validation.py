"""The job endpoints' input rules: path ids, the start body, the list's query.

All of it runs inside the endpoint, after authentication, the rate limit, the permission and
(for body and query) the account group check: FastAPI must not parse or validate any of it
first, or a malformed request without a key would get a 400 instead of the 401 the contract's
order of checks gives it. Every violation is 400 VALIDATION_ERROR (the reference's status for
the job endpoints) with details naming the field and the rule.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sonarly_api.errors import BadRequest
from sonarly_api.ids import is_id
from sonarly_api.prospecting import urls
from sonarly_api.prospecting.models import JOB_STATUSES

SourceKind = Literal["linkedin_search", "sales_navigator", "post_commenters", "url_upload"]
SOURCE_INPUTS: dict[str, tuple[str, ...]] = {
    "linkedin_search": ("searchUrl",),
    "sales_navigator": ("savedSearchId", "leadListId"),
    "post_commenters": ("postUrl",),
    "url_upload": ("profileUrls",),
}
INPUT_FIELDS = tuple(f for fields in SOURCE_INPUTS.values() for f in fields)
FIELDS = ("source", *INPUT_FIELDS, "maxResults", "searchEmails")
MAX_PROFILE_URLS = 1000
MAX_BODY_BYTES = 1024 * 1024  # 1,000 profile URLs fit many times over
SALES_NAVIGATOR_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
MAX_LIMIT = 100
DEFAULT_LIMIT = 20
IDEMPOTENCY_KEY_MAX = 255


def path_id(raw: str, name: str) -> str:
    """24 hex characters in either case, normalised to lowercase (as the lookup does)."""
    value = raw.lower()
    if len(value) != 24 or not is_id(value):
        raise BadRequest(f"{name}: must be 24 hexadecimal characters.")
    return value


@dataclass(frozen=True)
class StartRequest:
    """A start body as validated: `source` is what the job stores and shows (URLs normalised);
    `max_results` is None when the body left it to the plan's cap."""

    source: dict[str, Any]
    max_results: int | None
    search_emails: bool

    @property
    def kind(self) -> str:
        return str(self.source["source"])


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise BadRequest(f"{key}: given more than once.")
        seen[key] = value
    return seen


def _no_constants(name: str) -> Any:
    raise BadRequest(f"body: {name} is not JSON.")


def _json_object(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest(f"body: must be at most {MAX_BODY_BYTES} bytes.")
    if not raw.strip():
        raise BadRequest("body: required, a JSON object.")
    try:
        value = json.loads(raw, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError
        raise BadRequest("body: must be a JSON object (the body is not valid JSON).") from None
    if not isinstance(value, dict):
        raise BadRequest("body: must be a JSON object.")
    return value


def _string(body: Mapping[str, Any], field: str) -> str:
    value = body[field]
    if not isinstance(value, str):
        raise BadRequest(f"{field}: must be a string.")
    return value


def _url(field: str, value: str, normalise: Any) -> str:
    try:
        result: str = normalise(value)
    except ValueError as exc:
        raise BadRequest(f"{field}: {exc}.") from None
    return result


def _profile_urls(body: Mapping[str, Any]) -> list[str]:
    value = body["profileUrls"]
    if not isinstance(value, list):
        raise BadRequest("profileUrls: must be an array of LinkedIn profile URLs.")
    if not 1 <= len(value) <= MAX_PROFILE_URLS:
        raise BadRequest(f"profileUrls: must hold 1 to {MAX_PROFILE_URLS} URLs, got {len(value)}.")
    normalised: dict[str, None] = {}  # ordered set: duplicates collapse, first one's place
    for index, item in enumerate(value):
        field = f"profileUrls[{index}]"
        if not isinstance(item, str):
            raise BadRequest(f"{field}: must be a string.")
        normalised[_url(field, item, urls.profile_url)] = None
    return list(normalised)


def _source(body: Mapping[str, Any]) -> dict[str, Any]:
    if "source" not in body:
        raise BadRequest("source: required, one of " + ", ".join(SOURCE_INPUTS) + ".")
    kind = body["source"]
    if not isinstance(kind, str) or kind not in SOURCE_INPUTS:
        raise BadRequest("source: must be one of " + ", ".join(SOURCE_INPUTS) + ".")
    allowed = SOURCE_INPUTS[kind]
    for field in INPUT_FIELDS:
        if field in body and field not in allowed:
            raise BadRequest(f"{field}: not allowed with source {kind}.")
    given = [f for f in allowed if f in body]
    if kind == "sales_navigator":
        if len(given) != 1:
            raise BadRequest(
                "savedSearchId, leadListId: exactly one is required with source sales_navigator."
            )
        field = given[0]
        value = _string(body, field)
        if not (
            1 <= len(value) <= 128
            and all(c.isascii() and (c.isalnum() or c in "_.:-") for c in value)
        ):
            raise BadRequest(
                f"{field}: must be 1 to 128 characters: letters, digits, '_', '.', ':' or '-'."
            )
        return {"source": kind, field: value}
    (field,) = allowed
    if not given:
        raise BadRequest(f"{field}: required with source {kind}.")
    if kind == "url_upload":
        return {"source": kind, "profileUrls": _profile_urls(body)}
    normalise = urls.search_url if kind == "linkedin_search" else urls.post_url
    return {"source": kind, field: _url(field, _string(body, field), normalise)}


def start_request(raw: bytes) -> StartRequest:
    body = _json_object(raw)
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise BadRequest(f"{unknown[0]}: unknown field; allowed fields: " + ", ".join(FIELDS) + ".")
    source = _source(body)
    max_results = body.get("maxResults")
    if max_results is not None or "maxResults" in body:
        # JSON has numbers only: 50.0 is the integer 50 (as JSON Schema's "integer" says).
        if isinstance(max_results, float) and max_results.is_integer():
            max_results = int(max_results)
        if isinstance(max_results, bool) or not isinstance(max_results, int):
            raise BadRequest("maxResults: must be an integer.")
        if max_results < 1 and source["source"] != "url_upload":
            raise BadRequest(f"maxResults: must be at least 1, got {max_results}.")
    search_emails = body.get("searchEmails", False)
    if not isinstance(search_emails, bool):
        raise BadRequest("searchEmails: must be true or false.")
    if source["source"] == "url_upload":
        max_results = None  # url_upload ignores it: the URLs are the job's size
    return StartRequest(source, max_results, search_emails)


def idempotency_key(raw: str | None) -> str | None:
    if raw is None:
        return None
    if not 1 <= len(raw) <= IDEMPOTENCY_KEY_MAX or not all("!" <= c <= "~" for c in raw):
        raise BadRequest(
            f"Idempotency-Key: must be 1 to {IDEMPOTENCY_KEY_MAX} visible ASCII characters "
            "(no spaces)."
        )
    return raw


@dataclass(frozen=True)
class ListQuery:
    cursor: str | None
    limit: int
    status: str | None


def list_query(params: Mapping[str, str]) -> ListQuery:
    raw_limit = params.get("limit")
    limit = DEFAULT_LIMIT
    if raw_limit is not None:
        if (
            not raw_limit.isascii()
            or not raw_limit.isdigit()
            or not (1 <= int(raw_limit) <= MAX_LIMIT)
        ):
            raise BadRequest(f"limit: must be an integer from 1 to {MAX_LIMIT}.")
        limit = int(raw_limit)
    status = params.get("status")
    if status is not None and status not in JOB_STATUSES:
        raise BadRequest("status: must be one of " + ", ".join(JOB_STATUSES) + ".")
    # An empty cursor is the first page, as on every list of this API.
    return ListQuery(params.get("cursor") or None, limit, status)
