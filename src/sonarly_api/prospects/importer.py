"""Bulk import of prospects from a CSV or JSON Lines file (optionally gzipped).

One transaction: the file is streamed, validated in Python and COPYed into a temporary
staging table in chunks. Each chunk's missing persons, and the prospects of the rows whose
person it creates (which cannot have a prospect yet: usually most of a file of new
prospects), are created by one set-based statement that runs while Python parses the next
chunk; a handful of set-based statements then insert or update the prospects of the other
rows. Nothing is written row by row, memory stays flat whatever the file size, and any
failure (or cancellation) leaves the database as it was.

Rules (see the tests for each):
- Identity: `personId` if given, else `publicIdentifier`, else `linkedinUrl`; persons are
  created as if rows were processed in file order. A row with none of them is anonymous:
  the k-th anonymous row with provider id P matches the group's k-th existing prospect
  with provider id P (by created_at, id) whose person has no identifiers, so that a
  re-import is idempotent; unmatched ones get a new person.
- Several rows for one (person, provider id): the last one wins; the earlier ones are
  counted as `unchanged` (they wrote nothing), so created + updated + unchanged + rejected
  always equals rows_read.
- Invalid rows, by default: nothing is written and `ImportFailed` lists the first 20.
  The file is still read to the end so that `.rejected` tells how many rows are bad.
- Imports run one at a time (a transaction-level advisory lock): persons are shared by all
  account groups, and anonymous matching needs a stable view of the group's prospects.
- Parsing runs on the event loop, yielding to it every few thousand rows: fine for the CLI
  or a worker, not meant for a request handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import time
from collections import Counter
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeAlias, cast

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sonarly_api.errors import ValidationFailed
from sonarly_api.ids import new_id
from sonarly_api.prospects import validation
from sonarly_api.prospects.import_rows import (
    BadFile,
    ReadPosition,
    Rejected,
    RowError,
    StagedRow,
    read_rows,
)

__all__ = ["ImportFailed", "ImportSummary", "RowError", "import_prospects"]

MAX_REPORTED_ERRORS = 20
PROGRESS_EVERY = 50_000
# How often the feeding loop lets other tasks run (and a cancellation be delivered).
_YIELD_EVERY = 5_000
# Rows per chunk of the staging pipeline (see `_stage`): ~12 MB of parsed rows each. Chunks
# of 20,000 rows made a 1M-row import fastest (23.1-23.5 s; 10,000: 24.4 s; 50,000: 27.5 s).
CHUNK_ROWS = 20_000
# New ids are a per-import 16-hex prefix plus an 8-hex counter (see `_id_prefix`).
_MAX_LINE = 0xFFFFFFFF
# Any constant works; it only has to be the same for every importer.
_IMPORT_LOCK_KEY = 0x736F6E61726C7931  # "sonarly1"
_STAGING_COLUMNS = [
    "line",
    "provider_id",
    "person_id",
    "public_identifier",
    "linkedin_url",
    "name",
    "company_name",
    "title",
]
_STAGING_TABLE = """
CREATE TEMP TABLE {table} (line bigint NOT NULL, provider_id text NOT NULL, person_id text,
    public_identifier text, linkedin_url text, name text, company_name text, title text{extra})
    ON COMMIT DROP
