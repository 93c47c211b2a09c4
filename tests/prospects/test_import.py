"""The prospect importer (`sonarly_api.prospects.importer`), against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import json
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from sonarly_api.db import async_url
from sonarly_api.ids import new_id
from sonarly_api.migrations import upgrade
from sonarly_api.prospects import import_apply, import_copy, import_staging, importer
from sonarly_api.prospects.import_rows import StagedRow
from sonarly_api.prospects.importer import ImportFailed, RowError, import_prospects

HEADER = "providerId,personId,publicIdentifier,linkedinUrl,name,companyName,title"


# --- database -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def import_engine() -> AsyncIterator[AsyncEngine]:
    """A fresh, migrated database for this module on the server of TEST_DATABASE_URL; dropped
    at the end."""
    server = make_url(
        os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    ).set(drivername="postgresql")
    name = f"import_test_{os.getpid()}_{secrets.token_hex(3)}"
    admin_dsn = server.render_as_string(hide_password=False)
    url = server.set(database=name).render_as_string(hide_password=False)
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        await asyncio.to_thread(upgrade, url)
        engine = create_async_engine(async_url(url))
        yield engine
        await engine.dispose()
    finally:
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def make_group(engine: AsyncEngine) -> str:
    group = new_id()
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO account_groups (id, name) VALUES (:id, 'import test')"),
            {"id": group},
        )
    return group


async def prospects(engine: AsyncEngine, group: str) -> list[dict[str, Any]]:
    """The group's prospects with their persons' identifiers, in lookup order."""
    async with engine.connect() as conn:
        result = await conn.execute(
            text(
                "SELECT p.id, p.person_id, p.provider_id, p.public_identifier, p.linkedin_url,"
                " p.name, p.company_name, p.title, p.created_at, p.updated_at,"
                " s.public_identifier AS person_public_identifier,"
                " s.linkedin_url AS person_linkedin_url"
                " FROM prospects p JOIN persons s ON s.id = p.person_id"
                " WHERE p.account_group_id = :group ORDER BY p.created_at, p.id"
            ),
            {"group": group},
        )
        return [dict(row) for row in result.mappings()]


async def count_persons(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM persons"))).scalar_one())


async def add_person(
    engine: AsyncEngine, public_identifier: str | None = None, linkedin_url: str | None = None
) -> str:
    person = new_id()
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO persons (id, public_identifier, linkedin_url) VALUES (:id, :pi, :u)"),
            {"id": person, "pi": public_identifier, "u": linkedin_url},
        )
    return person


# --- files ----------------------------------------------------------------------------------


def write(path: Path, content: str) -> Path:
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8", newline="") as file:
            file.write(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


def csv_file(path: Path, *lines: str) -> Path:
    return write(path, "\n".join([HEADER, *lines]) + "\n")


def jsonl(*objects: dict[str, Any]) -> str:
    return "".join(json.dumps(obj) + "\n" for obj in objects)


@pytest.fixture
def uid() -> str:
    """Persons are shared by all groups: identifiers unique to one test."""
    return secrets.token_hex(4)


@pytest.fixture(params=[None, 1, 2], ids=["one-chunk", "chunks-of-1-as-csv", "chunks-of-2"])
def chunk_rows(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Staged in several chunks, each creating its persons before the next is staged, a
    file must give the same persons as in one. Chunks of 1 also reach COPY as CSV encoded in
    advance, which the importer otherwise does only while it waits for the server."""
    if request.param is not None:
        monkeypatch.setattr(import_staging, "CHUNK_ROWS", request.param)
    if request.param == 1:
        force_encoding(monkeypatch, ahead=True)


def force_encoding(monkeypatch: pytest.MonkeyPatch, *, ahead: bool) -> None:
    monkeypatch.setattr(import_copy, "encode_ahead", lambda spare, cost: ahead)


# --- formats --------------------------------------------------------------------------------


def sample_rows(uid: str) -> list[dict[str, Any]]:
    return [
        {"providerId": f"p1-{uid}", "publicIdentifier": f"alice-{uid}", "name": "Alice"},
        {
            "providerId": f"p2-{uid}",
            "linkedinUrl": f"https://www.linkedin.com/in/bob-{uid}",
            "title": "CTO",
        },
        {"providerId": f"p3-{uid}", "name": "Nobody", "companyName": "Acme"},
    ]


def as_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HEADER.split(","), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("rows.csv", "csv"),
        ("rows.csv.gz", "csv"),
        ("rows.jsonl", "jsonl"),
        ("rows.ndjson.gz", "jsonl"),
        ("rows.txt", "jsonl"),  # sniffed: '{' first
        ("rows.data", "csv"),  # sniffed
        ("rows.gz", "csv"),  # gzip, sniffed
        ("ROWS.JSONL", "jsonl"),
    ],
)
async def test_formats_give_the_same_result(
    import_engine: AsyncEngine, tmp_path: Path, uid: str, name: str, kind: str
) -> None:
    group = await make_group(import_engine)
    rows = sample_rows(uid)
    path = write(tmp_path / name, as_csv(rows) if kind == "csv" else jsonl(*rows))

    summary = await import_prospects(import_engine, group, path)

    assert (summary.rows_read, summary.created, summary.updated, summary.unchanged) == (3, 3, 0, 0)
    assert (summary.rejected, summary.errors) == (0, [])
    got = {(r["provider_id"], r["public_identifier"], r["linkedin_url"], r["name"], r["title"])
           for r in await prospects(import_engine, group)}  # fmt: skip
    assert got == {
        (f"p1-{uid}", f"alice-{uid}", None, "Alice", None),
        (f"p2-{uid}", None, f"https://www.linkedin.com/in/bob-{uid}", None, "CTO"),
        (f"p3-{uid}", None, None, "Nobody", None),
    }


