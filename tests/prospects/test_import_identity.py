"""The prospect importer: which person each imported row belongs to."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api.ids import new_id
from sonarly_api.prospects import import_staging
from sonarly_api.prospects.import_rows import StagedRow
from sonarly_api.prospects.importer import import_prospects
from tests.prospects.import_helpers import (
    add_person,
    count_persons,
    csv_file,
    make_group,
    prospects,
)


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