"""
# A staged row of a chunk: a StagedRow and what `_prepare` adds.
_ChunkRow: TypeAlias = tuple[
    int,
    str,
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    bool,
    bool,
    bool,
    int,
    int,
]
# Sorts after any text (the largest code point); only the insert order depends on it.
_LAST = chr(0x10FFFF)
_CHUNK_COLUMNS = [
    *_STAGING_COLUMNS,
    "first_in_chunk",
    "url_shared",
    "provider_shared",
    "person_number",
    "prospect_number",
]


@dataclass(frozen=True)
class ImportSummary:
    rows_read: int
    created: int
    updated: int
    unchanged: int
    rejected: int
    errors: list[RowError]  # the first 20 at most


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
    read to the end (also when the row count was already reported): with it, an ETA."""
    if rejects_path is not None and not skip_invalid:
        raise ValueError("rejects_path is only used with skip_invalid=True")
    try:
        group = validation.account_group_id(account_group_id)
    except ValidationFailed as exc:
        raise ImportFailed(exc.details or "invalid account group id.", errors=[]) from None
    tally = _Tally()
    position = ReadPosition()
    try:
        rows = read_rows(path, position)
    except BadFile as exc:
        raise _failed(exc, tally) from None
    with contextlib.closing(rows), _RejectsFile(rejects_path) as rejects:
        try:
            async with engine.begin() as conn:
                await _begin(conn, group)
                report = _reporter(on_progress, on_bytes_read, position)
                chunk_created = await _stage(
                    conn, group, _feed(rows, tally, skip_invalid, rejects, report)
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
                created, updated = await _apply(conn, group)
                created += chunk_created
        except BadFile as exc:
            raise _failed(exc, tally) from None
        rejects.commit()
    return ImportSummary(
        rows_read=tally.rows_read,
        created=created,
        updated=updated,
        unchanged=tally.staged - created - updated,
        rejected=tally.rejected,
        errors=tally.errors,
    )


@dataclass
class _Tally:
    rows_read: int = 0
    staged: int = 0
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)


def _failed(exc: BadFile, tally: _Tally) -> ImportFailed:
    errors = [] if exc.line is None else [RowError(exc.line, exc.reason)]
    return ImportFailed(f"{exc}; nothing was imported.", errors=errors, rows_read=tally.rows_read)


class _RejectsFile:
    """Rejected rows as CSV (line, reason, raw). Written beside the target and moved into
    place only once the import has committed, so a failed import leaves no rejects file
    describing an import that did not happen."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._partial = path.with_name(path.name + ".partial") if path else None
        self._file: IO[str] | None = None
        self._writer: Any = None

    def __enter__(self) -> _RejectsFile:
        if self._partial is not None:
            self._file = self._partial.open("w", encoding="utf-8", newline="")
            self._writer = csv.writer(self._file)
            self._writer.writerow(["line", "reason", "raw"])
        return self

    def write(self, row: Rejected) -> None:
        if self._writer is not None:
            self._writer.writerow([row.line, row.reason, row.raw])

    def commit(self) -> None:
        if self._file is not None and self._path is not None and self._partial is not None:
            self._file.close()
            os.replace(self._partial, self._path)
            self._file = None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._file is not None and self._partial is not None:
            self._file.close()
            self._partial.unlink(missing_ok=True)


async def _feed(
    rows: Iterator[StagedRow | Rejected],
    tally: _Tally,
    skip_invalid: bool,
    rejects: _RejectsFile,
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
    the sorts and hashes room, check the group, and wait for any other import to finish."""
    await conn.execute(
        text(
            "SELECT set_config('statement_timeout', '0', true),"
            " set_config('work_mem', '256MB', true),"
            # The chunks' probe plans (see `_PROBE_PLANS`) cost over jit_above_cost before
            # PostgreSQL 18 (a disabled scan adds 1e10): compiling them took 1.3-4 s a chunk.
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
    await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _IMPORT_LOCK_KEY})


