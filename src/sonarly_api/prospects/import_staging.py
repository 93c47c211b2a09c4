"""The bulk importer's staging pipeline: the file's valid rows are COPYed chunk by chunk into
a temporary table, and each chunk's statement (`CHUNK`) creates the chunk's missing persons
and the prospects of the rows whose person it created, on the server, while Python parses
the next chunk. The rows it leaves in `import_rows` are written by `import_apply`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import cast

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from sonarly_api.prospects.identity import id_prefix, sql_id
from sonarly_api.prospects.import_copy import ChunkCopy, ChunkRow
from sonarly_api.prospects.import_rows import StagedRow

# Rows per chunk of the staging pipeline (see `stage`): ~12 MB of parsed rows each. Chunks
# of 20,000 rows made a 1M-row import fastest (23.1-23.5 s; 10,000: 24.4 s; 50,000: 27.5 s).
CHUNK_ROWS = 20_000
STAGING_TABLE = """
CREATE TEMP TABLE {table} (line bigint NOT NULL, provider_id text COLLATE "C" NOT NULL,
    person_id text COLLATE "C", public_identifier text COLLATE "C", linkedin_url text COLLATE "C",
    name text, company_name text, title text{extra})
    ON COMMIT DROP
"""
# Sorts after any text (the largest code point); only the insert order depends on it.
_LAST = chr(0x10FFFF)


@dataclass(frozen=True)
class Staged:
    prospects_created: int  # by the chunks' statements
    persons_lost: bool  # a chunk's person was created by another writer meanwhile


async def stage(conn: AsyncConnection, group: str, rows: AsyncGenerator[StagedRow, None]) -> Staged:
    """COPY the rows chunk by chunk into a temporary table that lives until the end of the
    transaction (no index while loading); each chunk's statement (see `_Chunk`) runs while
    Python parses the next chunk and leaves in `import_rows` the rows it did not import.
    Returns what the chunks did, for `import_apply.apply`."""
    driver = await driver_of(conn)
    extra = (
        ", first_in_chunk boolean NOT NULL, url_shared boolean NOT NULL,"
        " provider_shared boolean NOT NULL, person_number bigint NOT NULL,"
        " prospect_number bigint NOT NULL"
    )
    await conn.execute(text(STAGING_TABLE.format(table="import_chunk", extra=extra)))
    await conn.execute(text(STAGING_TABLE.format(table="import_rows", extra="")))
    chunk_sql = _Chunk(driver, group)
    await conn.execute(text(PROBE_PLANS))
    pending: asyncio.Task[None] | None = None
    try:
        async with contextlib.aclosing(rows):
            numbered = 0  # rows staged so far: each has numbers of its own for new ids
            copy = ChunkCopy(driver)
            async for chunk in _chunks(rows, CHUNK_ROWS):
                staged = prepare(chunk, numbered)
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
    await conn.execute(text(DEFAULT_PLANS))
    # Temporary tables are never analyzed automatically; the plans below depend on it.
    await conn.execute(text("ANALYZE import_rows"))
    # For "not named by a personId in this file": an index probe, whatever the plan.
    await conn.execute(text("CREATE INDEX ON import_rows (person_id) WHERE person_id IS NOT NULL"))
    return Staged(chunk_sql.prospects_created, chunk_sql.persons_lost)


def prepare(chunk: list[StagedRow], first_number: int) -> list[ChunkRow]:
    """The chunk as `CHUNK` reads it, prepared here because Python has a core to spare
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
    staged: list[ChunkRow] = []
    for number, i in enumerate(by_person, first_number):
        row = chunk[i]
        first = firsts[i]
        url_shared = first and row[4] is not None and candidate_urls[row[4]] > 1
        extra = (first, url_shared, providers[row[1]] > 1, number, prospect_numbers[i])
        staged.append(row + extra)
    return staged


async def driver_of(conn: AsyncConnection) -> asyncpg.Connection:
    raw = await conn.get_raw_connection()
    driver = cast(asyncpg.Connection, raw.driver_connection)
    # COPY on the driver bypasses SQLAlchemy: it must run inside the transaction SQLAlchemy
    # began (the statements of `importer` started it; not so on an autocommit engine).
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
    have a prospect yet. Its other rows go to `import_rows`, for `import_apply.apply`.

    It runs on the server while Python parses the next chunk, so the two cores work at once,
    and most of a file of new prospects is written by then."""

    def __init__(self, driver: asyncpg.Connection, group: str) -> None:
        self._driver = driver
        self._group = group
        self._sql = CHUNK.format(
            person_id=sql_id(id_prefix(), "person_number"),
            prospect_id=sql_id(id_prefix(), "prospect_number"),
        )
        self.prospects_created = 0
        # Persons it meant to create that another writer created first (see `CHUNK`).
        self.persons_lost = False

    async def run(self) -> None:
        created, lost = await self._driver.fetchrow(self._sql, self._group)
        self.prospects_created += created
        self.persons_lost = self.persons_lost or lost > 0


# While staging, one chunk's statements read persons through its indexes: a chunk is small
# against persons, whose statistics may also be stale (a sequential scan would read all of
# persons for every chunk). Hash joins stay on: the chunk's own rows are joined to each
# other, and to what was found in persons, by hashing. This holds for the reference check
# of `prospects` (revisions 0002, 0003) run by each chunk's insert too.
PROBE_PLANS = """
SELECT set_config('enable_mergejoin', 'off', true), set_config('enable_seqscan', 'off', true)
"""
DEFAULT_PLANS = """
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
# Persons are created ON CONFLICT DO NOTHING: another writer (of another group) may have
# created one since this statement's snapshot, or be about to commit it (this statement
# then waits for it). Such a row's person is not created here; the row goes to
# `import_rows` like any row whose person exists, and the second column counts these
# creations, so that `import_apply` creates what is still missing.
#
# No sort of the chunk: `first_in_chunk` and `url_shared` come from Python, and the chunk's
# order is the insert order chosen by `prepare`. What persons already have is looked up
# with `= ANY (array)`: one index scan per index for the whole chunk, which moves forward
# through the index (PostgreSQL 17+), instead of a subquery probing it for every row.
CHUNK = """
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
    ON CONFLICT DO NOTHING
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
SELECT (SELECT count(*) FROM new_prospects),
       (SELECT count(*) FROM ranked WHERE public_identifier IS NOT NULL OR first_with_url)
       - (SELECT count(*) FROM new_persons)
"""
