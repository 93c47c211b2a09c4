"""The batch lookup is the list of single lookups, byte for byte, on random data in PostgreSQL.

Hypothesis makes random worlds (tests/prospects/test_lookup_properties.py: account groups,
provider ids carried by several prospects of a group, by prospects of other groups only, by
more than 50, unicode, the maximum length, shared creation times) and random batches: ids of
the world and ids nobody carries, repeated in the request, in any order. For each group the
batch's whole answer must be the envelope around `{"items": [...]}` whose items are, byte for
byte, the `data` the single lookup answers for each requested id.
"""

from __future__ import annotations

from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api.prospects.validation import MAX_BATCH
from tests.conftest import Factory, bearer, client_for
from tests.prospects.test_lookup_properties import World, _provider_ids, insert_world, worlds
from tests.support import data_bytes, post_batch, single_url


@st.composite
def worlds_and_batches(draw: st.DrawFn) -> tuple[World, list[list[str]]]:
    """A world and, for each of its groups, a batch drawn from its provider ids and a few
    that nobody carries, repeats allowed."""
    world = draw(worlds())
    absent = draw(st.lists(_provider_ids, min_size=1, max_size=3))
    candidates = [*world.provider_ids, *absent]
    size = st.one_of(st.integers(1, 12), st.just(MAX_BATCH))
    batches = [
        draw(st.lists(st.sampled_from(candidates), min_size=n, max_size=n))
        for n in (draw(size) for _ in world.groups)
    ]
    return world, batches


@settings(
    max_examples=30,
    deadline=None,  # real PostgreSQL on a shared machine: time is not the property
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
    # No shrinking: each example costs real inserts and HTTP calls; a failure still prints
    # the world and the batches that broke the property.
    phases=[Phase.explicit, Phase.generate],
)
@given(drawn=worlds_and_batches())
async def test_batch_answer_is_the_single_answers_byte_for_byte(
    drawn: tuple[World, list[list[str]]], app: FastAPI, engine: AsyncEngine
) -> None:
    world, batches = drawn
    await insert_world(engine, world)
    _, key = await Factory(engine).key(world.groups)
    async with client_for(app) as http:
        for group, provider_ids in zip(world.groups, batches, strict=True):
            batch = await post_batch(http, group, provider_ids, key)
            assert batch.status_code == 200, batch.text
            singles = {}
            for provider_id in dict.fromkeys(provider_ids):
                single = await http.get(single_url(group, provider_id), headers=bearer(key))
                assert single.status_code == 200, single.text
                singles[provider_id] = data_bytes(single)
            expected = b'{"items":[' + b",".join(singles[p] for p in provider_ids) + b"]}"
            assert data_bytes(batch) == expected
