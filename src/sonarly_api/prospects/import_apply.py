"""The bulk importer's last statements: the prospects of the rows the staging chunks left in
`import_rows` (see `import_staging`), set-based, in a handful of statements."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from sonarly_api.prospects.identity import id_prefix, sql_id


async def apply(conn: AsyncConnection, group: str, persons_lost: bool) -> tuple[int, int]:
    """For the rows the chunks left in `import_rows`: create the missing persons, then
    insert/update prospects. Returns (created, updated). `persons_lost`: a chunk could
    not create some persons (see `import_staging.CHUNK`).

    Rows are inserted in index order (and their new ids numbered in that order) so that
    each B-tree is filled left to right instead of at random: about twice as fast.
    Sorts use COLLATE "C" (byte order): equality is the same for these deterministic
    collations, and it is several times cheaper than a locale's order, which only matters
    here as a close approximation of the indexes' order."""
    await conn.execute(text(PERSONS_BY_ID))
    if persons_lost:
        await conn.execute(text(LOST_PERSONS.format(new_id=sql_id(id_prefix(), "line"))))
    await conn.execute(text(ANONYMOUS.format(new_id=sql_id(id_prefix(), "line"))), {"group": group})
    await conn.execute(text("ANALYZE import_anonymous"))
    await conn.execute(
        text("INSERT INTO persons (id) SELECT person_id FROM import_anonymous WHERE new_person")
    )
    counts = await conn.execute(
        text(UPSERT.format(new_id=sql_id(id_prefix(), "n"))), {"group": group}
    )
    created, updated = counts.one()
    return int(created), int(updated)


# A person named by personId that does not exist yet is created without identifiers.
PERSONS_BY_ID = """
INSERT INTO persons (id)
SELECT person_id FROM import_rows r
WHERE person_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM persons p WHERE p.id = r.person_id)
GROUP BY person_id
ORDER BY person_id COLLATE "C"
ON CONFLICT (id) DO NOTHING
"""

# Only when a chunk lost the race for a person to another writer (see
# `import_staging.CHUNK`): the persons that its rows still lack. A public identifier's person
# without a URL (the other writer's person has it, or has this public identifier and is
# then found instead), a URL-only row's person with its URL.
LOST_PERSONS = """
INSERT INTO persons (id, public_identifier, linkedin_url)
SELECT {new_id}, public_identifier, linkedin_url
FROM (
    SELECT min(line) AS line, public_identifier, NULL AS linkedin_url
    FROM import_rows r
    WHERE person_id IS NULL AND public_identifier IS NOT NULL
      AND NOT EXISTS (SELECT FROM persons p WHERE p.public_identifier = r.public_identifier)
    GROUP BY public_identifier
    UNION ALL
    SELECT min(line), NULL, linkedin_url
    FROM import_rows r
    WHERE person_id IS NULL AND public_identifier IS NULL AND linkedin_url IS NOT NULL
      AND NOT EXISTS (SELECT FROM persons p WHERE p.linkedin_url = r.linkedin_url)
    GROUP BY linkedin_url
) missing
ON CONFLICT DO NOTHING
"""

# The persons of anonymous rows: the k-th anonymous row with provider id P takes the person
# of the group's k-th reusable prospect with provider id P, or a new person (`new_person`).
# Persons named by a personId in this file are not reusable: that row owns them. (Paired
# by grouping rather than by a join between CTEs: the planner cannot see their sizes.)
ANONYMOUS = """
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
UPSERT = """
WITH resolved AS (
    -- The rows the chunks did not import (see `import_staging.CHUNK`). One branch per
    -- kind of row, so that each join reads only the rows that need it. LEFT joins: a
    -- person that is somehow missing makes the insert fail (NOT NULL), loudly.
    -- `new_person`: an anonymous row's person created by `ANONYMOUS`, so it has no
    -- prospect yet. (A person a chunk created may have a prospect: that chunk's.)
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
