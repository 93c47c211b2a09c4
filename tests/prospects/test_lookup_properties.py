"""The lookup against a plain in-memory model of the contract, on random data in PostgreSQL.

Hypothesis makes random worlds — account groups, persons, prospects, provider ids with
duplicates within and across groups, unicode, the maximum length, case variants — inserts them,
then asks the service about every provider id of the world (and some nobody carries) in every
group. For each question the answer must be exactly the model's: the resolution, the requested
id echoed, and the matches — the group's prospects carrying that exact id, ordered by creation
time then id, at most 50, with their fields. A prospect of another group never appears.

Several prospects share a `created_at` (explicit timestamps drawn from a few values), so the
tie-break on the id is exercised, not only the time order.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api.accounts.models import AccountGroup
from sonarly_api.errors import ValidationFailed
from sonarly_api.ids import new_id
from sonarly_api.prospects import validation
from sonarly_api.prospects.models import Person, Prospect
from sonarly_api.prospects.repository import MAX_MATCHES
from tests.conftest import Factory, bearer, client_for

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def _valid(provider_id: str) -> bool:
    try:
        validation.provider_id(provider_id)
    except ValidationFailed:
        return False
    return True


# Any character the contract allows: everything but '/', whitespace and control characters.
_allowed_chars = st.characters(
    exclude_categories=("Cc", "Cs", "Zs", "Zl", "Zp"), exclude_characters="/"
)
_provider_ids = st.one_of(
    st.text(_allowed_chars, min_size=1, max_size=12),
    st.text(_allowed_chars, min_size=validation.MAX_PROVIDER_ID_LENGTH, max_size=256),
    st.sampled_from(["crm-42", "CRM-42", "crm-42é", "%2F", "a%20b", "..", "日本"]),
).filter(_valid)
# Any text PostgreSQL can store (no NUL), or nothing stored.
_field = st.one_of(
    st.none(),
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=20),
)


@dataclass(frozen=True)
class Row:
    group: int  # index into World.groups
    provider: int  # index into World.provider_ids
    person: int  # index into World.persons
    created: int  # seconds after EPOCH: few values, so ties are common
    name: str | None
    title: str | None


@dataclass(frozen=True)
class World:
    groups: list[str]
    persons: list[str]
    provider_ids: list[str]
    rows: list[Row]
    prospect_ids: list[str]  # one per row


@st.composite
def worlds(draw: st.DrawFn) -> World:
    groups = [new_id() for _ in range(draw(st.integers(2, 3)))]
    provider_ids = draw(st.lists(_provider_ids, min_size=1, max_size=5, unique=True))
    persons = [new_id() for _ in range(draw(st.integers(1, 8)))]
    cells = st.tuples(
        st.integers(0, len(groups) - 1),
        st.integers(0, len(provider_ids) - 1),
        st.integers(0, len(persons) - 1),
    )
    # (group, provider id, person) is unique: one person's record of an id in a group.
    keys = draw(st.lists(cells, max_size=25, unique=True))
    if draw(st.booleans()):
        # More carriers of one id in group 0 than the cap of 50 matches.
        extra = [new_id() for _ in range(MAX_MATCHES + draw(st.integers(1, 10)))]
        start = len(persons)
        persons += extra
        keys += [(0, 0, start + i) for i in range(len(extra))]
    rows = [Row(g, p, n, draw(st.integers(0, 3)), draw(_field), draw(_field)) for g, p, n in keys]
    # Drawn, not generated in insertion order: the service must sort by id, not by luck.
    prospect_ids = draw(
        st.lists(
            st.text("0123456789abcdef", min_size=24, max_size=24),
            min_size=len(rows),
            max_size=len(rows),
            unique=True,
        )
    )
    return World(groups, persons, provider_ids, rows, prospect_ids)


def expected_answer(world: World, group: int, provider_id: str) -> dict[str, Any]:
    """The contract, as a plain model: exact (case-sensitive) match inside the group, ordered
    by creation time then id, at most 50, `resolution` from the number of matches."""
    carriers = [
        (row.created, world.prospect_ids[i], row)
        for i, row in enumerate(world.rows)
        if row.group == group and world.provider_ids[row.provider] == provider_id
    ]
    carriers.sort(key=lambda c: (c[0], c[1]))
    matches = [
        {
            "prospectId": prospect_id,
            "personId": world.persons[row.person],
            "publicIdentifier": None,
            "linkedinUrl": None,
            "name": row.name,
            "companyName": None,
            "title": row.title,
        }
        for _, prospect_id, row in carriers[:MAX_MATCHES]
    ]
    resolution = {0: "none", 1: "unique"}.get(len(carriers), "ambiguous")
    return {"providerId": provider_id, "resolution": resolution, "matches": matches}


async def insert_world(engine: AsyncEngine, world: World) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(AccountGroup), [{"id": g, "name": "prop"} for g in world.groups])
        await conn.execute(insert(Person), [{"id": p} for p in world.persons])
        if world.rows:
            await conn.execute(
                insert(Prospect),
                [
                    {
                        "account_group_id": world.groups[row.group],
                        "id": world.prospect_ids[i],
                        "person_id": world.persons[row.person],
                        "provider_id": world.provider_ids[row.provider],
                        "name": row.name,
                        "title": row.title,
                        "created_at": EPOCH + timedelta(seconds=row.created),
                    }
                    for i, row in enumerate(world.rows)
                ],
            )


def lookup_path(group: str, provider_id: str) -> str:
    # Dots too: clients (httpx among them) remove "." and ".." path segments before sending,
    # so those provider ids travel as %2E; the server decodes them like any escape.
    encoded = urllib.parse.quote(provider_id, safe="").replace(".", "%2E")
    return f"/v1/accounts/{group}/prospects/by-provider-id/{encoded}"


@settings(
    max_examples=40,
    deadline=None,  # real PostgreSQL on a shared machine: time is not the property
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
    # No shrinking: each example costs real inserts and HTTP calls, and a shrink can run for
    # minutes; a failure still prints the world that broke the property.
    phases=[Phase.explicit, Phase.generate],
)
@given(world=worlds(), absent=_provider_ids)
async def test_lookup_equals_the_model(
    world: World, absent: str, app: FastAPI, engine: AsyncEngine
) -> None:
    await insert_world(engine, world)
    _, key = await Factory(engine).key(world.groups)
    questions = [*world.provider_ids, absent]
    async with client_for(app) as http:
        for group_index, group in enumerate(world.groups):
            for provider_id in questions:
                response = await http.get(lookup_path(group, provider_id), headers=bearer(key))
                assert response.status_code == 200, response.text
                body = response.json()
                assert body["data"] == expected_answer(world, group_index, provider_id)
                others = {
                    world.prospect_ids[i]
                    for i, row in enumerate(world.rows)
                    if row.group != group_index
                }
                assert not others & {m["prospectId"] for m in body["data"]["matches"]}


async def test_the_model_catches_a_wrong_order(app: FastAPI, engine: AsyncEngine) -> None:
    """The property above would fail if the service ordered by id alone: same provider id,
    the later-created prospect has the smaller id."""
    group, person_a, person_b = new_id(), new_id(), new_id()
    world = World(
        groups=[group, new_id()],
        persons=[person_a, person_b],
        provider_ids=["crm-order"],
        rows=[Row(0, 0, 0, 2, None, None), Row(0, 0, 1, 1, None, None)],
        prospect_ids=["0" * 24, "f" * 23 + "0"],
    )
    await insert_world(engine, world)
    _, key = await Factory(engine).key(world.groups)
    async with client_for(app) as http:
        response = await http.get(lookup_path(group, "crm-order"), headers=bearer(key))
    matches = response.json()["data"]["matches"]
    assert [m["prospectId"] for m in matches] == ["f" * 23 + "0", "0" * 24]
    assert response.json()["data"] == expected_answer(world, 0, "crm-order")
