"""The rejects file of an import with skip_invalid: rejected rows as CSV (line, reason, raw)."""

from __future__ import annotations

import contextlib
import csv
import os
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from sonarly_api.prospects.import_rows import Rejected


class RejectsFileError(Exception):
    """The rejects file cannot be written (before the import commits: nothing is written)."""


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (a link, another spelling): False if either is
    missing."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def partial_path(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


def check_rejects_path(rejects: Path, source: Path) -> None:
    """Refuses a rejects path that would overwrite the file being imported, as itself or
    through the partial file written beside it."""
    for written in (rejects, partial_path(rejects)):
        if same_file(written, source):
            raise RejectsFileError(
                f"the rejects file {written} is the file being imported; choose another path"
            )


class RejectsFile:
    """Written beside the target (`<name>.partial`), finished before the import commits (so
    that a full disk fails the import, not the report) and moved into place only once the
    import has committed, so a failed import leaves no rejects file describing an import
    that did not happen."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._partial = partial_path(path) if path else None
        self._file: IO[str] | None = None
        self._writer: Any = None

    def __enter__(self) -> RejectsFile:
        if self._partial is not None:
            try:
                self._file = self._partial.open("w", encoding="utf-8", newline="")
                self._writer = csv.writer(self._file)
                self._writer.writerow(["line", "reason", "raw"])
            except OSError as exc:
                self._close()
                raise _error(self._partial, exc) from None
        return self

    def write(self, row: Rejected) -> None:
        if self._writer is not None:
            try:
                self._writer.writerow([row.line, row.reason, row.raw])
            except OSError as exc:
                raise _error(self._partial, exc) from None

    def finish(self) -> None:
        """Before the commit: everything on disk, or `RejectsFileError`."""
        if self._file is not None:
            try:
                self._file.close()
            except OSError as exc:
                raise _error(self._partial, exc) from None

    def commit(self) -> str | None:
        """After the commit: move the file into place. Never raises (the import is done):
        returns what went wrong, naming where the rejected rows are."""
        if self._path is None or self._partial is None or self._file is None:
            return None
        self._file = None
        try:
            os.replace(self._partial, self._path)
        except OSError as exc:
            return (
                f"the rejected rows are in {self._partial}: it could not be renamed to"
                f" {self._path} ({exc.strerror or exc})."
            )
        return None

    def _close(self) -> None:
        # Being discarded: the import's own error is what matters.
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
        if self._partial is not None:
            with contextlib.suppress(OSError):
                self._partial.unlink(missing_ok=True)
        self._file = None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._file is not None:
            self._close()


def _error(path: Path | None, exc: OSError) -> RejectsFileError:
    return RejectsFileError(f"cannot write the rejects file {path}: {exc.strerror or exc}")
