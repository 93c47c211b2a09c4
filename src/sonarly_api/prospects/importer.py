"""Bulk import of prospects from a CSV or JSON Lines file (optionally gzipped).

One transaction: the file is streamed, validated in Python and COPYed into a temporary
staging table in chunks. Each chunk's missing persons, and the prospects of the rows whose
person it creates (which cannot have a prospect yet: usually most of a file of new
prospects), are created by one set-based statement that runs while Python parses the next
chunk (`import_staging`); a handful of set-based statements then insert or update the
prospects of the other rows (`import_apply`). Nothing is written row by row, memory stays
flat whatever the file size, and any failure (or cancellation) leaves the database as it was.

Rules (see the tests for each):
- Identity: `personId` if given, else `publicIdentifier`, else `linkedinUrl`; persons are
  created as if rows were processed in file order. A row with none of them is anonymous:
  the k-th anonymous row with provider id P matches the group's k-th existing prospect
  with provider id P (by created_at, id) whose person has no identifiers, so that a
  re-import is idempotent; unmatched ones get a new person. (`writer.write_rows` follows
  the same rules for a job's pages; see `identity`.)
- Several rows for one (person, provider id): the last one wins; the earlier ones are
  counted as `unchanged` (they wrote nothing), so created + updated + unchanged + rejected
  always equals rows_read.
- Invalid rows, by default: nothing is written and `ImportFailed` lists the first 20.
  The file is still read to the end so that `.rejected` tells how many rows are bad.
- Imports of one account group run one at a time (the group's lock, see `identity`):
  anonymous matching needs a stable view of the group's prospects. Imports and job pages
  of other groups go on meanwhile; persons, shared by all groups, are created so that two
  writers creating the same one both succeed with one person.
- Parsing runs on the event loop, yielding to it every few thousand rows: fine for the CLI
  or a worker, not meant for a request handler.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sonarly_api.errors import ValidationFailed
from sonarly_api.prospects import validation
from sonarly_api.prospects.identity import lock_group
from sonarly_api.prospects.import_apply import apply
from sonarly_api.prospects.import_rejects import RejectsFile, RejectsFileError, check_rejects_path
from sonarly_api.prospects.import_rows import (
    BadFile,
    ReadPosition,
    Rejected,
    RowError,
    StagedRow,
    read_rows,
)
from sonarly_api.prospects.import_staging import stage

__all__ = ["ImportFailed", "ImportSummary", "RowError", "import_prospects"]

MAX_REPORTED_ERRORS = 20
PROGRESS_EVERY = 50_000
# How often the feeding loop lets other tasks run (and a cancellation be delivered).
_YIELD_EVERY = 5_000
# New ids are a per-import 16-hex prefix plus an 8-hex counter (see `identity.id_prefix`).
_MAX_LINE = 0xFFFFFFFF


@dataclass(frozen=True)
class ImportSummary:
    rows_read: int
    created: int
    updated: int
    unchanged: int
    rejected: int
    errors: list[RowError]  # the first 20 at most
    # The import committed, but its rejects file is not where it was asked to be: why, and
    # where it is.
    rejects_warning: str | None = None


class ImportFailed(Exception):
    """Nothing was written. `.errors`: the first 20 row errors (empty when the problem is
    not tied to a line); `.rows_read` and `.rejected` count what was read."""

    def __init__(
        self, message: str, *, errors: list[RowError], rows_read: int = 0, rejected: int = 0
    ) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors
        self.rows_read = rows_read
        self.rejected = rejected


async def import_prospects(
    engine: AsyncEngine,
    account_group_id: str,
    path: Path,
    *,
    skip_invalid: bool = False,
    rejects_path: Path | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_bytes_read: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Import `path` into the account group; see the module docstring for the rules.

    With `skip_invalid`, valid rows are imported and rejected ones written to `rejects_path`
    (CSV: line, reason, raw) if given. `on_progress` gets the number of rows read so far,
    every 50,000 rows and at the end; an exception it raises aborts the import.
    `on_bytes_read` gets the bytes of the file read so far (compressed bytes for a gzipped
    file), right after each `on_progress` call, and the file's size once the file has been
    read to the end (also when the row count was already reported): with it, an ETA.

    Problems with the file or the rejects file raise `ImportFailed`, never `OSError`; once
    the import has committed nothing raises (see `ImportSummary.rejects_warning`)."""
    if rejects_path is not None and not skip_invalid:
        raise ValueError("rejects_path is only used with skip_invalid=True")
    try:
        group = validation.account_group_id(account_group_id)
    except ValidationFailed as exc:
        raise ImportFailed(exc.details or "invalid account group id.", errors=[]) from None
    tally = _Tally()
    position = ReadPosition()
    try:
        if rejects_path is not None:
            check_rejects_path(rejects_path, path)
        rows = read_rows(path, position)
    except BadFile as exc:
        raise _failed(exc, tally) from None
    except RejectsFileError as exc:
        raise ImportFailed(f"{exc}; nothing was imported.", errors=[]) from None
    except OSError as exc:
        raise ImportFailed(
            f"cannot read {path}: {exc.strerror or exc}; nothing was imported.", errors=[]
        ) from None
    try:
        with contextlib.closing(rows), RejectsFile(rejects_path) as rejects:
            async with engine.begin() as conn:
                await _begin(conn, group)
                report = _reporter(on_progress, on_bytes_read, position)
                staged = await stage(
                    conn, group, _feed(_reading(rows), tally, skip_invalid, rejects, report)
                )
                if tally.rejected and not skip_invalid:
                    raise ImportFailed(
                        f"{tally.rejected} invalid row(s) out of {tally.rows_read}; nothing was"
                        f" imported. First: line {tally.errors[0].line}: "
                        f"{tally.errors[0].reason}",
                        errors=tally.errors,
                        rows_read=tally.rows_read,
                        rejected=tally.rejected,
                    )
                created, updated = await apply(conn, group, staged.persons_lost)
                created += staged.prospects_created
                rejects.finish()
            warning = rejects.commit()
    except BadFile as exc:
        raise _failed(exc, tally) from None
    except RejectsFileError as exc:
        raise ImportFailed(
            f"{exc}; nothing was imported.", errors=[], rows_read=tally.rows_read
        ) from None
    return ImportSummary(
        rows_read=tally.rows_read,
        created=created,
        updated=updated,
        unchanged=tally.staged - created - updated,
        rejected=tally.rejected,
        errors=tally.errors,
        rejects_warning=warning,
    )


