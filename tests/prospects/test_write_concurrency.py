"""Writers of different account groups at once, against a real PostgreSQL: a job's pages
(`write_rows`) beside a bulk import, sharing persons. Each waits for the other only for a
person both create, both succeed, and each identity has one person."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sonarly_api.ids import new_id
from sonarly_api.prospects.import_rows import StagedRow
from sonarly_api.prospects.importer import ImportSummary, import_prospects
from sonarly_api.prospects.writer import WriteCounts, write_rows

# Only a guard against a test hanging for ever: no timing is asserted.
_PATIENCE_SECONDS = 60


async def make_group(engine: AsyncEngine) -> str:
    group = new_id()
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO account_groups (id, name) VALUES (:id, 'concurrency test')"),
            {"id": group},
        )
    return group


def row(provider: str, public_identifier: str | None, url: str | None = None) -> StagedRow:
    return (1, provider, None, public_identifier, url, None, None, None)


def jsonl(path: Path, *rows: dict[str, Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


async def waiting(engine: AsyncEngine, count: int) -> None:
    """Until `count` sessions of this database wait for a lock."""
    async with engine.connect() as conn:
        for _ in range(_PATIENCE_SECONDS * 20):
            found = await conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
            if found.scalar_one() >= count:
                return
            await conn.rollback()  # a fresh snapshot of the statistics next time
            await asyncio.sleep(0.05)
    raise AssertionError(f"expected {count} session(s) waiting for a lock")


async def persons_with(engine: AsyncEngine, column: str, value: str) -> list[tuple[Any, ...]]:
    assert column in ("public_identifier", "linkedin_url")
    async with engine.connect() as conn:
        result = await conn.execute(
            text(f"SELECT id, public_identifier, linkedin_url FROM persons WHERE {column} = :v"),
            {"v": value},
        )
        return [tuple(r) for r in result.all()]


async def person_of(engine: AsyncEngine, group: str, provider: str) -> str:
    async with engine.connect() as conn:
        found = await conn.execute(
            text(
                "SELECT person_id FROM prospects WHERE account_group_id = :g AND provider_id = :p"
            ),
            {"g": group, "p": provider},
        )
        return str(found.scalar_one())


async def begin(engine: AsyncEngine) -> AsyncConnection:
    conn = await engine.connect()
    await conn.begin()
    return conn


async def test_an_import_waits_for_a_person_a_page_creates_then_uses_it(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """The page creates X and the URL U (not committed yet); the import of another group,
    which names X, and a person with U, waits for the page's commit, then uses the page's
    persons (with U taken, its new person for Y gets no URL)."""
    uid = secrets.token_hex(4)
    pages, imports = await make_group(engine), await make_group(engine)
    x, y = f"x-{uid}", f"y-{uid}"
    u = f"https://www.linkedin.com/in/{y}"  # Y's profile: the import names both
    page = await begin(engine)
    try:
        counts = await write_rows(page, pages, [row("a1", x), row("a2", None, u)])
        assert counts == WriteCounts(2, 0, 0)
        path = jsonl(
            tmp_path / "b.jsonl",
            {"providerId": "b1", "publicIdentifier": x},
            {"providerId": "b2", "publicIdentifier": y, "linkedinUrl": u},
            {"providerId": "b3", "linkedinUrl": u},
        )
        task = asyncio.create_task(import_prospects(engine, imports, path))
        await waiting(engine, 1)
        assert not task.done()
        await page.commit()
    finally:
        await page.close()
    summary = await asyncio.wait_for(task, _PATIENCE_SECONDS)

    assert (summary.created, summary.updated, summary.rejected) == (3, 0, 0)
    assert len(await persons_with(engine, "public_identifier", x)) == 1
    assert await person_of(engine, imports, "b1") == await person_of(engine, pages, "a1")
    ((_, _, y_url),) = await persons_with(engine, "public_identifier", y)
    assert y_url is None
    assert await person_of(engine, imports, "b3") == await person_of(engine, pages, "a2")


async def test_a_page_waits_for_a_person_an_import_creates_then_uses_it(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """The import has created Z with the URL U and is held (a row lock on a person it
    refers to) before it commits; a page of another group naming Z, and X with U, waits for
    the import's commit, then uses its person and creates X without the URL."""
    uid = secrets.token_hex(4)
    pages, imports = await make_group(engine), await make_group(engine)
    x, z, held = f"x-{uid}", f"z-{uid}", f"held-{uid}"
    u = f"https://www.linkedin.com/in/{z}"  # Z's profile: the import names both
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO persons (id, public_identifier) VALUES (:id, :pi)"),
            {"id": new_id(), "pi": held},
        )
    holder = await begin(engine)
    page: AsyncConnection | None = None
    try:
        await holder.execute(
            text("SELECT 1 FROM persons WHERE public_identifier = :pi FOR UPDATE"), {"pi": held}
        )
        path = jsonl(
            tmp_path / "b.jsonl",
            {"providerId": "b1", "publicIdentifier": z, "linkedinUrl": u},
            {"providerId": "b2", "publicIdentifier": held},
        )
        importing = asyncio.create_task(import_prospects(engine, imports, path))
        await waiting(engine, 1)  # the import, at its reference check of `held`
        page = await begin(engine)
        writing = asyncio.create_task(write_rows(page, pages, [row("a1", z), row("a2", x, u)]))
        await waiting(engine, 2)  # and the page, on the import's person
        assert not importing.done()
        assert not writing.done()
        await holder.rollback()
        summary: ImportSummary = await asyncio.wait_for(importing, _PATIENCE_SECONDS)
        counts = await asyncio.wait_for(writing, _PATIENCE_SECONDS)
        await page.commit()
    finally:
        await holder.close()
        if page is not None:
            await page.close()

    assert (summary.created, counts) == (2, WriteCounts(2, 0, 0))
    assert len(await persons_with(engine, "public_identifier", z)) == 1
    assert await person_of(engine, pages, "a1") == await person_of(engine, imports, "b1")
    assert await persons_with(engine, "linkedin_url", u) == [
        (await person_of(engine, imports, "b1"), z, u)
    ]
    ((_, _, x_url),) = await persons_with(engine, "public_identifier", x)
    assert x_url is None


async def test_writers_of_other_groups_do_not_wait_for_each_other(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """No global lock: with a page of group A open (not committed), an import of group B
    finishes; an import of group A waits for the page's commit (one writer per group)."""
    uid = secrets.token_hex(4)
    one, two = await make_group(engine), await make_group(engine)
    page = await begin(engine)
    try:
        await write_rows(page, one, [row("a1", f"a-{uid}")])
        other = jsonl(tmp_path / "b.jsonl", {"providerId": "b1", "publicIdentifier": f"b-{uid}"})
        summary = await asyncio.wait_for(import_prospects(engine, two, other), _PATIENCE_SECONDS)
        assert summary.created == 1

        same = jsonl(tmp_path / "a.jsonl", {"providerId": "a1", "publicIdentifier": f"a-{uid}"})
        task = asyncio.create_task(import_prospects(engine, one, same))
        await waiting(engine, 1)
        assert not task.done()
        await page.commit()
    finally:
        await page.close()
    summary = await asyncio.wait_for(task, _PATIENCE_SECONDS)
    assert (summary.created, summary.unchanged) == (0, 1)  # it saw the page's prospect
