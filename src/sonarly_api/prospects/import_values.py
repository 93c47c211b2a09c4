"""What the CSV and JSON Lines readers share: the row types, the limits of a line and of a
value, and the validation of one row's values into a staging tuple."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

from sonarly_api.errors import ValidationFailed
from sonarly_api.prospects import validation

# CSV columns / JSON keys, in the order of the staging table's columns after `line`.
FIELDS = (
    "providerId",
    "personId",
    "publicIdentifier",
    "linkedinUrl",
    "name",
    "companyName",
    "title",
)
FIELD_SET = frozenset(FIELDS)
MAX_VALUE_CHARS = 2000
# Seven values of 2,000 characters, even fully \u-escaped, fit well within this; a longer
# line (JSON Lines or CSV) is rejected without ever being held whole.
MAX_LINE_BYTES = 1_000_000
RAW_EXCERPT_BYTES = 1000
BOM = b"\xef\xbb\xbf"  # which spreadsheet exports put first

# (line, provider_id, person_id, public_identifier, linkedin_url, name, company_name, title)
StagedRow: TypeAlias = tuple[
    int, str, str | None, str | None, str | None, str | None, str | None, str | None
]

# PostgreSQL text cannot hold NUL, and a lone surrogate (possible via a JSON "\ud800"
# escape) cannot be encoded to UTF-8: either would abort the whole COPY, so reject the row.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_PERSON_ID = re.compile("[0-9a-fA-F]{24}")  # lowercased once accepted
# Printable ASCII except '/': always a valid provider id (no whitespace, no control
# characters), so the common case skips `validation.provider_id`'s per-character loop.
_PLAIN_PROVIDER_ID = re.compile(rf"[!-.0-~]{{1,{validation.MAX_PROVIDER_ID_LENGTH}}}")


@dataclass(frozen=True)
class Rejected:
    """An invalid data row: counted, reported, and written to the rejects file if asked."""

    line: int
    reason: str
    raw: str


class BadFile(Exception):
    """The file as a whole cannot be imported (unknown column, not UTF-8, corrupt gzip...)."""

    def __init__(self, line: int | None, reason: str) -> None:
        super().__init__(reason if line is None else f"line {line}: {reason}")
        self.line = line
        self.reason = reason


class InvalidRow(Exception):
    """A row-level problem; its message is the reason."""


TOO_LONG = f"line longer than {MAX_LINE_BYTES} bytes."
EMPTY = "the file is empty"


def skip_line(file: io.BufferedIOBase) -> int:
    """Reads past the rest of a line, a bounded piece at a time; returns the number of
    double quotes in it."""
    quotes = 0
    while rest := file.readline(MAX_LINE_BYTES):
        quotes += rest.count(b'"')
        if rest.endswith(b"\n"):
            break
    return quotes


def staged_row(line: int, values: Sequence[str]) -> StagedRow:
    """Validates and normalises one row's raw values (in FIELDS order): trimmed, empty means
    null, personId lowercased. Raises `InvalidRow` naming the first bad field."""
    cleaned = [value.strip() for value in values]
    # The hot path: a few whole-row checks in C; `_explain` goes field by field only when
    # one of them fails (it may also accept, e.g. a provider id with non-ASCII letters).
    if (
        max(map(len, cleaned)) > MAX_VALUE_CHARS
        or _unstorable("".join(cleaned))
        or not _PLAIN_PROVIDER_ID.fullmatch(cleaned[0])
        or (cleaned[1] and not _PERSON_ID.fullmatch(cleaned[1]))
    ):
        _explain(cleaned)
    provider, person, public_identifier, linkedin_url, name, company, title = cleaned
    if linkedin_url:
        linkedin_url = _profile_url(linkedin_url, public_identifier)
    return (
        line,
        provider,
        person.lower() or None,
        public_identifier or None,
        linkedin_url or None,
        name or None,
        company or None,
        title or None,
    )


# A LinkedIn profile URL already in `validation.profile_url`'s canonical form.
_CANONICAL_PROFILE_URL = re.compile(re.escape(validation.PROFILE_URL_PREFIX) + r"([0-9a-z._~-]+)")


def _profile_url(url: str, public_identifier: str) -> str:
    """The row's LinkedIn URL in its canonical form; `InvalidRow` if it is not a profile URL,
    or not the profile of the row's publicIdentifier. Persons are shared by all account
    groups and found by URL: a row binding one person's URL to another identifier would make
    every group's later rows with that URL resolve to the wrong person."""
    canonical = _CANONICAL_PROFILE_URL.fullmatch(url)
    # The usual row: already canonical, and naming the same identifier (or none).
    if canonical is not None and public_identifier in ("", canonical[1]):
        return url
    try:
        profile = validation.profile_url(url)
    except ValueError as exc:
        raise InvalidRow(f"linkedinUrl: {exc}.") from None
    if public_identifier and not validation.names_profile(public_identifier, profile):
        raise InvalidRow(
            f"linkedinUrl: is the profile of {profile.public_identifier[:100]!r}, but "
            f"publicIdentifier is {public_identifier[:100]!r}: a row must name one person."
        )
    return profile.url


def _unstorable(text: str) -> bool:
    # isascii() is O(1) in CPython, so the regex only runs on the rare non-ASCII row.
    return "\x00" in text or (not text.isascii() and _SURROGATE.search(text) is not None)


def _explain(cleaned: list[str]) -> None:
    _provider_id(cleaned[0])
    _person_id(cleaned[1])
    for name, value in zip(FIELDS[2:], cleaned[2:], strict=True):
        _optional(name, value)


def _provider_id(value: str) -> None:
    if not value:
        raise InvalidRow("providerId: is required.")
    try:
        # The lookup's own rule, so that every imported provider id can be looked up.
        validation.provider_id(value)
    except ValidationFailed as exc:
        raise InvalidRow(exc.details or "providerId: is invalid.") from None


def _person_id(value: str) -> None:
    _optional("personId", value)
    if value and not _PERSON_ID.fullmatch(value):
        raise InvalidRow("personId: must be 24 hexadecimal characters.")


def _optional(field: str, value: str) -> None:
    if len(value) > MAX_VALUE_CHARS:
        raise InvalidRow(
            f"{field}: must be at most {MAX_VALUE_CHARS} characters, got {len(value)}."
        )
    if _UNSTORABLE.search(value):
        raise InvalidRow(f"{field}: must not contain NUL characters or unpaired surrogates.")