async def _stage(conn: AsyncConnection, group: str, rows: AsyncGenerator[StagedRow, None]) -> int:
    """COPY the rows chunk by chunk into a temporary table that lives until the end of the
    transaction (no index while loading); each chunk's statement (see `_Chunk`) runs while
    Python parses the next chunk and leaves in `import_rows` the rows it did not import.
    Returns the number of prospects the chunks created."""
    driver = await _driver(conn)
    extra = (
        ", first_in_chunk boolean NOT NULL, url_shared boolean NOT NULL,"
        " provider_shared boolean NOT NULL, person_number bigint NOT NULL,"
        " prospect_number bigint NOT NULL"
    )
    await conn.execute(text(_STAGING_TABLE.format(table="import_chunk", extra=extra)))
    await conn.execute(text(_STAGING_TABLE.format(table="import_rows", extra="")))
    chunk_sql = _Chunk(driver, group)
    await conn.execute(text(_PROBE_PLANS))
    pending: asyncio.Task[None] | None = None
    try:
        async with contextlib.aclosing(rows):
            numbered = 0  # rows staged so far: each has numbers of its own for new ids
            copy = _ChunkCopy(driver)
            async for chunk in _chunks(rows, CHUNK_ROWS):
                staged = _prepare(chunk, numbered)
                numbered += len(chunk)
                copy.encode(staged)
                if pending is not None:
                    await copy.wait(pending)
                # Created in this transaction: emptied in place, no new file.
                await driver.execute("TRUNCATE import_chunk")
                await copy.send(staged)
                # Runs on the server while this coroutine parses the next chunk.
                pending = asyncio.create_task(chunk_sql.run())
        if pending is not None:
            await pending
    finally:
        if pending is not None and not pending.done():
            await _abandon(pending)
    await conn.execute(text(_DEFAULT_PLANS))
    # Temporary tables are never analyzed automatically; the plans below depend on it.
    await conn.execute(text("ANALYZE import_rows"))
    # For "not named by a personId in this file": an index probe, whatever the plan.
    await conn.execute(text("CREATE INDEX ON import_rows (person_id) WHERE person_id IS NOT NULL"))
    return chunk_sql.prospects_created


def _prepare(chunk: list[StagedRow], first_number: int) -> list[_ChunkRow]:
    """The chunk as `_CHUNK` reads it, prepared here because Python has a core to spare
    while the server runs the previous chunk's statement: in (public identifier, else
    LinkedIn URL; line) order, the order in which the statement inserts new persons, each
    row with

    - `first_in_chunk`: the row may create a person, being the first (in file order) of its
      public identifier among the rows without a personId, or of its URL among the rows
      with only a URL;
    - `url_shared`: another such row has the same URL, so which of them is the first to
      create a person, and takes the URL, depends on the persons that exist;
    - `provider_shared`: another row of the chunk has the same provider id, so the two may
      be rows for one person and provider id;
    - `person_number` and `prospect_number`: numbers for the ids of the person and the
      prospect the row may create, from `first_number` on, in the order of their indexes:
      the order above for persons, (provider id, line) for prospects."""
    # Written for speed (plain loops, indexing, stable sorts on precomputed keys): it
    # runs for every row, on the core that also parses the file.
    identifiers: set[str] = set()
    urls: set[str] = set()
    firsts = [False] * len(chunk)
    candidate_urls: Counter[str] = Counter()
    for i, row in enumerate(chunk):
        if row[2] is not None:
            continue
        public_identifier, linkedin_url = row[3], row[4]
        if public_identifier is not None:
            if public_identifier not in identifiers:
                identifiers.add(public_identifier)
                firsts[i] = True
                if linkedin_url is not None:
                    candidate_urls[linkedin_url] += 1
        elif linkedin_url is not None and linkedin_url not in urls:
            urls.add(linkedin_url)
            firsts[i] = True
            candidate_urls[linkedin_url] += 1
    providers = Counter(row[1] for row in chunk)
    # Stable sorts: equal keys stay in file order. Code point order is the byte order of
    # UTF-8 (COLLATE "C"). Persons by the key that finds them: their public identifier, else
    # their URL; the rows that create no person last. A profile's URL is usually a fixed
    # prefix and its public identifier, so both lists of keys the statement looks up are
    # then already sorted, which spares the index scans a sort of each (~15 ms a chunk when
    # some rows without a URL made the URL order not that of the public identifiers).
    person_keys = [_LAST if row[2] is not None else row[3] or row[4] or _LAST for row in chunk]
    by_person = sorted(range(len(chunk)), key=person_keys.__getitem__)
    provider_keys = [row[1] for row in chunk]
    prospect_numbers = [0] * len(chunk)
    for number, i in enumerate(sorted(range(len(chunk)), key=provider_keys.__getitem__)):
        prospect_numbers[i] = first_number + number
    staged: list[_ChunkRow] = []
    for number, i in enumerate(by_person, first_number):
        row = chunk[i]
        first = firsts[i]
        url_shared = first and row[4] is not None and candidate_urls[row[4]] > 1
        extra = (first, url_shared, providers[row[1]] > 1, number, prospect_numbers[i])
        staged.append(row + extra)
    return staged


