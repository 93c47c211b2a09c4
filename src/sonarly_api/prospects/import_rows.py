"""Reading a prospect import file: format detection, decoding, parsing and row validation.

Nothing here touches the database. `read_rows` returns a generator over the open file, so
memory stays flat whatever the file size; `importer` feeds what it yields into COPY.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import operator
import re
import zlib
from collections import Counter
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, TypeAlias, cast

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
_FIELD_SET = frozenset(FIELDS)
MAX_VALUE_CHARS = 2000
# Seven values of 2,000 characters, even fully \u-escaped, fit well within this; a longer
# line (JSON Lines or CSV) is rejected without ever being held whole.
MAX_LINE_BYTES = 1_000_000
_RAW_EXCERPT_BYTES = 1000
_BOM = b"\xef\xbb\xbf"  # which spreadsheet exports put first

# (line, provider_id, person_id, public_identifier, linkedin_url, name, company_name, title)
StagedRow: TypeAlias = tuple[
    int, str, str | None, str | None, str | None, str | None, str | None, str | None
]
Format: TypeAlias = Literal["csv", "jsonl"]

# PostgreSQL text cannot hold NUL, and a lone surrogate (possible via a JSON "\ud800"
# escape) cannot be encoded to UTF-8: either would abort the whole COPY, so reject the row.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_PERSON_ID = re.compile("[0-9a-fA-F]{24}")  # lowercased once accepted
# Printable ASCII except '/': always a valid provider id (no whitespace, no control
# characters), so the common case skips `validation.provider_id`'s per-character loop.
_PLAIN_PROVIDER_ID = re.compile(rf"[!-.0-~]{{1,{validation.MAX_PROVIDER_ID_LENGTH}}}")


@dataclass(frozen=True)
class RowError:
    line: int  # 1-based line in the file (CSV: the header is line 1)
    reason: str  # names the field, e.g. "providerId: must not contain '/' (also not as %2F)."


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


class _Invalid(Exception):
    """A row-level problem; its message is the reason."""


_TOO_LONG = f"line longer than {MAX_LINE_BYTES} bytes."
_EMPTY = "the file is empty"
_CR_ONLY = (
    "lines end with a carriage return alone (CR, as on old Macs); save the file with LF or"
    " CRLF line endings."
)


@dataclass
class _Position:
    """Set by the line decoder, read and reset by the CSV parser."""

    undecodable: bool = False  # a line of the current record was not UTF-8
    too_long: str | None = None  # the start of an over-long line of the current record


class ReadPosition:
    """How many bytes of the file reading has consumed, counted as stored (compressed bytes
    for a gzipped file): against the file's size, how far an import has got."""

    def __init__(self) -> None:
        self._file: IO[bytes] | None = None
        self._last = 0

    def follow(self, file: IO[bytes]) -> None:
        self._file = file

    def stop(self) -> None:
        self()
        self._file = None

    def __call__(self) -> int:
        if self._file is not None:
            self._last = self._file.tell()
        return self._last


def read_rows(
    path: Path, position: ReadPosition | None = None
) -> Generator[StagedRow | Rejected, None, None]:
    """Valid rows as staging tuples and invalid ones as `Rejected`, in file order; blank
    lines are skipped. Detects the format now (so a missing file fails before any database
    work) and reads lazily. Raises `BadFile` for a problem with the file as a whole.
    `position`, if given, follows the bytes read."""
    gz = _is_gzip(path)
    start = _start(path, gz)
    # One rule whatever the format or the name: nothing to import is an error.
    if not start:
        raise BadFile(None, _EMPTY)
    if _cr_only(start):
        raise BadFile(None, _CR_ONLY)
    fmt = detect_format(path, start)
    return _read(path, gz, fmt, position or ReadPosition())


def detect_format(path: Path, start: bytes) -> Format:
    """By suffix (`.csv`, `.jsonl`, `.ndjson`, each optionally `.gz`), else by the first
    non-blank character (`start`, see `_start`): `{` means JSON Lines."""
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    if suffixes and suffixes[-1] == ".csv":
        return "csv"
    if suffixes and suffixes[-1] in (".jsonl", ".ndjson"):
        return "jsonl"
    return "jsonl" if start.startswith(b"{") else "csv"


def _start(path: Path, gz: bool) -> bytes:
    """The file's first bytes from its first non-blank one on (up to 64 KB; b"" for a file
    with nothing but blanks), BOM left out."""
    with _open(path, gz) as file:
        try:
            first = True
            while chunk := file.read(64 * 1024):
                if first:
                    chunk, first = chunk.removeprefix(_BOM), False
                if stripped := chunk.lstrip():
                    return stripped
        except (EOFError, gzip.BadGzipFile, zlib.error):
            raise BadFile(None, "the gzip data is corrupt or truncated.") from None
    return b""