async def test_values_are_trimmed_and_empty_means_null(
    import_engine: AsyncEngine, tmp_path: Path, uid: str
) -> None:
    group = await make_group(import_engine)
    path = write(
        tmp_path / "rows.csv",
        # BOM, CRLF, column order of the file's choosing, missing optional columns.
        f"\ufefftitle , providerId\r\n  , p-{uid}  \r\n",
    )
    assert (await import_prospects(import_engine, group, path)).created == 1
    (row,) = await prospects(import_engine, group)
    assert (row["provider_id"], row["title"]) == (f"p-{uid}", None)

    group = await make_group(import_engine)
    path = write(
        tmp_path / "rows.jsonl",
        jsonl({"providerId": f" q-{uid} ", "name": None, "title": "  Boss "}) + "\n  \n",
    )
    assert (await import_prospects(import_engine, group, path)).created == 1
    (row,) = await prospects(import_engine, group)
    assert (row["provider_id"], row["name"], row["title"]) == (f"q-{uid}", None, "Boss")


@pytest.mark.parametrize("ahead", [False, True], ids=["records", "csv"])
async def test_values_reach_the_tables_exactly(
    import_engine: AsyncEngine,
    tmp_path: Path,
    uid: str,
    monkeypatch: pytest.MonkeyPatch,
    ahead: bool,
) -> None:
    """Whatever a value holds reaches the tables as it was read, also when the rows travel
    to the server as CSV, where quotes, separators, line breaks and backslashes mean
    something."""
    force_encoding(monkeypatch, ahead=ahead)
    group = await make_group(import_engine)
    tricky = {
        "name": 'Ann "The Closer", Jr.',
        "companyName": "Line one\nline two\r\nthree",
        "title": "back\\slash \\N \\. tab\there",
    }
    foreign = {"name": "Zoë Ünal 李 🚀", "companyName": "NULL", "title": "\\."}
    path = write(
        tmp_path / "rows.jsonl",
        jsonl(
            {"providerId": f"a-{uid}", "publicIdentifier": f"ann-{uid}", **tricky},
            {
                "providerId": f"b-{uid}",
                "linkedinUrl": f'https://www.linkedin.com/in/b,"{uid}',
                **foreign,
            },
        ),
    )
    assert (await import_prospects(import_engine, group, path)).created == 2
    got = {r["provider_id"]: r for r in await prospects(import_engine, group)}
    first, second = got[f"a-{uid}"], got[f"b-{uid}"]
    assert (first["name"], first["company_name"], first["title"]) == (
        tricky["name"],
        tricky["companyName"],
        tricky["title"],
    )
    assert (second["name"], second["company_name"], second["title"]) == (
        foreign["name"],
        foreign["companyName"],
        foreign["title"],
    )
    # Normalised: the characters a URL path cannot hold as they are, percent-encoded.
    assert second["person_linkedin_url"] == f"https://www.linkedin.com/in/b%2C%22{uid}"


async def test_a_header_without_rows_imports_nothing(
    import_engine: AsyncEngine, tmp_path: Path
) -> None:
    """(An empty file is an error: tests/prospects/test_import_files.py.)"""
    group = await make_group(import_engine)
    summary = await import_prospects(import_engine, group, write(tmp_path / "b.csv", HEADER + "\n"))
    assert (summary.rows_read, summary.created) == (0, 0)


# --- idempotence and updates ----------------------------------------------------------------


async def test_reimport_changes_nothing(
    import_engine: AsyncEngine, tmp_path: Path, uid: str
) -> None:
    group = await make_group(import_engine)
    path = csv_file(
        tmp_path / "rows.csv",
        f"p1-{uid},,alice-{uid},https://www.linkedin.com/in/alice-{uid},Alice,Acme,CEO",
        f"p2-{uid},,,https://www.linkedin.com/in/bob-{uid},Bob,,",
        f"p3-{uid},{new_id()},,,Carol,,",
        f"p4-{uid},,,,Anon 1,,",
        f"p4-{uid},,,,Anon 2,,",
        f"p5-{uid},,,,Anon 3,,",
    )
    first = await import_prospects(import_engine, group, path)
    assert (first.created, first.updated, first.unchanged) == (6, 0, 0)
    before, persons_before = (
        await prospects(import_engine, group),
        await count_persons(import_engine),
    )

    again = await import_prospects(import_engine, group, path)

    assert (again.rows_read, again.created, again.updated, again.unchanged) == (6, 0, 0, 6)
    assert await prospects(import_engine, group) == before  # same ids, values, updated_at
    assert await count_persons(import_engine) == persons_before