class _ChunkCopy:
    """How each chunk reaches `import_chunk`: as CSV encoded in advance, or as records the
    driver encodes while it sends them, during which the server waits (~46 ms a chunk of
    20,000 rows, against ~29 ms for the CSV). Encoding in advance costs Python more (~3 µs a
    row against ~2), so it pays only while Python would otherwise wait for the server's
    statement on the previous chunk: when the server has more to do per row than Python
    (new prospects), not the other way round (a re-import, where most rows go to the final
    upsert). Decided chunk by chunk from the last chunk's wait."""

    def __init__(self, driver: asyncpg.Connection) -> None:
        self._driver = driver
        self._spare = 0.0  # how long Python had for the last chunk before the server was done
        self._cost = 0.0  # what encoding the last CSV chunk cost
        self._csv: memoryview | None = None  # the chunk to send, if encoded in advance

    def encode(self, staged: list[_ChunkRow]) -> None:
        """Before waiting for the server: encode the chunk now if there was time to spare."""
        self._csv = None
        if _encode_ahead(self._spare, self._cost):
            started = time.perf_counter()
            self._csv = _csv(staged)
            self._cost = time.perf_counter() - started

    async def wait(self, pending: asyncio.Task[None]) -> None:
        started = time.perf_counter()
        await pending
        encoding = self._cost if self._csv is not None else 0.0
        self._spare = time.perf_counter() - started + encoding

    async def send(self, staged: list[_ChunkRow]) -> None:
        if self._csv is None:
            await self._driver.copy_records_to_table(
                "import_chunk", records=staged, columns=_CHUNK_COLUMNS
            )
        else:
            await self._driver.copy_to_table(
                "import_chunk", source=self._csv, columns=_CHUNK_COLUMNS, format="csv"
            )


# A function of its own so that the tests can force either way.
def _encode_ahead(spare: float, cost: float) -> bool:
    return spare > cost


def _csv(staged: list[_ChunkRow]) -> memoryview:
    """The chunk as COPY's CSV. An unquoted empty field is NULL, which is what None
    becomes; no staged value is an empty string (empty values are read as None), so none
    is mistaken for one. (A memoryview: asyncpg would take bytes for a file name.)"""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(staged)
    return memoryview(buffer.getvalue().encode())


async def _driver(conn: AsyncConnection) -> asyncpg.Connection:
    raw = await conn.get_raw_connection()
    driver = cast(asyncpg.Connection, raw.driver_connection)
    # COPY on the driver bypasses SQLAlchemy: it must run inside the transaction SQLAlchemy
    # began (the statements of `_begin` started it; not so on an autocommit engine).
    if not driver.is_in_transaction():
        raise RuntimeError("import_prospects needs a transactional (not autocommit) engine")
    return driver


async def _chunks(
    rows: AsyncGenerator[StagedRow, None], size: int
) -> AsyncGenerator[list[StagedRow], None]:
    chunk: list[StagedRow] = []
    async for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def _abandon(task: asyncio.Task[None]) -> None:
    """Stop a chunk's statement that an error or a cancellation has made pointless, and
    wait for it: the connection must be free again for the rollback."""
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled():
        task.exception()  # retrieved: the error that matters is the one being raised


