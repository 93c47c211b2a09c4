"""The JSON Lines reader of prospect import files: one flat object a line, keys among
FIELDS."""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

from sonarly_api.prospects.import_values import (
    BOM,
    FIELD_SET,
    FIELDS,
    MAX_LINE_BYTES,
    RAW_EXCERPT_BYTES,
    TOO_LONG,
    InvalidRow,
    Rejected,
    StagedRow,
    skip_line,
    staged_row,
)


def jsonl_rows(file: io.BufferedIOBase) -> Iterator[StagedRow | Rejected]:
    line = 0
    # Split on "\n" only, so line numbers match `wc -l` (json ignores a "\r" before it).
    while raw := file.readline(MAX_LINE_BYTES + 1):
        line += 1
        if line == 1:
            raw = raw.removeprefix(BOM)
        if len(raw) > MAX_LINE_BYTES:
            if not raw.endswith(b"\n"):
                skip_line(file)
            yield Rejected(line, TOO_LONG, raw[:RAW_EXCERPT_BYTES].decode(errors="replace"))
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
            yield staged_row(line, _json_values(text))
        except InvalidRow as exc:
            yield Rejected(line, str(exc), text)


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object of a row, refused if a key is repeated (json keeps the last one silently),
    as a repeated CSV column is."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        counts = Counter(key for key, _ in pairs)
        repeated = sorted(key for key, count in counts.items() if count > 1)
        names = ", ".join(repr(name[:100]) for name in repeated)
        raise InvalidRow(f"duplicated key(s) {names}.")
    return obj


# Made once: json.loads with a hook would make a decoder for every row.
_JSON = json.JSONDecoder(object_pairs_hook=_json_object)


def _json_values(raw: str) -> list[str]:
    try:
        obj = _JSON.decode(raw)
    except json.JSONDecodeError as exc:
        raise InvalidRow(f"not valid JSON: {exc.msg} (column {exc.colno}).") from None
    except RecursionError:
        # Raised by the parser itself, at Python's recursion limit: a row is one flat
        # object, nested values are refused anyway.
        raise InvalidRow("not valid JSON for a row: nested too deeply.") from None
    if not isinstance(obj, dict):
        raise InvalidRow(f"must be a JSON object, got {_json_type(obj)}.")
    for key, value in obj.items():
        if key not in FIELD_SET:
            raise InvalidRow(f"unknown key {key[:100]!r}; allowed: {', '.join(FIELDS)}.")
        if value is not None and not isinstance(value, str):
            raise InvalidRow(f"{key}: must be a string or null, got {_json_type(value)}.")
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