async def test_a_changed_field_updates_only_that_prospect(
    import_engine: AsyncEngine, tmp_path: Path, uid: str
) -> None:
    group = await make_group(import_engine)
    lines = [
        f"p1-{uid},,alice-{uid},,Alice,Acme,CEO",
        f"p2-{uid},,bob-{uid},,Bob,Acme,CTO",
        f"p3-{uid},,,,Anon,,",
    ]
    await import_prospects(import_engine, group, csv_file(tmp_path / "a.csv", *lines))
    before = {r["provider_id"]: r for r in await prospects(import_engine, group)}

    lines[1] = f"p2-{uid},,bob-{uid},,Bob,,VP"  # company emptied (-> null), title changed
    lines[2] = f"p3-{uid},,,,Anon renamed,,"
    summary = await import_prospects(import_engine, group, csv_file(tmp_path / "b.csv", *lines))

    assert (summary.created, summary.updated, summary.unchanged) == (0, 2, 1)
    after = {r["provider_id"]: r for r in await prospects(import_engine, group)}
    assert after[f"p1-{uid}"] == before[f"p1-{uid}"]
    bob = after[f"p2-{uid}"]
    assert (bob["company_name"], bob["title"]) == (None, "VP")
    assert bob["id"] == before[f"p2-{uid}"]["id"]
    assert bob["created_at"] == before[f"p2-{uid}"]["created_at"]
    assert bob["updated_at"] > before[f"p2-{uid}"]["updated_at"]
    anon = after[f"p3-{uid}"]
    assert (anon["id"], anon["name"]) == (before[f"p3-{uid}"]["id"], "Anon renamed")


# --- person identity ------------------------------------------------------------------------


async def test_person_id_is_used_and_created_if_missing(
    import_engine: AsyncEngine, tmp_path: Path, uid: str
) -> None:
    group = await make_group(import_engine)
    existing = await add_person(import_engine, f"known-{uid}")
    missing = new_id()
    path = csv_file(
        tmp_path / "rows.csv",
        f"p1-{uid},{existing.upper()},other-{uid},https://www.linkedin.com/in/other-{uid},,,",
        f"p2-{uid},{missing},,,,,",
    )
    await import_prospects(import_engine, group, path)

    rows = {r["provider_id"]: r for r in await prospects(import_engine, group)}
    first = rows[f"p1-{uid}"]
    assert first["person_id"] == existing
    # The person keeps its identifiers; the prospect carries the row's.
    assert first["person_public_identifier"] == f"known-{uid}"
    assert (first["public_identifier"], first["linkedin_url"]) == (
        f"other-{uid}",
        f"https://www.linkedin.com/in/other-{uid}",
    )
    second = rows[f"p2-{uid}"]
    assert second["person_id"] == missing
    assert (second["person_public_identifier"], second["person_linkedin_url"]) == (None, None)


async def test_public_identifier_finds_or_creates_the_person(
    import_engine: AsyncEngine, tmp_path: Path, uid: str, chunk_rows: None
) -> None:
    group = await make_group(import_engine)
    known = await add_person(import_engine, f"known-{uid}")
    taken_url = f"https://www.linkedin.com/in/third-{uid}"
    url_owner = await add_person(import_engine, None, taken_url)
    path = csv_file(
        tmp_path / "rows.csv",
        f"p1-{uid},,known-{uid},,,,",
        f"p2-{uid},,new-{uid},https://www.linkedin.com/in/new-{uid},,,",
        f"p3-{uid},,third-{uid},{taken_url},,,",
    )
    persons_before = await count_persons(import_engine)
    await import_prospects(import_engine, group, path)

    assert await count_persons(import_engine) == persons_before + 2  # new-, third-

    rows = {r["provider_id"]: r for r in await prospects(import_engine, group)}
    assert rows[f"p1-{uid}"]["person_id"] == known
    created = rows[f"p2-{uid}"]
    assert (created["person_public_identifier"], created["person_linkedin_url"]) == (
        f"new-{uid}",
        f"https://www.linkedin.com/in/new-{uid}",
    )
    # Its URL belongs to another person: the new person gets none, the prospect keeps it.
    third = rows[f"p3-{uid}"]
    assert third["person_id"] != url_owner
    assert (third["person_public_identifier"], third["person_linkedin_url"]) == (
        f"third-{uid}",
        None,
    )
    assert third["linkedin_url"] == taken_url


async def test_linkedin_url_finds_or_creates_the_person(
    import_engine: AsyncEngine, tmp_path: Path, uid: str, chunk_rows: None
) -> None:
    group = await make_group(import_engine)
    known = await add_person(
        import_engine, f"someone-{uid}", f"https://www.linkedin.com/in/known-{uid}"
    )
    path = csv_file(
        tmp_path / "rows.csv",
        f"p1-{uid},,,https://www.linkedin.com/in/known-{uid},,,",
        f"p2-{uid},,,https://www.linkedin.com/in/new-{uid},,,",
        f"p3-{uid},,,https://www.linkedin.com/in/new-{uid},,,",  # the same (new) person
    )
    persons_before = await count_persons(import_engine)
    await import_prospects(import_engine, group, path)

    # One person created, for the new URL: none for the row whose URL a person has.
    assert await count_persons(import_engine) == persons_before + 1

    rows = {r["provider_id"]: r for r in await prospects(import_engine, group)}
    assert rows[f"p1-{uid}"]["person_id"] == known
    new = rows[f"p2-{uid}"]
    assert (new["person_public_identifier"], new["person_linkedin_url"]) == (
        None,
        f"https://www.linkedin.com/in/new-{uid}",
    )
    assert rows[f"p3-{uid}"]["person_id"] == new["person_id"]