class _Chunk:
    """One staged chunk (`import_chunk`), in file order after the chunks before it: creates
    the persons its rows find by publicIdentifier or linkedinUrl, which is "as if rows were
    processed in file order" (the persons earlier chunks created are then simply existing
    persons), and the prospects of the rows whose person it has just created, which cannot
    have a prospect yet. Its other rows go to `import_rows`, for `_apply`.

    It runs on the server while Python parses the next chunk, so the two cores work at once,
    and most of a file of new prospects is written by then."""

    def __init__(self, driver: asyncpg.Connection, group: str) -> None:
        self._driver = driver
        self._group = group
        self._sql = _CHUNK.format(
            person_id=_sql_id(_id_prefix(), "person_number"),
            prospect_id=_sql_id(_id_prefix(), "prospect_number"),
        )
        self.prospects_created = 0

    async def run(self) -> None:
        self.prospects_created += await self._driver.fetchval(self._sql, self._group)


def _id_prefix() -> str:
    """Ids made in SQL: the first 16 hex digits of a `new_id()` (its time, then random), then
    an 8-hex counter. Same shape and ordering as service ids, and one statement's new ids
    sort in the order it numbers them: for prospects, by provider id then line, which
    anonymous matching relies on (one import's prospects share created_at)."""
    return new_id()[:16]


def _sql_id(prefix: str, counter: str) -> str:
    # Inlined into the SQL text: must be hex digits only.
    assert len(prefix) == 16
    assert prefix.isalnum()
    return f"'{prefix}' || lpad(to_hex({counter}), 8, '0')"


async def _apply(conn: AsyncConnection, group: str) -> tuple[int, int]:
    """For the rows the chunks left in `import_rows`: create the missing persons, then
    insert/update prospects. Returns (created, updated).

    Rows are inserted in index order (and their new ids numbered in that order) so that
    each B-tree is filled left to right instead of at random: about twice as fast.
    Sorts use COLLATE "C" (byte order): equality is the same for these deterministic
    collations, and it is several times cheaper than a locale's order, which only matters
    here as a close approximation of the indexes' order."""
    await conn.execute(text(_PERSONS_BY_ID))
    await conn.execute(
        text(_ANONYMOUS.format(new_id=_sql_id(_id_prefix(), "line"))), {"group": group}
    )
    await conn.execute(text("ANALYZE import_anonymous"))
    await conn.execute(
        text("INSERT INTO persons (id) SELECT person_id FROM import_anonymous WHERE new_person")
    )
    counts = await conn.execute(
        text(_UPSERT.format(new_id=_sql_id(_id_prefix(), "n"))), {"group": group}
    )
    created, updated = counts.one()
    return int(created), int(updated)


# A person named by personId that does not exist yet is created without identifiers.
_PERSONS_BY_ID = """
INSERT INTO persons (id)
SELECT person_id FROM import_rows r
WHERE person_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM persons p WHERE p.id = r.person_id)
GROUP BY person_id
ORDER BY person_id COLLATE "C"
ON CONFLICT (id) DO NOTHING
"""

# While staging, one chunk's statements read persons through its indexes: a chunk is small
# against persons, whose statistics may also be stale (a sequential scan would read all of
# persons for every chunk). Hash joins stay on: the chunk's own rows are joined to each
# other, and to what was found in persons, by hashing. This holds for the reference check
# of `prospects` (revisions 0002, 0003) run by each chunk's insert too.
_PROBE_PLANS = """
SELECT set_config('enable_mergejoin', 'off', true), set_config('enable_seqscan', 'off', true)
"""
_DEFAULT_PLANS = """
SELECT set_config(name, reset_val, true) FROM pg_settings
WHERE name IN ('enable_mergejoin', 'enable_seqscan')
"""

