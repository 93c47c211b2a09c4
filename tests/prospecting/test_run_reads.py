"""The reads a job's pages repeat: they touch the prospects they are about, not the whole group
or the whole job (as plain joins did when the planner believed the group small, making a job's
pages slower and slower as it filled the group). Counted with PostgreSQL's own per-transaction
table statistics (tuples fetched from `prospects`), so the figures are exact, not timings."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sonarly_api.prospecting import run_repository as runs
from sonarly_api.prospecting.runner import JobRunner
from sonarly_api.providers.sandbox import SandboxProvider
from tests.conftest import Factory
from tests.support import new_job, sandbox_search, search_source, tenant

PROSPECTS = 300


async def _prospects_read(conn: AsyncConnection) -> int:
    """Tuples of `prospects` this transaction has read so far (index fetches and scans)."""
    value = await conn.scalar(
        text(
            "SELECT coalesce(idx_tup_fetch, 0) + coalesce(seq_tup_read, 0)"
            " FROM pg_stat_xact_user_tables WHERE relname = 'prospects'"
        )
    )
    return int(value or 0)


async def _filled_job(engine: AsyncEngine, factory: Factory) -> tuple[str, str]:
    who = await tenant(factory, plan="scale", credits=10_000)
    job = await new_job(
        engine, who.group, search_source(sandbox_search(PROSPECTS, "reads")), max_results=2000
    )
    await JobRunner(engine, SandboxProvider(page_delay_ms=0)).run(job)
    async with engine.connect() as conn:
        # Statistics as a database in use has them (autovacuum analyzes a busy table).
        await conn.execute(text("ANALYZE prospects, persons, prospecting_job_prospects"))
    return who.group, job


async def test_reads_touch_only_their_prospects(engine: AsyncEngine, factory: Factory) -> None:
    group, job = await _filled_job(engine, factory)
    async with engine.begin() as conn:
        ids = (
            await conn.scalars(
                text(
                    "SELECT prospect_id FROM prospecting_job_prospects WHERE job_id = :job"
                    " ORDER BY prospect_id"
                ),
                {"job": job},
            )
        ).all()
        assert len(ids) == PROSPECTS, len(ids)
        wanted = (
            await conn.execute(
                text(
                    "SELECT p.id, p.provider_id, s.public_identifier FROM prospects p"
                    " JOIN persons s ON s.id = p.person_id WHERE p.id = ANY(:ids) ORDER BY p.id"
                ),
                {"ids": list(ids[100:105])},
            )
        ).all()

        before = await _prospects_read(conn)
        found = await runs.prospects_of(
            conn, group, [w.provider_id for w in wanted], [w.public_identifier for w in wanted]
        )
        page_reads = await _prospects_read(conn) - before

        before = await _prospects_read(conn)
        batch = await runs.next_to_enrich(conn, group, job, ids[99], 25)
        batch_reads = await _prospects_read(conn) - before

        first = await runs.next_to_enrich(conn, group, job, None, 25)

    assert sorted(e.prospect_id for e in found) == [w.id for w in wanted]
    assert {(e.provider_id, e.public_identifier) for e in found} == {
        (w.provider_id, w.public_identifier) for w in wanted
    }
    assert page_reads <= len(wanted)  # not the group's 300
    assert [b.prospect_id for b in batch] == list(ids[100:125])
    assert batch_reads <= 25  # not the 200 after the cursor
    assert [b.prospect_id for b in first] == list(ids[:25])