async def test_new_persons_follow_file_order_for_a_shared_url(
    import_engine: AsyncEngine, tmp_path: Path, uid: str, chunk_rows: None
) -> None:
    """As if rows were processed one by one: whoever creates a person with a URL first owns
    it, and a URL-only row then finds that person."""
    group = await make_group(import_engine)
    # A row's URL must be the profile of its publicIdentifier, but identifiers differing in
    # case only are distinct persons that share one URL.
    url, url2 = f"https://www.linkedin.com/in/shared-{uid}", f"https://www.linkedin.com/in/x-{uid}"
    path = csv_file(
        tmp_path / "rows.csv",
        f"p1-{uid},,shared-{uid},{url},,,",  # creates shared(url)
        f"p2-{uid},,SHARED-{uid},{url},,,",  # url taken by shared: SHARED()
        f"p3-{uid},,,{url},,,",  # -> shared
        f"p4-{uid},,,{url2},,,",  # creates (url2)
        f"p5-{uid},,X-{uid},{url2},,,",  # url2 taken: X()
    )
    await import_prospects(import_engine, group, path)

    rows = {r["provider_id"]: r for r in await prospects(import_engine, group)}
    ident = {k: (r["person_public_identifier"], r["person_linkedin_url"]) for k, r in rows.items()}
    assert ident[f"p1-{uid}"] == (f"shared-{uid}", url)
    assert ident[f"p2-{uid}"] == (f"SHARED-{uid}", None)
    assert rows[f"p3-{uid}"]["person_id"] == rows[f"p1-{uid}"]["person_id"]
    assert ident[f"p4-{uid}"] == (None, url2)
    assert ident[f"p5-{uid}"] == (f"X-{uid}", None)


async def test_the_first_row_of_a_public_identifier_creates_its_person(
    import_engine: AsyncEngine, tmp_path: Path, uid: str, chunk_rows: None
) -> None:
    """Its URL is the first row's (here none); later rows (in later chunks too) find that
    person, and do not give it theirs."""
    group = await make_group(import_engine)
    url = f"https://www.linkedin.com/in/dup-{uid}"
    path = csv_file(
        tmp_path / "rows.csv",
        f"p1-{uid},,dup-{uid},,,,",
        f"p2-{uid},,other-{uid},,,,",
        f"p3-{uid},,dup-{uid},{url},,,",
        f"p4-{uid},,,{url},,,",  # a URL no person has: a person of its own
    )
    await import_prospects(import_engine, group, path)

    rows = {r["provider_id"]: r for r in await prospects(import_engine, group)}
    first, third, fourth = rows[f"p1-{uid}"], rows[f"p3-{uid}"], rows[f"p4-{uid}"]
    assert third["person_id"] == first["person_id"]
    assert first["person_linkedin_url"] is None
    assert third["linkedin_url"] == url  # the prospect keeps the row's
    assert fourth["person_id"] != first["person_id"]
    assert (fourth["person_public_identifier"], fourth["person_linkedin_url"]) == (None, url)


async def test_persons_are_shared_across_groups(
    import_engine: AsyncEngine, tmp_path: Path, uid: str
) -> None:
    one, two = await make_group(import_engine), await make_group(import_engine)
    path = csv_file(tmp_path / "rows.csv", f"p1-{uid},,alice-{uid},,,,")
    await import_prospects(import_engine, one, path)
    await import_prospects(import_engine, two, path)
    (a,), (b,) = await prospects(import_engine, one), await prospects(import_engine, two)
    assert a["person_id"] == b["person_id"]
    assert a["id"] != b["id"]


async def test_anonymous_rows_match_in_order_and_stay_idempotent(
    import_engine: AsyncEngine, tmp_path: Path, uid: str, chunk_rows: None
) -> None:
    group = await make_group(import_engine)
    # A prospect of an identifier-less person that existed before any import: matched first.
    older = await add_person(import_engine)
    async with import_engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO prospects (account_group_id, id, person_id, provider_id, name)"
                " VALUES (:g, :id, :person, :provider, 'Old')"
            ),
            {"g": group, "id": new_id(), "person": older, "provider": f"P-{uid}"},
        )
    lines = [f"P-{uid},,,,A1,,", f"Q-{uid},,,,B1,,", f"P-{uid},,,,A2,,", f"P-{uid},,,,A3,,"]
    first = await import_prospects(import_engine, group, csv_file(tmp_path / "a.csv", *lines))
    assert (first.created, first.updated, first.unchanged) == (3, 1, 0)
    rows = await prospects(import_engine, group)
    by_name = {r["name"]: r for r in rows}
    assert by_name["A1"]["person_id"] == older  # the k-th row takes the k-th prospect
    assert len({r["person_id"] for r in rows}) == 4
    persons = await count_persons(import_engine)

    again = await import_prospects(import_engine, group, csv_file(tmp_path / "b.csv", *lines))
    assert (again.created, again.updated, again.unchanged) == (0, 0, 4)
    assert await prospects(import_engine, group) == rows
    assert await count_persons(import_engine) == persons

    lines[3] = f"P-{uid},,,,A3 renamed,,"
    third = await import_prospects(import_engine, group, csv_file(tmp_path / "c.csv", *lines))
    assert (third.created, third.updated, third.unchanged) == (0, 1, 3)
    renamed = {r["name"]: r for r in await prospects(import_engine, group)}["A3 renamed"]
    assert renamed["id"] == by_name["A3"]["id"]

    # One anonymous row more than before: a new prospect, the others untouched.
    fourth = await import_prospects(
        import_engine, group, csv_file(tmp_path / "d.csv", *lines, f"P-{uid},,,,A4,,")
    )
    assert (fourth.created, fourth.updated, fourth.unchanged) == (1, 0, 4)