# One chunk (see `_Chunk`). Its persons found by publicIdentifier, else linkedinUrl, created
# if missing, as if rows were processed in file order: a public identifier's person is
# created by its first row, with that row's LinkedIn URL unless an existing person has it or
# an earlier row created a person with it; a URL-only row creates a person with just that
# URL unless an earlier row already did. Earlier chunks' rows have created their persons
# already. Then the prospects of the rows whose person it created (the last row per
# provider id and person wins), and the other rows into `import_rows`. $1: the group.
#
# No sort of the chunk: `first_in_chunk` and `url_shared` come from Python, and the chunk's
# order is the insert order chosen by `_prepare`. What persons already have is looked up
# with `= ANY (array)`: one index scan per index for the whole chunk, which moves forward
# through the index (PostgreSQL 17+), instead of a subquery probing it for every row.
_CHUNK = """
WITH chunk AS MATERIALIZED (
    SELECT line, provider_id, public_identifier, linkedin_url, name, company_name, title,
           first_in_chunk, url_shared, provider_shared, person_number, prospect_number
    FROM import_chunk
    WHERE person_id IS NULL AND (public_identifier IS NOT NULL OR linkedin_url IS NOT NULL)
), taken_identifiers AS MATERIALIZED (
    -- Of the public identifiers and URLs of the rows that may create a person, those that
    -- a person already has.
    SELECT public_identifier FROM persons
    WHERE public_identifier = ANY (ARRAY(
        SELECT public_identifier FROM chunk WHERE first_in_chunk AND public_identifier IS NOT NULL
    ))
), taken_urls AS MATERIALIZED (
    SELECT linkedin_url FROM persons
    WHERE linkedin_url = ANY (ARRAY(
        SELECT linkedin_url FROM chunk WHERE first_in_chunk AND linkedin_url IS NOT NULL
    ))
), candidates AS MATERIALIZED (
    -- The rows that create a person unless an earlier row of the chunk has its URL: the
    -- first of each public identifier no person has, and of each URL no person has (with
    -- a public identifier, a row whose URL a person has creates a person without it).
    SELECT c.public_identifier, c.linkedin_url, c.line, c.url_shared, c.person_number,
           u.linkedin_url IS NOT NULL AS url_taken
    FROM chunk c
    LEFT JOIN taken_urls u ON u.linkedin_url = c.linkedin_url
    WHERE c.first_in_chunk
      AND NOT EXISTS (
          SELECT FROM taken_identifiers t WHERE t.public_identifier = c.public_identifier
      )
      AND (c.public_identifier IS NOT NULL OR u.linkedin_url IS NULL)
), ranked AS (
    -- The first candidate with its URL: the only one, or else the first by line (a sort of
    -- only the candidates whose URL another row of the chunk may take first).
    SELECT public_identifier, linkedin_url, person_number, url_taken, true AS first_with_url
    FROM candidates WHERE NOT url_shared
    UNION ALL
    SELECT public_identifier, linkedin_url, person_number, url_taken,
           row_number() OVER (PARTITION BY linkedin_url COLLATE "C" ORDER BY line) = 1
    FROM candidates WHERE url_shared
), new_persons AS (
    INSERT INTO persons (id, public_identifier, linkedin_url)
    SELECT {person_id}, public_identifier,
           CASE WHEN first_with_url AND NOT url_taken THEN linkedin_url END
    FROM ranked r
    WHERE public_identifier IS NOT NULL OR first_with_url
    RETURNING id, public_identifier, linkedin_url
), owned AS (
    -- The rows whose person was just created, found as `_UPSERT` finds persons: by public
    -- identifier, else by URL (which the person may have from another row of the chunk).
    SELECT c.*, n.id AS person_id
    FROM chunk c JOIN new_persons n ON n.public_identifier = c.public_identifier
    UNION ALL
    SELECT c.*, n.id
    FROM chunk c JOIN new_persons n ON n.linkedin_url = c.linkedin_url
    WHERE c.public_identifier IS NULL
), new_prospects AS (
    INSERT INTO prospects (account_group_id, id, person_id, provider_id, public_identifier,
                           linkedin_url, name, company_name, title)
    SELECT $1, {prospect_id}, person_id, provider_id, public_identifier, linkedin_url, name,
           company_name, title
    FROM (
        SELECT * FROM owned WHERE NOT provider_shared
        UNION ALL
        -- The last row per provider id and person wins (a sort of only the rows that may
        -- be several for one).
        SELECT * FROM (
            SELECT DISTINCT ON (provider_id COLLATE "C", person_id COLLATE "C") *
            FROM owned WHERE provider_shared
            ORDER BY provider_id COLLATE "C", person_id COLLATE "C", line DESC
        ) latest
    ) o
    ORDER BY prospect_number  -- index order (an integer sort)
    RETURNING 1
), rest AS (
    INSERT INTO import_rows
    SELECT line, provider_id, person_id, public_identifier, linkedin_url, name, company_name,
           title
    FROM import_chunk i
    WHERE NOT EXISTS (SELECT FROM owned o WHERE o.line = i.line)
)
-- `rest` runs to completion although nothing reads it, as every data-modifying WITH does.
SELECT count(*) FROM new_prospects
"""