@dataclass
class _Tally:
    rows_read: int = 0
    staged: int = 0
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)


def _failed(exc: BadFile, tally: _Tally) -> ImportFailed:
    errors = [] if exc.line is None else [RowError(exc.line, exc.reason)]
    message = f"{str(exc).removesuffix('.')}; nothing was imported."
    return ImportFailed(message, errors=errors, rows_read=tally.rows_read)


def _reading(rows: Iterator[StagedRow | Rejected]) -> Iterator[StagedRow | Rejected]:
    """The rows, with a failure to read the file (a disk error, a file on a lost network
    share) as a problem with the file, not an `OSError` taken for the database's."""
    try:
        yield from rows
    except OSError as exc:
        raise BadFile(None, f"cannot read the file: {exc.strerror or exc}") from None


async def _feed(
    rows: Iterator[StagedRow | Rejected],
    tally: _Tally,
    skip_invalid: bool,
    rejects: RejectsFile,
    on_progress: Callable[[int], None] | None,
) -> AsyncGenerator[StagedRow, None]:
    """The valid rows, for COPY. Once a row is invalid and invalid rows are not skipped,
    the import will fail: stop sending rows but keep reading, to count the bad ones."""
    for row in rows:
        tally.rows_read += 1
        if isinstance(row, Rejected):
            tally.rejected += 1
            if len(tally.errors) < MAX_REPORTED_ERRORS:
                tally.errors.append(RowError(row.line, row.reason))
            rejects.write(row)
        elif skip_invalid or not tally.rejected:
            if row[0] > _MAX_LINE:
                raise BadFile(row[0], f"files are limited to {_MAX_LINE} lines.")
            tally.staged += 1
            yield row
        if tally.rows_read % _YIELD_EVERY == 0:
            await asyncio.sleep(0)
            if on_progress is not None and tally.rows_read % PROGRESS_EVERY == 0:
                on_progress(tally.rows_read)
    if on_progress is not None:
        on_progress(tally.rows_read)


def _reporter(
    on_progress: Callable[[int], None] | None,
    on_bytes_read: Callable[[int], None] | None,
    position: ReadPosition,
) -> Callable[[int], None] | None:
    """What `_feed` calls every PROGRESS_EVERY rows and at the end of the file: the rows
    read, unless that count was already reported (or is 0), then the bytes read."""
    if on_progress is None and on_bytes_read is None:
        return None
    reported = 0

    def report(rows_read: int) -> None:
        nonlocal reported
        if on_progress is not None and rows_read != reported:
            reported = rows_read
            on_progress(rows_read)
        if on_bytes_read is not None:
            on_bytes_read(position())

    return report


async def _begin(conn: AsyncConnection, group: str) -> None:
    """Lift the service's statement timeout (meant for lookups) for this transaction, give
    the sorts and hashes room, check the group, and wait for the group's other writers."""
    await conn.execute(
        text(
            "SELECT set_config('statement_timeout', '0', true),"
            " set_config('work_mem', '256MB', true),"
            # The chunks' probe plans (see `import_staging.PROBE_PLANS`) cost over
            # jit_above_cost before PostgreSQL 18 (a disabled scan adds 1e10): compiling
            # them took 1.3-4 s a chunk.
            " set_config('jit', 'off', true),"
            # The tables read here are cached: prefer index probes where they are cheaper.
            " set_config('random_page_cost', '1.1', true)"
        )
    )
    # KEY SHARE: the group cannot be deleted under the import; lookups are not blocked.
    found = await conn.execute(
        text("SELECT 1 FROM account_groups WHERE id = :group FOR KEY SHARE"), {"group": group}
    )
    if found.first() is None:
        raise ImportFailed(f"account group {group} does not exist.", errors=[])
    await lock_group(conn, group)