async def test_anonymous_rows_do_not_take_persons_named_in_the_file(
    import_engine: AsyncEngine, tmp_path: Path, uid: str
) -> None:
    group = await make_group(import_engine)
    lines = [f"P-{uid},{new_id()},,,Named,,", f"P-{uid},,,,Anonymous,,"]
    await import_prospects(import_engine, group, csv_file(tmp_path / "a.csv", *lines))
    before = await prospects(import_engine, group)
    again = await import_prospects(import_engine, group, csv_file(tmp_path / "a.csv", *lines))
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)
    assert await prospects(import_engine, group) == before


async def test_one_provider_id_for_two_persons_gives_two_prospects(
    import_engine: AsyncEngine, tmp_path: Path, uid: str
) -> None:
    group = await make_group(import_engine)
    path = csv_file(
        tmp_path / "rows.csv", f"shared-{uid},,alice-{uid},,A,,", f"shared-{uid},,bob-{uid},,B,,"
    )
    summary = await import_prospects(import_engine, group, path)
    assert summary.created == 2
    rows = await prospects(import_engine, group)
    assert {r["name"] for r in rows} == {"A", "B"}
    assert len({r["person_id"] for r in rows}) == 2


async def test_the_last_row_for_a_person_and_provider_id_wins(
    import_engine: AsyncEngine, tmp_path: Path, uid: str, chunk_rows: None
) -> None:
    """Earlier rows for the same (person, provider id) are counted as unchanged."""
    group = await make_group(import_engine)
    person = await add_person(import_engine, f"alice-{uid}")
    path = csv_file(
        tmp_path / "rows.csv",
        f"p-{uid},,alice-{uid},,First,,",
        f"p-{uid},{person},,,Second,,",  # the same person, named by id
        f"p-{uid},,alice-{uid},,Third,,",
    )
    summary = await import_prospects(import_engine, group, path)

    assert (summary.rows_read, summary.created, summary.updated, summary.unchanged) == (3, 1, 0, 2)
    (row,) = await prospects(import_engine, group)
    assert (row["person_id"], row["name"]) == (person, "Third")
    again = await import_prospects(import_engine, group, path)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)


async def test_the_last_row_wins_for_a_person_the_import_creates(
    import_engine: AsyncEngine, tmp_path: Path, uid: str, chunk_rows: None
) -> None:
    """The chunk that creates a person creates its prospects; a later row for the same
    person and provider id (in a later chunk too) updates that prospect, which still counts
    once, as created."""
    group = await make_group(import_engine)
    path = csv_file(
        tmp_path / "rows.csv",
        f"p-{uid},,alice-{uid},,First,,",
        f"q-{uid},,bob-{uid},,Bob,,",
        f"p-{uid},,,https://www.linkedin.com/in/alice-{uid},Lost,,",  # a person of its own
        f"p-{uid},,alice-{uid},,Third,Acme,",
        f"q-{uid},,bob-{uid},,Bob,,",  # the same values
    )
    summary = await import_prospects(import_engine, group, path)

    assert (summary.rows_read, summary.created, summary.updated, summary.unchanged) == (5, 3, 0, 2)
    rows = await prospects(import_engine, group)
    named = {(r["provider_id"], r["person_public_identifier"]): r for r in rows}
    alice = named[(f"p-{uid}", f"alice-{uid}")]
    assert (alice["name"], alice["company_name"]) == ("Third", "Acme")
    assert named[(f"q-{uid}", f"bob-{uid}")]["name"] == "Bob"
    assert named[(f"p-{uid}", None)]["name"] == "Lost"
    again = await import_prospects(import_engine, group, path)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 5)
    assert await prospects(import_engine, group) == rows


def test_a_chunk_is_prepared_in_insert_order_with_its_flags() -> None:
    """What `import_staging.prepare` adds for the chunk statement (no database): persons in (public
    identifier, else URL; line) order, and the flags that spare the statement a sort of the
    whole chunk."""
    person = "ab" * 12
    chunk: list[StagedRow] = [
        (2, "p", None, "bob", "https://li/z", None, None, None),
        (3, "q", None, "ann", "https://li/a", None, None, None),
        (4, "p", None, "bob", "https://li/y", None, None, None),  # bob again: not first
        (5, "r", None, None, "https://li/a", None, None, None),  # URL only, ann's URL
        (6, "s", person, "cid", "https://li/c", None, None, None),  # a personId: no person
        (7, "t", None, None, None, None, None, None),  # anonymous
    ]
    staged = import_staging.prepare(chunk, 100)

    # By public identifier, else URL, then line; the rows that create no person last.
    assert [row[0] for row in staged] == [3, 2, 4, 5, 6, 7]
    flags = {row[0]: row[8:11] for row in staged}  # first_in_chunk, url_shared, provider_shared
    assert flags == {
        2: (True, False, True),
        3: (True, True, False),
        4: (False, False, True),
        5: (True, True, False),
        6: (False, False, False),
        7: (False, False, False),
    }
    assert [row[11] for row in staged] == list(range(100, 106))  # persons: insert order
    prospect_numbers = {row[0]: row[12] for row in staged}  # by provider id, then line
    assert prospect_numbers == {2: 100, 4: 101, 3: 102, 5: 103, 6: 104, 7: 105}