# The persons of anonymous rows: the k-th anonymous row with provider id P takes the person
# of the group's k-th reusable prospect with provider id P, or a new person (`new_person`).
# Persons named by a personId in this file are not reusable: that row owns them. (Paired
# by grouping rather than by a join between CTEs, for the reason given above.)
_ANONYMOUS = """
CREATE TEMP TABLE import_anonymous ON COMMIT DROP AS
WITH anonymous AS (
    SELECT line, provider_id,
           row_number() OVER (PARTITION BY provider_id COLLATE "C" ORDER BY line) AS k
    FROM import_rows
    WHERE person_id IS NULL AND public_identifier IS NULL AND linkedin_url IS NULL
), reusable AS (
    -- Per provider id (LATERAL: an index probe each, whatever the group's statistics say).
    SELECT a.provider_id, r.person_id, r.k
    FROM (SELECT DISTINCT provider_id FROM anonymous) a
    CROSS JOIN LATERAL (
        SELECT p.person_id, row_number() OVER (ORDER BY p.created_at, p.id) AS k
        FROM prospects p
        JOIN persons s ON s.id = p.person_id
        WHERE p.account_group_id = :group AND p.provider_id = a.provider_id
          AND s.public_identifier IS NULL AND s.linkedin_url IS NULL
          AND NOT EXISTS (SELECT 1 FROM import_rows x WHERE x.person_id = p.person_id)
    ) r
), paired AS (
    SELECT max(line) AS line, max(person_id) AS person_id
    FROM (
        SELECT provider_id, k, line, NULL AS person_id FROM anonymous
        UNION ALL
        SELECT provider_id, k, NULL, person_id FROM reusable
    ) both_sides
    GROUP BY provider_id, k
)
SELECT line, coalesce(person_id, {new_id}) AS person_id, person_id IS NULL AS new_person
FROM paired
WHERE line IS NOT NULL
"""

