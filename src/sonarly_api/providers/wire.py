"""The JSON a provider answers (docs/provider-api.md), read strictly into the base dataclasses.

Anything that does not fit raises `BadAnswer`; the adapter turns it into a `bad_answer`
failure. Unknown keys are ignored so a provider may add fields.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError
from pydantic.alias_generators import to_camel

from sonarly_api.providers.base import Enrichment, Page, Profile, SourceItem

# What the lookup accepts as a providerId (1–256 characters, no whitespace, no '/'): a member id
# outside it would be written but could never be looked up.
MemberId = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\s/]+$")]
Text = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
Cursor = Annotated[str, StringConstraints(min_length=1, max_length=2000)]

_PROFILE_PATH = re.compile(r"^/in/([^/?#]+)/?$")


class BadAnswer(Exception):
    """The provider's answer is not the documented JSON. The text is for logs only and never
    holds the answer itself."""


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, extra="ignore", frozen=True)


class _Profile(_Wire):
    member_id: MemberId
    public_identifier: Text
    profile_url: Text
    name: str | None = None
    headline: str | None = None


class _SourceItem(_Wire):
    id: Text
    name: str


class _Enrichment(_Wire):
    member_id: MemberId
    company_name: str | None = None
    title: str | None = None
    work_email: str | None = None


class _ProfilePage(_Wire):
    items: list[_Profile]
    next_cursor: Cursor | None = None


class _SourcePage(_Wire):
    items: list[_SourceItem]
    next_cursor: Cursor | None = None


class _Profiles(_Wire):
    items: list[_Profile]


class _Enrichments(_Wire):
    items: list[_Enrichment]


class _ErrorBody(_Wire):
    code: str


class _Error(_Wire):
    error: _ErrorBody


def normalise_profile_url(url: str, public_identifier: str) -> str:
    """`https://www.linkedin.com/in/<identifier>`: from the provider's URL when it is a LinkedIn
    profile URL (any scheme, host variant, trailing slash or query), else from the identifier."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    match = _PROFILE_PATH.match(parts.path)
    if match and (host == "linkedin.com" or host.endswith(".linkedin.com")):
        identifier = match.group(1)
    else:
        identifier = public_identifier
    return f"https://www.linkedin.com/in/{identifier.strip().lower()}"


def _profile(raw: _Profile) -> Profile:
    return Profile(
        member_id=raw.member_id,
        public_identifier=raw.public_identifier,
        profile_url=normalise_profile_url(raw.profile_url, raw.public_identifier),
        name=raw.name,
        headline=raw.headline,
    )


def _validated(model: type[_Wire], body: Any) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        # Field locations only: the values are the provider's data.
        where = ", ".join(".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors()[:3])
        raise BadAnswer(f"unexpected JSON at {where}") from None


def profile_page(body: Any, sent_cursor: str | None) -> Page:
    page: _ProfilePage = _validated(_ProfilePage, body)
    if page.next_cursor is not None and page.next_cursor == sent_cursor:
        # The same cursor back would make a job read the same page for ever.
        raise BadAnswer("nextCursor repeats the cursor sent")
    return Page(profiles=[_profile(p) for p in page.items], next_cursor=page.next_cursor)


def source_page(body: Any, sent_cursor: str | None) -> tuple[list[SourceItem], str | None]:
    page: _SourcePage = _validated(_SourcePage, body)
    if page.next_cursor is not None and page.next_cursor == sent_cursor:
        raise BadAnswer("nextCursor repeats the cursor sent")
    return [SourceItem(id=i.id, name=i.name) for i in page.items], page.next_cursor


def profiles(body: Any) -> list[Profile]:
    parsed: _Profiles = _validated(_Profiles, body)
    return [_profile(p) for p in parsed.items]


def enrichments(body: Any) -> list[Enrichment]:
    parsed: _Enrichments = _validated(_Enrichments, body)
    return [
        Enrichment(
            member_id=e.member_id,
            company_name=e.company_name,
            title=e.title,
            work_email=e.work_email,
        )
        for e in parsed.items
    ]


def error_code(body: Any) -> str | None:
    """The `error.code` of an error answer, None when the body does not say."""
    try:
        return _Error.model_validate(body).error.code
    except ValidationError:
        return None
