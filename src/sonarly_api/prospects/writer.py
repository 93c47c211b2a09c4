"""Writing a small batch of prospects (a job's page) on the caller's connection.

The bulk importer (`importer`) stages a file in temporary tables, right for a million rows
and wrong for a page of 25: here each call is two statements over array parameters
(`unnest`), with the importer's identity rules (see `identity`), in the caller's
transaction, which it never commits. It can be called many times in one transaction; each
call applies the rules to its rows as an import of them would, on the database as the
earlier calls left it (a row of a later call finds the persons and prospects of earlier
ones). Callers should run READ COMMITTED, the default: the second statement must see what
other writers committed while this one waited for the group's lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from sonarly_api.prospects.identity import GROUP_LOCK, id_prefix
from sonarly_api.prospects.import_rows import StagedRow

__all__ = ["WriteCounts", "write_rows"]

# A concurrent writer that commits a person this call was about to create makes the
# creation a no-op, and the call looks again; it would take that many such commits, each
# between two of this call's attempts, to give up.
_MAX_PERSON_ATTEMPTS = 10


@dataclass(frozen=True)
class WriteCounts:
    created: int
    updated: int
    unchanged: int  # rows that wrote nothing: identical, or followed by a row that wins

    @property
    def written(self) -> int:
        return self.created + self.updated


async def write_rows(
    conn: AsyncConnection, account_group_id: str, rows: Sequence[StagedRow]
) -> WriteCounts:
    """Create or update the group's prospects of `rows` (validated rows, in order: the last
    row per provider id and person wins). Waits for the group's other writers (a lock held
    until the caller's transaction ends), never for other groups' except on a person both
    create."""
    if not rows:
        return WriteCounts(0, 0, 0)
    columns = list(zip(*rows, strict=True))
    persons = {
        "group": account_group_id,
        "person_ids": list(columns[2]),
        "public_identifiers": list(columns[3]),
        "urls": list(columns[4]),
    }
    for _attempt in range(_MAX_PERSON_ATTEMPTS):
        lost = await conn.execute(text(_PERSONS), {**persons, "prefix": id_prefix()})
        if lost.scalar_one() == 0:
            break
    else:
        raise RuntimeError("persons kept being created concurrently; try again")
    counts = await conn.execute(
        text(_PROSPECTS),
        {
            **persons,
            "provider_ids": list(columns[1]),
            "names": list(columns[5]),
            "company_names": list(columns[6]),
            "titles": list(columns[7]),
            "person_prefix": id_prefix(),
            "prospect_prefix": id_prefix(),
        },
    )
    created, updated = (int(value) for value in counts.one())
    return WriteCounts(created, updated, len(rows) - created - updated)


# The persons the rows need, created as if the rows were processed in order (a public
# identifier's person by its first row, with that row's URL unless a person has it or an
# earlier row created one with it; a URL-only row's person with just that URL). Takes the
# group's lock first: no row is read (so nothing created) before the filter's subquery, run
# once, has it. ON CONFLICT DO NOTHING: a person another writer created meanwhile is used,
# not duplicated. Returns how many creations did not happen (then run it again: it sees
# that writer's persons now).
_PERSONS = f"""
WITH batch AS MATERIALIZED (
    SELECT *
    FROM unnest(CAST(:person_ids AS text[]), CAST(:public_identifiers AS text[]),
                CAST(:urls AS text[])) WITH ORDINALITY
         AS b(person_id, public_identifier, linkedin_url, n)
    WHERE (SELECT true FROM {GROUP_LOCK})
), named AS (
    -- Named by personId and missing: created without identifiers.
    INSERT INTO persons (id)
    SELECT person_id FROM batch WHERE person_id IS NOT NULL
    GROUP BY person_id
    ORDER BY person_id COLLATE "C"
    ON CONFLICT DO NOTHING
), firsts AS (
    -- The rows that may create a person: the first of each public identifier among the
    -- rows without a personId, and of each URL among the rows with only a URL.
    (SELECT DISTINCT ON (public_identifier) n, public_identifier, linkedin_url
     FROM batch WHERE person_id IS NULL AND public_identifier IS NOT NULL
     ORDER BY public_identifier, n)
    UNION ALL
    (SELECT DISTINCT ON (linkedin_url) n, NULL, linkedin_url
     FROM batch WHERE person_id IS NULL AND public_identifier IS NULL AND linkedin_url IS NOT NULL
     ORDER BY linkedin_url, n)
), candidates AS (
    SELECT f.*, EXISTS (SELECT FROM persons p WHERE p.linkedin_url = f.linkedin_url) AS url_taken
    FROM firsts f
    WHERE NOT EXISTS (SELECT FROM persons p WHERE p.public_identifier = f.public_identifier)
), creators AS (
    -- A URL goes to the first candidate with it, if no person has it.
    SELECT n, public_identifier,
           CASE WHEN NOT url_taken AND n = min(n) OVER (PARTITION BY linkedin_url)
                THEN linkedin_url END AS linkedin_url
    FROM candidates
), created AS (
    INSERT INTO persons (id, public_identifier, linkedin_url)
    SELECT :prefix || lpad(to_hex(n), 8, '0'), public_identifier, linkedin_url
    FROM creators
    WHERE public_identifier IS NOT NULL OR linkedin_url IS NOT NULL
    -- The bulk importer's order within a chunk: two writers creating the same persons in
    -- one order wait for each other rather than deadlock.
    ORDER BY coalesce(public_identifier, linkedin_url) COLLATE "C"
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM creators
        WHERE public_identifier IS NOT NULL OR linkedin_url IS NOT NULL)
       - (SELECT count(*) FROM created)