# --- invalid rows ---------------------------------------------------------------------------


async def test_invalid_rows_fail_the_import_with_line_numbers(
    import_engine: AsyncEngine, tmp_path: Path, uid: str
) -> None:
    group = await make_group(import_engine)
    await import_prospects(
        import_engine, group, csv_file(tmp_path / "base.csv", f"ok-{uid},,,,Before,,")
    )
    before, persons = await prospects(import_engine, group), await count_persons(import_engine)
    path = csv_file(
        tmp_path / "rows.csv",
        f"ok-{uid},,,,After,,",  # line 2: valid, but nothing may be written
        f"a/b-{uid},,,,,,",  # 3
        "",  # 4: blank, skipped
        f",,x-{uid},,,,",  # 5
        f'"multi{uid}",,,,"two',  # 6-7: one record over two lines
        'lines",,',
        f"c-{uid},nothex,,,,,",  # 8
        f"d-{uid},,,,{'x' * 2001},,",  # 9
        f"e-{uid},,,,,,,",  # 10: one field too many
        f"f g-{uid},,,,,,",  # 11
        f"h-{uid},,,,a\x00b,,",  # 12
        ",,,,,,",  # 13: empty cells only, skipped like a blank line
    )
    with pytest.raises(ImportFailed) as failed:
        await import_prospects(import_engine, group, path)

    assert failed.value.errors == [
        RowError(3, "providerId: must not contain '/' (also not as %2F)."),
        RowError(5, "providerId: is required."),
        RowError(8, "personId: must be 24 hexadecimal characters."),
        RowError(9, "name: must be at most 2000 characters, got 2001."),
        RowError(10, "expected 7 fields as in the header, got 8."),
        RowError(11, "providerId: must not contain whitespace or control characters."),
        RowError(12, "name: must not contain NUL characters or unpaired surrogates."),
    ]
    assert (failed.value.rows_read, failed.value.rejected) == (9, 7)
    assert "7 invalid row(s)" in str(failed.value)
    assert await prospects(import_engine, group) == before
    assert await count_persons(import_engine) == persons


async def test_invalid_json_lines(import_engine: AsyncEngine, tmp_path: Path, uid: str) -> None:
    group = await make_group(import_engine)
    path = write(
        tmp_path / "rows.jsonl",
        "\n".join(
            [
                json.dumps({"providerId": f"ok-{uid}"}),
                "[1, 2]",
                "{not json",
                json.dumps({"providerId": f"a-{uid}", "name": 5}),
                json.dumps({"providerId": f"b-{uid}", "title": ["x"]}),
                json.dumps({"providerId": f"c-{uid}", "nickname": "x"}),
                "",
                json.dumps({"name": "no provider"}),
                json.dumps({"providerId": f"d-{uid}", "name": "\ud800"}),
                json.dumps({"providerId": None}),
            ]
        ),
    )
    with pytest.raises(ImportFailed) as failed:
        await import_prospects(import_engine, group, path)
    reasons = {e.line: e.reason for e in failed.value.errors}
    assert reasons[2] == "must be a JSON object, got array."
    assert reasons[3].startswith("not valid JSON: ")
    assert reasons[4] == "name: must be a string or null, got number."
    assert reasons[5] == "title: must be a string or null, got array."
    assert reasons[6].startswith("unknown key 'nickname'; allowed: providerId, personId")
    assert reasons[8] == "providerId: is required."
    assert reasons[9] == "name: must not contain NUL characters or unpaired surrogates."
    assert reasons[10] == "providerId: is required."
    assert sorted(reasons) == [2, 3, 4, 5, 6, 8, 9, 10]
    assert await prospects(import_engine, group) == []


async def test_at_most_20_errors_are_listed(import_engine: AsyncEngine, tmp_path: Path) -> None:
    group = await make_group(import_engine)
    path = csv_file(tmp_path / "rows.csv", *(["bad/id,,,,,,"] * 25), "fine,,,,,,")
    with pytest.raises(ImportFailed) as failed:
        await import_prospects(import_engine, group, path)
    assert [e.line for e in failed.value.errors] == list(range(2, 22))
    assert (failed.value.rejected, failed.value.rows_read) == (25, 26)


