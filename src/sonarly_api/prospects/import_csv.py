"""The CSV reader of prospect import files: a header naming some of FIELDS, then one row a
record."""

from __future__ import annotations

import csv
import io
import operator
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sonarly_api.prospects.import_values import (
    BOM,
    EMPTY,
    FIELD_SET,
    FIELDS,
    MAX_LINE_BYTES,
    RAW_EXCERPT_BYTES,
    TOO_LONG,
    BadFile,
    InvalidRow,
    Rejected,
    StagedRow,
    skip_line,
    staged_row,
)


@dataclass
class _Position:
    """Set by the line decoder, read and reset by the CSV parser."""

    undecodable: bool = False  # a line of the current record was not UTF-8
    too_long: str | None = None  # the start of an over-long line of the current record


def csv_rows(file: io.BufferedIOBase) -> Iterator[StagedRow | Rejected]:
    """Valid rows and rejected ones of a CSV file opened in binary, in file order."""
    position = _Position()
    yield from _csv_rows(_decoded(file, position), position)


def _decoded(file: io.BufferedIOBase, position: _Position) -> Iterator[str]:
    """Lines as text, their endings kept as the csv module needs. Bytes that are not UTF-8
    are replaced and flagged, so that only the record they are in is rejected. A line
    longer than MAX_LINE_BYTES is never held whole: it is read past and flagged (its record
    is rejected), and the csv module gets an empty line with as many quotes (0 or 1) as
    keep its idea of what is quoted: the lines after it are read as they would have been."""
    first = True
    while raw := file.readline(MAX_LINE_BYTES + 1):
        if first:
            raw, first = raw.removeprefix(BOM), False
        if len(raw) > MAX_LINE_BYTES:
            quotes = raw.count(b'"')
            if not raw.endswith(b"\n"):
                quotes += skip_line(file)
            if position.too_long is None:
                position.too_long = raw[:RAW_EXCERPT_BYTES].decode(errors="replace")
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
                yield Rejected(line, TOO_LONG, position.too_long)
                position.too_long, position.undecodable = None, False
                continue
            if position.undecodable:
                position.undecodable = False
                reason = "not valid UTF-8."
            elif len(record) == width:
                record.append("")  # what the columns the file lacks read as (see _column_index)
                try:
                    yield staged_row(line, pick(record))
                    continue
                except InvalidRow as exc:
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
            raise BadFile(reader.line_num, TOO_LONG)
        if position.undecodable:
            raise BadFile(reader.line_num, "not valid UTF-8.")
        if "".join(record).strip():
            return [name.strip() for name in record]
    raise BadFile(None, EMPTY)


def _column_index(header: list[str], line: int) -> list[int]:
    """For each of FIELDS, its position in the header, or len(header) if the file lacks it."""
    unknown = [name for name in header if name not in FIELD_SET]
    if unknown:
        names = ", ".join(repr(name[:100]) for name in unknown)
        raise BadFile(line, f"unknown column(s) {names}; allowed: {', '.join(FIELDS)}.")
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise BadFile(line, f"duplicated column(s): {', '.join(duplicated)}.")
    if "providerId" not in header:
        raise BadFile(line, "missing required column providerId.")
    return [header.index(name) if name in header else len(header) for name in FIELDS]
