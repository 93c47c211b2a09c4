"""The page writer (`sonarly_api.prospects.writer`), against a real PostgreSQL: the bulk
importer's rules on the caller's transaction, and no global lock."""

from __future__ import annotations

import itertools
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sonarly_api.ids import new_id
from sonarly_api.prospects.import_rows import StagedRow
from sonarly_api.prospects.importer import import_prospects
from sonarly_api.prospects.validation import PROFILE_URL_PREFIX
from sonarly_api.prospects.writer import WriteCounts, write_rows

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)

# --- a world: rows over a few identities, and what exists before -----------------------------

_PUBLIC_IDENTIFIERS = ["ann", "bob", "cid"]
# A URL is the profile of an identifier (tokens here): an import refuses a row whose URL names
# another identifier than its publicIdentifier, so rows and persons only pair matching ones.
_URLS = ["ann", "bob", "dan"]
_NAMED = ["n1", "n2"]  # personId tokens: each run maps them to ids of its own


@dataclass(frozen=True)
class Row:
    provider: str
    named: str | None
    public_identifier: str | None
    url: str | None
    name: str | None


@dataclass(frozen=True)
class World:
    persons: list[tuple[str | None, str | None]]  # existing (public identifier, url)
    # existing prospects: (provider, index into persons or None for a new bare person, name)
    prospects: list[tuple[str, int | None, str | None]]
    rows: list[Row]


def _optional(values: Sequence[str]) -> st.SearchStrategy[str | None]:
    return st.one_of(st.none(), st.sampled_from(values))


_rows = st.builds(
    Row,
    provider=st.sampled_from(["P", "Q"]),
    named=st.one_of(st.none(), st.none(), st.sampled_from(_NAMED)),
    public_identifier=_optional(_PUBLIC_IDENTIFIERS),
    url=_optional(_URLS),
    name=_optional(["x", "y"]),
).filter(lambda row: None in (row.public_identifier, row.url) or row.url == row.public_identifier)


@st.composite
def worlds(draw: st.DrawFn) -> World:
    persons: list[tuple[str | None, str | None]] = []
    used: set[str] = set()
    for _ in range(draw(st.integers(0, 3))):
        pi, url = draw(_optional(_PUBLIC_IDENTIFIERS)), draw(_optional(_URLS))
        names = {name for name in (pi, url) if name is not None}
        if not names or names & used or (None not in (pi, url) and pi != url):
            continue
        used |= names
        persons.append((pi, url))
    prospects = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["P", "Q"]),
                st.one_of(st.none(), st.integers(0, max(len(persons) - 1, 0)))
                if persons
                else st.none(),
                _optional(["x", "y"]),
            ),
            max_size=4,
            unique_by=lambda p: (p[0], p[1]) if p[1] is not None else object(),
        )
    )
    return World(persons, prospects, draw(st.lists(_rows, min_size=1, max_size=12)))