async def test_skip_invalid_imports_the_rest_and_writes_rejects(
    import_engine: AsyncEngine, tmp_path: Path, uid: str
) -> None:
    group = await make_group(import_engine)
    rejects = tmp_path / "rejects.csv"
    path = csv_file(
        tmp_path / "rows.csv",
        f"ok1-{uid},,,,One,,",
        f'a/b-{uid},,,,"Quoted, name",,',
        f"ok2-{uid},,,,Two,,",
        f"c-{uid},xyz,,,,,",
    )
    summary = await import_prospects(
        import_engine, group, path, skip_invalid=True, rejects_path=rejects
    )

    assert (summary.rows_read, summary.created, summary.rejected) == (4, 2, 2)
    assert [e.line for e in summary.errors] == [3, 5]
    assert {r["name"] for r in await prospects(import_engine, group)} == {"One", "Two"}
    with rejects.open(newline="", encoding="utf-8") as file:
        written = list(csv.reader(file))
    slash = "providerId: must not contain '/' (also not as %2F)."
    assert written == [
        ["line", "reason", "raw"],
        ["3", slash, f'a/b-{uid},,,,"Quoted, name",,'],
        ["5", "personId: must be 24 hexadecimal characters.", f"c-{uid},xyz,,,,,"],
    ]
    assert not (tmp_path / "rejects.csv.partial").exists()

    # JSON Lines: raw is the line itself.
    path = write(tmp_path / "rows.jsonl", jsonl({"providerId": f"ok3-{uid}"}, {"providerId": 1}))
    summary = await import_prospects(
        import_engine, group, path, skip_invalid=True, rejects_path=rejects
    )
    assert (summary.created, summary.rejected) == (1, 1)
    with rejects.open(newline="", encoding="utf-8") as file:
        assert list(csv.reader(file))[1] == [
            "2",
            "providerId: must be a string or null, got number.",
            '{"providerId": 1}',
        ]


async def test_rejects_path_needs_skip_invalid(import_engine: AsyncEngine, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="skip_invalid"):
        await import_prospects(
            import_engine, new_id(), tmp_path / "x.csv", rejects_path=tmp_path / "r.csv"
        )


@pytest.mark.parametrize(
    ("content", "line", "reason"),
    [
        (
            "providerId,nickname,Title\nx,y,z\n",
            1,
            "unknown column(s) 'nickname', 'Title'; allowed: providerId, personId,"
            " publicIdentifier, linkedinUrl, name, companyName, title.",
        ),
        ("name,title\nx,y\n", 1, "missing required column providerId."),
        ("providerId,name,name\nx,y,z\n", 1, "duplicated column(s): name."),
    ],
)
async def test_bad_header_fails_the_whole_import(
    import_engine: AsyncEngine, tmp_path: Path, content: str, line: int, reason: str
) -> None:
    group = await make_group(import_engine)
    with pytest.raises(ImportFailed) as failed:
        await import_prospects(import_engine, group, write(tmp_path / "rows.csv", content))
    assert failed.value.errors == [RowError(line, reason)]
    assert await prospects(import_engine, group) == []


async def test_lines_that_are_not_utf8_are_invalid_rows(
    import_engine: AsyncEngine, tmp_path: Path
) -> None:
    group = await make_group(import_engine)
    csv_path = tmp_path / "rows.csv"
    csv_path.write_bytes(b"providerId,name\nok,fine\nx,caf\xe9\n")
    with pytest.raises(ImportFailed) as failed:
        await import_prospects(import_engine, group, csv_path)
    assert failed.value.errors == [RowError(3, "not valid UTF-8.")]

    jsonl_path = tmp_path / "rows.jsonl"
    jsonl_path.write_bytes(b'{"providerId": "ok"}\n{"providerId": "caf\xe9"}\n')
    summary = await import_prospects(import_engine, group, jsonl_path, skip_invalid=True)
    assert (summary.created, summary.errors) == (1, [RowError(2, "not valid UTF-8.")])

    header_path = tmp_path / "header.csv"
    header_path.write_bytes(b"providerId,n\xe9\nx,y\n")
    with pytest.raises(ImportFailed) as failed:
        await import_prospects(import_engine, group, header_path)
    assert failed.value.errors == [RowError(1, "not valid UTF-8.")]


async def test_missing_account_group(import_engine: AsyncEngine, tmp_path: Path) -> None:
    path = csv_file(tmp_path / "rows.csv", "p,,,,,,")
    group = new_id()
    with pytest.raises(ImportFailed) as failed:
        await import_prospects(import_engine, group, path)
    assert str(failed.value) == f"account group {group} does not exist."
    assert failed.value.errors == []
    with pytest.raises(ImportFailed, match="accountGroupId: must be 24 hexadecimal"):
        await import_prospects(import_engine, "nope", path)


async def test_provider_ids_follow_the_lookup_rules(
    import_engine: AsyncEngine, tmp_path: Path, uid: str
) -> None:
    group = await make_group(import_engine)
    path = write(
        tmp_path / "rows.jsonl",
        jsonl(
            {"providerId": f"café-{uid}"},  # non-ASCII letters are fine
            {"providerId": "x" * 256},
            {"providerId": "y" * 257},
            {"providerId": "tab\there"},
            {"providerId": "nbsp\u00a0inside"},
        ),
    )
    summary = await import_prospects(import_engine, group, path, skip_invalid=True)
    assert summary.created == 2
    assert {e.line: e.reason for e in summary.errors} == {
        3: "providerId: must be 1 to 256 characters long, got 257.",
        4: "providerId: must not contain whitespace or control characters.",
        5: "providerId: must not contain whitespace or control characters.",
    }


# --- progress and atomicity -----------------------------------------------------------------