def _cr_only(start: bytes) -> bool:
    """Whether the first line ends with a lone CR: no line of the file then ends with LF,
    and neither format can be read. (Only the first line: a quoted CSV value may hold a
    lone CR further on.)"""
    cr, lf = start.find(b"\r"), start.find(b"\n")
    return cr != -1 and (lf == -1 or cr < lf) and lf != cr + 1


def _is_gzip(path: Path) -> bool:
    # By content, not by name: a compressed file is read transparently whatever it's called.
    with path.open("rb") as file:
        return file.read(2) == b"\x1f\x8b"


def _open(path: Path, gz: bool) -> io.BufferedIOBase:
    # Binary, decoded line by line: a line that is not UTF-8 is then known by its number.
    return gzip.open(path, "rb") if gz else path.open("rb")


def _read(
    path: Path, gz: bool, fmt: Format, read_position: ReadPosition
) -> Generator[StagedRow | Rejected, None, None]:
    with _open(path, gz) as file:
        # The file as stored: a GzipFile's own position counts uncompressed bytes.
        stored = file.fileobj if isinstance(file, gzip.GzipFile) else file
        read_position.follow(cast(IO[bytes], stored))
        try:
            if fmt == "csv":
                position = _Position()
                yield from _csv_rows(_decoded(file, position), position)
            else:
                yield from _jsonl_rows(file)
        except (EOFError, gzip.BadGzipFile, zlib.error):
            raise BadFile(None, "the gzip data is corrupt or truncated.") from None
        finally:
            read_position.stop()  # while the file is open: its final position


def _decoded(file: io.BufferedIOBase, position: _Position) -> Iterator[str]:
    """Lines as text, their endings kept as the csv module needs. Bytes that are not UTF-8
    are replaced and flagged, so that only the record they are in is rejected. A line
    longer than MAX_LINE_BYTES is never held whole: it is read past and flagged (its record
    is rejected), and the csv module gets an empty line with as many quotes (0 or 1) as
    keep its idea of what is quoted: the lines after it are read as they would have been."""
    first = True
    while raw := file.readline(MAX_LINE_BYTES + 1):
        if first:
            raw, first = raw.removeprefix(_BOM), False
        if len(raw) > MAX_LINE_BYTES:
            quotes = raw.count(b'"')
            if not raw.endswith(b"\n"):
                quotes += _skip_line(file)
            if position.too_long is None:
                position.too_long = raw[:_RAW_EXCERPT_BYTES].decode(errors="replace")
            yield '"' * (quotes % 2) + "\n"
            continue
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            position.undecodable = True
            text = raw.decode(errors="replace")
        yield text


def _csv_rows(lines: Iterator[str], position: _Position) -> Iterator[StagedRow | Rejected]:
    reader = csv.reader(lines)
    try:
        header = _csv_header(reader, position)
        # C-speed selection of FIELDS from a record, in FIELDS order.
        pick = operator.itemgetter(*_column_index(header, reader.line_num))
        width = len(header)
        previous = reader.line_num
        for record in reader:
            line = previous + 1  # a record starts on the line after the previous one ended
            previous = reader.line_num
            if position.too_long is not None:
                yield Rejected(line, _TOO_LONG, position.too_long)
                position.too_long, position.undecodable = None, False
                continue
            if position.undecodable:
                position.undecodable = False
                reason = "not valid UTF-8."
            elif len(record) == width:
                record.append("")  # what the columns the file lacks read as (see _column_index)
                try:
                    yield _staged(line, pick(record))
                    continue
                except _Invalid as exc:
                    reason = str(exc)
                record.pop()
            else:
                reason = f"expected {width} fields as in the header, got {len(record)}."
            # Blank lines, and the rows of empty cells spreadsheets append, are not rows.
            if "".join(record).strip():
                yield Rejected(line, reason, _as_csv(record))
    except csv.Error as exc:
        raise BadFile(reader.line_num, _csv_error(exc)) from None


def _csv_error(exc: csv.Error) -> str:
    """What the csv module found wrong, in plain words where its own are Python's."""
    message = str(exc)
    if message.startswith("new-line character seen in unquoted field"):
        return (
            "a carriage return (CR) alone inside a line, outside quotes; save the file with"
            " LF or CRLF line endings."
        )
    if message.startswith("field larger than field limit"):
        # The csv module's limit (process-wide state, left as it is). Not a rejected row: a
        # quote left open makes one value of the rest of the file.
        return f"a value longer than {csv.field_size_limit()} characters (a quote left open?)."
    return f"malformed CSV: {message}."


def _as_csv(record: list[str]) -> str:
    """A rejected record's `raw`: its fields re-encoded as one CSV row (same values)."""
    buffer = io.StringIO()
    csv.writer(buffer).writerow(record)
    return buffer.getvalue().rstrip("\r\n")


def _csv_header(reader: Any, position: _Position) -> list[str]:
    for record in reader:
        if position.too_long is not None:
            raise BadFile(reader.line_num, _TOO_LONG)
        if position.undecodable:
            raise BadFile(reader.line_num, "not valid UTF-8.")
        if "".join(record).strip():
            return [name.strip() for name in record]
    raise BadFile(None, _EMPTY)


