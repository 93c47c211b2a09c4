"""A job's pages written in the transaction that commits them: the prospects, the job's record
of them, and the charge."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from sonarly_api.credits import service as credits
from sonarly_api.prospecting import run_repository as runs
from sonarly_api.prospects.import_rows import StagedRow
from sonarly_api.prospects.validation import MAX_PROVIDER_ID_LENGTH
from sonarly_api.prospects.writer import write_rows
from sonarly_api.providers.base import Profile


async def write_pages(
    conn: AsyncConnection,
    group: str,
    job_id: str,
    first_page: int,
    profiles: list[Profile],
    per_prospect: int,
) -> runs.Written:
    """The profiles of the pages from `first_page` on, in order, written as one import of
    their rows would write them (the last row of a prospect wins), recorded as the job's, and
    charged once: ledger key `{job}:page:{first_page}`, so a replayed commit is never charged
    twice. Every written (created or updated) prospect costs `per_prospect` credits."""
    valid = [p for p in profiles if 0 < len(p.member_id) <= MAX_PROVIDER_ID_LENGTH]
    pairs = ([p.member_id for p in valid], [p.public_identifier for p in valid])
    # Company and title come from enrichment, later: a page keeps what the prospect has,
    # so re-importing an enriched prospect leaves it unchanged (and free).
    known = {
        (e.provider_id, e.public_identifier): e
        for e in await runs.prospects_of(conn, group, *pairs)
    }
    rows: list[StagedRow] = []
    for line, p in enumerate(valid, start=1):
        before = known.get((p.member_id, p.public_identifier))
        company = before.company_name if before is not None else None
        title = before.title if before is not None else None
        rows.append(
            (line, p.member_id, None, p.public_identifier, p.profile_url, p.name, company, title)
        )
    counts = await write_rows(conn, group, rows)
    written = await runs.prospects_of(conn, group, *pairs)
    await runs.record_prospects(conn, group, job_id, written)
    amount = counts.written * per_prospect
    charged = await credits.charge(conn, group, job_id, f"{job_id}:page:{first_page}", amount)
    return runs.Written(counts.created, counts.updated, counts.unchanged, amount if charged else 0)