class Run:
    """One run of a world: its own group and identities (persons are shared by all groups)."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(4)
        self.group = new_id()
        self.named = {token: new_id() for token in _NAMED}

    def value(self, token: str | None) -> str | None:
        return None if token is None else f"{token}-{self.tag}"

    def staged(self, rows: Sequence[Row]) -> list[StagedRow]:
        return [
            (
                line,
                row.provider,
                None if row.named is None else self.named[row.named],
                self.value(row.public_identifier),
                self.url(row.url),
                row.name,
                None,
                None,
            )
            for line, row in enumerate(rows, 1)
        ]

    def jsonl(self, path: Path, rows: Sequence[Row]) -> Path:
        keys = ("providerId", "personId", "publicIdentifier", "linkedinUrl", "name")
        with path.open("w", encoding="utf-8") as file:
            for row in self.staged(rows):
                file.write(json.dumps(dict(zip(keys, row[1:6], strict=True))) + "\n")
        return path

    async def setup(self, engine: AsyncEngine, world: World) -> None:
        async with engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO account_groups (id, name) VALUES (:id, 'writer test')"),
                {"id": self.group},
            )
            ids = []
            for pi, url in world.persons:
                ids.append(await add_person(conn, self.value(pi), self.url(url)))
            for number, (provider, person, name) in enumerate(world.prospects):
                person_id = ids[person] if person is not None else await add_person(conn)
                await conn.execute(
                    text(
                        "INSERT INTO prospects (account_group_id, id, person_id, provider_id,"
                        " name, created_at, updated_at) VALUES (:g, :id, :p, :provider, :name,"
                        " :at, :at)"
                    ),
                    {"g": self.group, "id": new_id(), "p": person_id, "provider": provider,
                     "name": name, "at": EPOCH + timedelta(seconds=number)},
                )  # fmt: skip

    async def state(self, engine: AsyncEngine) -> list[tuple[Any, ...]]:
        """The group's prospects grouped by person, with ids and this run's tag taken out."""
        async with engine.connect() as conn:
            result = await conn.execute(
                text(
                    "SELECT p.person_id, s.public_identifier AS spi, s.linkedin_url AS surl,"
                    " p.provider_id, p.public_identifier, p.linkedin_url, p.name"
                    " FROM prospects p JOIN persons s ON s.id = p.person_id"
                    " WHERE p.account_group_id = :g"
                ),
                {"g": self.group},
            )
            rows = result.all()
        tokens = {person_id: token for token, person_id in self.named.items()}
        by_person: dict[str, list[tuple[Any, ...]]] = {}
        signature: dict[str, tuple[Any, ...]] = {}
        for person, spi, surl, provider, pi, url, name in rows:
            by_person.setdefault(person, []).append(
                (provider, self.strip(pi), self.strip(url), name)
            )
            signature[person] = (tokens.get(person), self.strip(spi), self.strip(surl))
        return sorted(
            (
                (signature[person], tuple(sorted(items, key=repr)))
                for person, items in by_person.items()
            ),
            key=repr,
        )

    def url(self, token: str | None) -> str | None:
        return None if token is None else f"{PROFILE_URL_PREFIX}{self.value(token)}"

    def strip(self, value: str | None) -> str | None:
        if value is None:
            return None
        return value.removeprefix(PROFILE_URL_PREFIX).removesuffix(f"-{self.tag}")


async def add_person(
    conn: AsyncConnection, public_identifier: str | None = None, url: str | None = None
) -> str:
    person = new_id()
    await conn.execute(
        text("INSERT INTO persons (id, public_identifier, linkedin_url) VALUES (:id, :pi, :u)"),
        {"id": person, "pi": public_identifier, "u": url},
    )
    return person


async def person_count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM persons"))).scalar_one())


_PROPERTY = settings(
    max_examples=60,
    deadline=None,  # real PostgreSQL on a shared machine: time is not the property
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
    phases=[Phase.explicit, Phase.generate],
)


@_PROPERTY
@given(world=worlds())
async def test_write_rows_equals_the_bulk_importer(
    world: World, engine: AsyncEngine, tmp_path: Path
) -> None:
    """Same prospects, same persons (created ones included) and same counts as an import of
    the same rows into the same state."""
    bulk, paged = Run(), Run()
    await bulk.setup(engine, world)
    await paged.setup(engine, world)

    before = await person_count(engine)
    summary = await import_prospects(
        engine, bulk.group, bulk.jsonl(tmp_path / f"{bulk.tag}.jsonl", world.rows)
    )
    bulk_persons = await person_count(engine) - before
    before = await person_count(engine)
    async with engine.begin() as conn:
        counts = await write_rows(conn, paged.group, paged.staged(world.rows))
    paged_persons = await person_count(engine) - before

    assert counts == WriteCounts(summary.created, summary.updated, summary.unchanged)
    assert paged_persons == bulk_persons
    assert await paged.state(engine) == await bulk.state(engine)

    # And again: nothing changes, as for a re-import.
    async with engine.begin() as conn:
        again = await write_rows(conn, paged.group, paged.staged(world.rows))
    assert again == WriteCounts(0, 0, len(world.rows))


@_PROPERTY
@given(world=worlds(), cuts=st.lists(st.integers(1, 11), max_size=3))
async def test_many_calls_in_one_transaction_equal_one_import(
    world: World, cuts: list[int], engine: AsyncEngine, tmp_path: Path
) -> None:
    """Pages of one transaction give what one import of all their rows gives (rows with an
    identity: anonymous rows are matched per call), and every row is counted once."""
    rows = [row for row in world.rows if row.named or row.public_identifier or row.url]
    assume(rows)  # an empty file is refused
    bulk, paged = Run(), Run()
    await bulk.setup(engine, world)
    await paged.setup(engine, world)
    summary = await import_prospects(
        engine, bulk.group, bulk.jsonl(tmp_path / f"{bulk.tag}.jsonl", rows)
    )
    staged = paged.staged(rows)
    bounds = [0, *sorted({cut for cut in cuts if cut < len(staged)}), len(staged)]
    totals = WriteCounts(0, 0, 0)
    async with engine.begin() as conn:
        for start, end in itertools.pairwise(bounds):
            counts = await write_rows(conn, paged.group, staged[start:end])
            assert counts.created + counts.updated + counts.unchanged == end - start
            totals = WriteCounts(
                totals.created + counts.created,
                totals.updated + counts.updated,
                totals.unchanged + counts.unchanged,
            )
    assert await paged.state(engine) == await bulk.state(engine)
    assert totals.created == summary.created


async def test_written_counts_and_the_caller_owns_the_transaction(engine: AsyncEngine) -> None:
    run = Run()
    await run.setup(engine, World([], [], []))
    rows = run.staged(
        [
            Row("P", None, "ann", "ann", "x"),
            Row("Q", None, None, "dan", None),
            Row("P", None, None, None, "y"),
        ]
    )
    async with engine.connect() as conn, conn.begin() as transaction:
        counts = await write_rows(conn, run.group, rows)
        assert (counts, counts.written) == (WriteCounts(3, 0, 0), 3)
        await transaction.rollback()
    assert await run.state(engine) == []
    async with engine.begin() as conn:
        assert await write_rows(conn, run.group, rows) == WriteCounts(3, 0, 0)
        changed = [(*rows[0][:5], "renamed", None, None), *rows[1:]]
        assert await write_rows(conn, run.group, changed) == WriteCounts(0, 1, 2)
        assert await write_rows(conn, run.group, []) == WriteCounts(0, 0, 0)
    written = sorted((item for _, items in await run.state(engine) for item in items), key=repr)
    assert [(provider, name) for provider, _, _, name in written] == [
        ("P", "renamed"),
        ("P", "y"),
        ("Q", None),
    ]
