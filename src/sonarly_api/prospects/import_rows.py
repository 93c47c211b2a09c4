"""Reading a prospect import file: format detection and opening (gzip, BOM); the readers of
each format are `import_csv` and `import_jsonl`, the validation of a row `import_values`.

Nothing here touches the database. `read_rows` returns a generator over the open file, so
memory stays flat whatever the file size; `importer` feeds what it yields into COPY.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal, TypeAlias, cast

from sonarly_api.prospects.import_csv import csv_rows
from sonarly_api.prospects.import_jsonl import jsonl_rows
from sonarly_api.prospects.import_values import (
    BOM,
    EMPTY,
    MAX_LINE_BYTES,
    BadFile,
    Rejected,
    StagedRow,
)

# The row types and limits are defined with the readers' shared code; imported from here.
__all__ = [
    "MAX_LINE_BYTES",
    "BadFile",
    "Format",
    "ReadPosition",
    "Rejected",
    "RowError",
    "StagedRow",
    "detect_format",
    "read_rows",
]

Format: TypeAlias = Literal["csv", "jsonl"]


@dataclass(frozen=True)
class RowError:
    line: int  # 1-based line in the file (CSV: the header is line 1)
    reason: str  # names the field, e.g. "providerId: must not contain '/' (also not as %2F)."


_CR_ONLY = (
    "lines end with a carriage return alone (CR, as on old Macs); save the file with LF or"
    " CRLF line endings."
)


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
        raise BadFile(None, EMPTY)
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
                    chunk, first = chunk.removeprefix(BOM), False
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
                yield from csv_rows(file)
            else:
                yield from jsonl_rows(file)
        except (EOFError, gzip.BadGzipFile, zlib.error):
            raise BadFile(None, "the gzip data is corrupt or truncated.") from None
        finally:
            read_position.stop()  # while the file is open: its final position