def _column_index(header: list[str], line: int) -> list[int]:
    """For each of FIELDS, its position in the header, or len(header) if the file lacks it."""
    unknown = [name for name in header if name not in _FIELD_SET]
    if unknown:
        names = ", ".join(repr(name[:100]) for name in unknown)
        raise BadFile(line, f"unknown column(s) {names}; allowed: {', '.join(FIELDS)}.")
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise BadFile(line, f"duplicated column(s): {', '.join(duplicated)}.")
    if "providerId" not in header:
        raise BadFile(line, "missing required column providerId.")
    return [header.index(name) if name in header else len(header) for name in FIELDS]


def _jsonl_rows(file: io.BufferedIOBase) -> Iterator[StagedRow | Rejected]:
    line = 0
    # Split on "\n" only, so line numbers match `wc -l` (json ignores a "\r" before it).
    while raw := file.readline(MAX_LINE_BYTES + 1):
        line += 1
        if line == 1:
            raw = raw.removeprefix(_BOM)
        if len(raw) > MAX_LINE_BYTES:
            if not raw.endswith(b"\n"):
                _skip_line(file)
            yield Rejected(line, _TOO_LONG, raw[:_RAW_EXCERPT_BYTES].decode(errors="replace"))
            continue
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            yield Rejected(line, "not valid UTF-8.", raw.decode(errors="replace").rstrip("\r\n"))
            continue
        if text.isspace():
            continue
        text = text.rstrip("\r\n")
        try:
            yield _staged(line, _json_values(text))
        except _Invalid as exc:
            yield Rejected(line, str(exc), text)


def _skip_line(file: io.BufferedIOBase) -> int:
    """Reads past the rest of a line, a bounded piece at a time; returns the number of
    double quotes in it."""
    quotes = 0
    while rest := file.readline(MAX_LINE_BYTES):
        quotes += rest.count(b'"')
        if rest.endswith(b"\n"):
            break
    return quotes


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object of a row, refused if a key is repeated (json keeps the last one silently),
    as a repeated CSV column is."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        counts = Counter(key for key, _ in pairs)
        repeated = sorted(key for key, count in counts.items() if count > 1)
        names = ", ".join(repr(name[:100]) for name in repeated)
        raise _Invalid(f"duplicated key(s) {names}.")
    return obj


# Made once: json.loads with a hook would make a decoder for every row.
_JSON = json.JSONDecoder(object_pairs_hook=_json_object)


def _json_values(raw: str) -> list[str]:
    try:
        obj = _JSON.decode(raw)
    except json.JSONDecodeError as exc:
        raise _Invalid(f"not valid JSON: {exc.msg} (column {exc.colno}).") from None
    except RecursionError:
        # Raised by the parser itself, at Python's recursion limit: a row is one flat
        # object, nested values are refused anyway.
        raise _Invalid("not valid JSON for a row: nested too deeply.") from None
    if not isinstance(obj, dict):
        raise _Invalid(f"must be a JSON object, got {_json_type(obj)}.")
    for key, value in obj.items():
        if key not in _FIELD_SET:
            raise _Invalid(f"unknown key {key[:100]!r}; allowed: {', '.join(FIELDS)}.")
        if value is not None and not isinstance(value, str):
            raise _Invalid(f"{key}: must be a string or null, got {_json_type(value)}.")
    # null reads as "": both mean "no value" (and a missing providerId is reported as such).
    return [obj.get(name) or "" for name in FIELDS]


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "string" if isinstance(value, str) else "null"


def _staged(line: int, values: Sequence[str]) -> StagedRow:
    """Validates and normalises one row's raw values (in FIELDS order): trimmed, empty means
    null, personId lowercased. Raises `_Invalid` naming the first bad field."""
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
    """The row's LinkedIn URL in its canonical form; `_Invalid` if it is not a profile URL,
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
        raise _Invalid(f"linkedinUrl: {exc}.") from None
    if public_identifier and not validation.names_profile(public_identifier, profile):
        raise _Invalid(
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
        raise _Invalid("providerId: is required.")
    try:
        # The lookup's own rule, so that every imported provider id can be looked up.
        validation.provider_id(value)
    except ValidationFailed as exc:
        raise _Invalid(exc.details or "providerId: is invalid.") from None


def _person_id(value: str) -> None:
    _optional("personId", value)
    if value and not _PERSON_ID.fullmatch(value):
        raise _Invalid("personId: must be 24 hexadecimal characters.")


def _optional(field: str, value: str) -> None:
    if len(value) > MAX_VALUE_CHARS:
        raise _Invalid(f"{field}: must be at most {MAX_VALUE_CHARS} characters, got {len(value)}.")
    if _UNSTORABLE.search(value):
        raise _Invalid(f"{field}: must not contain NUL characters or unpaired surrogates.")
