"""The prospect importer (`sonarly_api.prospects.importer`): CSV and JSON Lines give the same
prospects, and a re-import changes only what changed."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api.ids import new_id
from sonarly_api.prospects.importer import import_prospects
from tests.prospects.import_helpers import (
    HEADER,
    as_csv,
    count_persons,
    csv_file,
    force_encoding,
    jsonl,
    make_group,
    prospects,
    sample_rows,
    write,
)


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