def big_file(path: Path, uid: str, rows: int) -> Path:
    """Rows long enough that COPY has sent data to the server before the end."""
    padding = "x" * 150
    return csv_file(
        path, *(f"big{i}-{uid},,big{i}-{uid},,Name {i},{padding},{padding}" for i in range(rows))
    )


async def test_progress_is_reported(
    import_engine: AsyncEngine, tmp_path: Path, uid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "_YIELD_EVERY", 100)
    monkeypatch.setattr(importer, "PROGRESS_EVERY", 1000)
    group = await make_group(import_engine)
    seen: list[int] = []
    summary = await import_prospects(
        import_engine, group, big_file(tmp_path / "rows.csv", uid, 2500), on_progress=seen.append
    )
    assert seen == [1000, 2000, 2500]
    assert summary.created == 2500


async def base_state(engine: AsyncEngine, tmp_path: Path, uid: str) -> tuple[str, Any, int]:
    group = await make_group(engine)
    await import_prospects(engine, group, big_file(tmp_path / "base.csv", uid, 100))
    return group, await prospects(engine, group), await count_persons(engine)


class Stop(Exception):
    pass


async def test_an_exception_mid_import_writes_nothing(
    import_engine: AsyncEngine, tmp_path: Path, uid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "_YIELD_EVERY", 1000)
    monkeypatch.setattr(importer, "PROGRESS_EVERY", 10_000)
    # Stopped with chunks' persons created and the next chunk's statement under way.
    monkeypatch.setattr(import_staging, "CHUNK_ROWS", 3_000)
    group, before, persons = await base_state(import_engine, tmp_path, uid)
    seen: list[int] = []

    def progress(rows: int) -> None:
        seen.append(rows)
        raise Stop

    path = big_file(tmp_path / "rows.csv", uid, 20_000)  # updates the 100, adds the rest
    with pytest.raises(Stop):
        await import_prospects(import_engine, group, path, on_progress=progress)

    assert seen == [10_000]
    assert await prospects(import_engine, group) == before
    assert await count_persons(import_engine) == persons


async def test_cancellation_mid_import_writes_nothing(
    import_engine: AsyncEngine, tmp_path: Path, uid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "_YIELD_EVERY", 1000)
    monkeypatch.setattr(importer, "PROGRESS_EVERY", 10_000)
    # Stopped with chunks' persons created and the next chunk's statement under way.
    monkeypatch.setattr(import_staging, "CHUNK_ROWS", 3_000)
    group, before, persons = await base_state(import_engine, tmp_path, uid)
    path = big_file(tmp_path / "rows.csv", uid, 20_000)

    def cancel(rows: int) -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # as Ctrl-C does to asyncio.run's main task

    task = asyncio.create_task(import_prospects(import_engine, group, path, on_progress=cancel))
    with pytest.raises(asyncio.CancelledError):
        await task

    assert await prospects(import_engine, group) == before
    assert await count_persons(import_engine) == persons
    # The pool is still usable afterwards.
    summary = await import_prospects(import_engine, group, path)
    assert (summary.created, summary.updated) == (19_900, 0)


async def test_a_failure_after_persons_were_created_writes_nothing(
    import_engine: AsyncEngine, tmp_path: Path, uid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    group, before, persons = await base_state(import_engine, tmp_path, uid)
    # The last statement fails (division by zero), after the persons were inserted.
    monkeypatch.setattr(import_apply, "UPSERT", "SELECT 1, 1 / (length(:group) - 24) -- {new_id}")
    path = big_file(tmp_path / "rows.csv", uid, 300)
    with pytest.raises(Exception, match="division by zero"):
        await import_prospects(import_engine, group, path)
    assert await prospects(import_engine, group) == before
    assert await count_persons(import_engine) == persons


async def test_a_failed_import_leaves_no_rejects_file(
    import_engine: AsyncEngine, tmp_path: Path, uid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    group = await make_group(import_engine)
    monkeypatch.setattr(import_apply, "UPSERT", "SELECT 1, 1 / (length(:group) - 24) -- {new_id}")
    rejects = tmp_path / "rejects.csv"
    path = csv_file(tmp_path / "rows.csv", f"ok-{uid},,,,,,", "bad/one,,,,,,")
    with pytest.raises(Exception, match="division by zero"):
        await import_prospects(import_engine, group, path, skip_invalid=True, rejects_path=rejects)
    assert [name for name in os.listdir(tmp_path) if name.startswith("rejects")] == []


async def test_a_truncated_gzip_file_fails(import_engine: AsyncEngine, tmp_path: Path) -> None:
    group = await make_group(import_engine)
    whole = gzip.compress(("\n".join([HEADER, *(f"p{i},,,,,," for i in range(5000))])).encode())
    path = tmp_path / "rows.csv.gz"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ImportFailed, match="the gzip data is corrupt or truncated"):
        await import_prospects(import_engine, group, path)
    assert await prospects(import_engine, group) == []


async def test_an_autocommit_engine_is_refused(
    import_engine: AsyncEngine, tmp_path: Path, uid: str
) -> None:
    group = await make_group(import_engine)
    autocommit = import_engine.execution_options(isolation_level="AUTOCOMMIT")
    with pytest.raises(RuntimeError, match="transactional"):
        await import_prospects(autocommit, group, csv_file(tmp_path / "a.csv", f"p-{uid},,,,,,"))
    assert await prospects(import_engine, group) == []