# Every row with its person; the last row per (provider id, person) against the existing
# prospect: updated only if a value differs (so updated_at moves only on a change),
# inserted when there is none. New prospect ids are numbered by (provider id, line): index
# order, and file order among one provider id's rows, which anonymous matching relies on.
_UPSERT = """
WITH resolved AS (
    -- The rows the chunks did not import (see `_CHUNK`). One branch per kind of row, so
    -- that each join reads only the rows that need it. LEFT joins: a person that is somehow
    -- missing makes the insert fail (NOT NULL), loudly. `new_person`: an anonymous row's
    -- person created by `_ANONYMOUS`, so it has no prospect yet. (A person a chunk created
    -- may have a prospect: that chunk's.)
    SELECT line, provider_id, person_id,
           public_identifier, linkedin_url, name, company_name, title, false AS new_person
    FROM import_rows
    WHERE person_id IS NOT NULL
    UNION ALL
    SELECT r.line, r.provider_id, p.id,
           r.public_identifier, r.linkedin_url, r.name, r.company_name, r.title, false
    FROM import_rows r
    LEFT JOIN persons p ON p.public_identifier = r.public_identifier
    WHERE r.person_id IS NULL AND r.public_identifier IS NOT NULL
    UNION ALL
    SELECT r.line, r.provider_id, p.id,
           r.public_identifier, r.linkedin_url, r.name, r.company_name, r.title, false
    FROM import_rows r
    LEFT JOIN persons p ON p.linkedin_url = r.linkedin_url
    WHERE r.person_id IS NULL AND r.public_identifier IS NULL AND r.linkedin_url IS NOT NULL
    UNION ALL
    SELECT r.line, r.provider_id, a.person_id,
           r.public_identifier, r.linkedin_url, r.name, r.company_name, r.title, a.new_person
    FROM import_rows r
    LEFT JOIN import_anonymous a ON a.line = r.line
    WHERE r.person_id IS NULL AND r.public_identifier IS NULL AND r.linkedin_url IS NULL
), latest AS (
    SELECT DISTINCT ON (provider_id COLLATE "C", person_id COLLATE "C") *
    FROM resolved
    ORDER BY provider_id COLLATE "C", person_id COLLATE "C", line DESC
), compared AS (
    -- Numbered here, where the rows are already in provider id order: sorting each
    -- provider id's few rows by line (an incremental sort) is much cheaper than sorting
    -- the new rows again after `compared` is materialized. (Updated rows leave gaps.)
    SELECT l.*, p.id AS prospect_id, p.ctid AS prospect_ctid, p.created_here,
           (p.public_identifier, p.linkedin_url, p.name, p.company_name, p.title)
           IS DISTINCT FROM
           (l.public_identifier, l.linkedin_url, l.name, l.company_name, l.title) AS changed,
           row_number() OVER (ORDER BY l.provider_id COLLATE "C", l.line) AS n
    FROM latest l
    -- The existing prospect: one index probe per row, skipped (a one-time filter) for the
    -- persons this import created, usually most of a file of new prospects: a million
    -- probes cost ~1 s.
    LEFT JOIN LATERAL (
        SELECT p.id, p.ctid, p.public_identifier, p.linkedin_url, p.name, p.company_name,
               p.title, p.xmin = pg_current_xact_id()::xid AS created_here
        FROM prospects p
        WHERE l.new_person IS NOT TRUE AND p.account_group_id = :group
          AND p.provider_id = l.provider_id AND p.person_id = l.person_id
        OFFSET 0  -- not pulled up into a join, which would probe for every row
    ) p ON true
), updated AS (
    UPDATE prospects p
    SET public_identifier = c.public_identifier, linkedin_url = c.linkedin_url,
        name = c.name, company_name = c.company_name, title = c.title, updated_at = now()
    FROM compared c
    -- By ctid, which the planner cannot mistake for a small set as it may the group's rows
    -- right after an import (stale statistics): no nested loop rescanning `compared`.
    WHERE c.prospect_id IS NOT NULL AND c.changed AND p.ctid = c.prospect_ctid
    RETURNING c.created_here
), created AS (
    INSERT INTO prospects (account_group_id, id, person_id, provider_id, public_identifier,
                           linkedin_url, name, company_name, title)
    SELECT :group, {new_id}, person_id, provider_id, public_identifier,
           linkedin_url, name, company_name, title
    FROM compared
    WHERE prospect_id IS NULL
    -- No ORDER BY: a CTE is read back in the order it was written, that of n, which only
    -- matters here for filling the indexes left to right (ids come from n, not the order).
    RETURNING 1
)
-- A prospect an earlier chunk of this import created is counted there, as created.
SELECT (SELECT count(*) FROM created), (SELECT count(*) FROM updated WHERE NOT created_here)
"""