"""  # noqa: S608 (GROUP_LOCK is a constant)

# Every row's person (anonymous rows: paired with the group's reusable prospects, else a
# new person); the last row per (provider id, person) against the existing prospect:
# updated only if a value differs (so updated_at moves only on a change), inserted when
# there is none. New prospect ids are numbered by (provider id, row): the order anonymous
# matching reads them back in. Returns (created, updated).
_PROSPECTS = """
WITH batch AS MATERIALIZED (
    SELECT *
    FROM unnest(CAST(:provider_ids AS text[]), CAST(:person_ids AS text[]),
                CAST(:public_identifiers AS text[]), CAST(:urls AS text[]),
                CAST(:names AS text[]), CAST(:company_names AS text[]),
                CAST(:titles AS text[])) WITH ORDINALITY
         AS b(provider_id, person_id, public_identifier, linkedin_url, name, company_name,
              title, n)
), anonymous AS MATERIALIZED (
    SELECT n, provider_id, row_number() OVER (PARTITION BY provider_id ORDER BY n) AS k
    FROM batch
    WHERE person_id IS NULL AND public_identifier IS NULL AND linkedin_url IS NULL
), reusable AS (
    -- The group's prospects of persons without identifiers, per provider id; not those
    -- of persons a personId of the batch names (that row owns them).
    SELECT a.provider_id, r.person_id, r.k
    FROM (SELECT DISTINCT provider_id FROM anonymous) a
    CROSS JOIN LATERAL (
        SELECT p.person_id, row_number() OVER (ORDER BY p.created_at, p.id) AS k
        FROM prospects p
        JOIN persons s ON s.id = p.person_id
        WHERE p.account_group_id = :group AND p.provider_id = a.provider_id
          AND s.public_identifier IS NULL AND s.linkedin_url IS NULL
          AND NOT EXISTS (SELECT FROM batch x WHERE x.person_id = p.person_id)
    ) r
), paired AS MATERIALIZED (
    SELECT a.n, coalesce(r.person_id, :person_prefix || lpad(to_hex(a.n), 8, '0')) AS person_id,
           r.person_id IS NULL AS new_person
    FROM anonymous a
    LEFT JOIN reusable r ON r.provider_id = a.provider_id AND r.k = a.k
), new_persons AS (
    INSERT INTO persons (id) SELECT person_id FROM paired WHERE new_person ORDER BY n
), resolved AS (
    SELECT b.n, b.provider_id, b.public_identifier, b.linkedin_url, b.name, b.company_name,
           b.title, coalesce(a.new_person, false) AS new_person,
           CASE
               WHEN b.person_id IS NOT NULL THEN b.person_id
               WHEN b.public_identifier IS NOT NULL THEN
                   (SELECT p.id FROM persons p WHERE p.public_identifier = b.public_identifier)
               WHEN b.linkedin_url IS NOT NULL THEN
                   (SELECT p.id FROM persons p WHERE p.linkedin_url = b.linkedin_url)
               ELSE a.person_id
           END AS person_id
    FROM batch b
    LEFT JOIN paired a ON a.n = b.n
), latest AS (
    SELECT DISTINCT ON (provider_id, person_id) *
    FROM resolved
    ORDER BY provider_id, person_id, n DESC
), compared AS MATERIALIZED (
    -- One index probe per row (LATERAL ... LIMIT 1, exact: the triple is unique). As a plain
    -- join, a group the planner believes small (a new one, whose job is filling it) was read
    -- whole at every call.
    SELECT l.*, p.id AS prospect_id,
           (p.public_identifier, p.linkedin_url, p.name, p.company_name, p.title)
           IS DISTINCT FROM
           (l.public_identifier, l.linkedin_url, l.name, l.company_name, l.title) AS changed
    FROM latest l
    LEFT JOIN LATERAL (
        SELECT q.id, q.public_identifier, q.linkedin_url, q.name, q.company_name, q.title
        FROM prospects q
        WHERE NOT l.new_person AND q.account_group_id = :group
          AND q.provider_id = l.provider_id AND q.person_id = l.person_id
        LIMIT 1
    ) AS p ON true
), updated AS (
    -- The ids as an array in the index condition: the same planner error made this a loop over
    -- the group's prospects for every row to update (quadratic in a job's size).
    UPDATE prospects p
    SET public_identifier = c.public_identifier, linkedin_url = c.linkedin_url,
        name = c.name, company_name = c.company_name, title = c.title, updated_at = now()
    FROM compared c
    WHERE c.prospect_id IS NOT NULL AND c.changed
      AND p.account_group_id = :group
      AND p.id = ANY (ARRAY(SELECT prospect_id FROM compared
                            WHERE prospect_id IS NOT NULL AND changed))
      AND p.id = c.prospect_id
    RETURNING 1
), created AS (
    INSERT INTO prospects (account_group_id, id, person_id, provider_id, public_identifier,
                           linkedin_url, name, company_name, title)
    SELECT :group,
           :prospect_prefix
           || lpad(to_hex(row_number() OVER (ORDER BY provider_id COLLATE "C", n)), 8, '0'),
           person_id, provider_id, public_identifier, linkedin_url, name, company_name, title
    FROM compared
    WHERE prospect_id IS NULL
    RETURNING 1
)
SELECT (SELECT count(*) FROM created), (SELECT count(*) FROM updated)
"""
