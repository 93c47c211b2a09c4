"""SQL for the provider-id lookup. Every query takes the account group id: isolation is a
property of the query, not of a check someone must remember."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
from sqlalchemy import Text, bindparam, func, select, true
from sqlalchemy.dialects.postgresql import ARRAY

from sonarly_api.db import Database, DriverStatement
from sonarly_api.prospects.models import Prospect

MAX_MATCHES = 50

# Built once at import, and compiled once to the driver's SQL (`Database.fetch` runs it as a
# prepared statement): served by the (account_group_id, provider_id, person_id) index.
_LOOKUP = DriverStatement.compile(
    select(
        Prospect.id,
        Prospect.person_id,
        Prospect.public_identifier,
        Prospect.linkedin_url,
        Prospect.name,
        Prospect.company_name,
        Prospect.title,
    )
    .where(
        Prospect.account_group_id == bindparam("account_group_id"),
        Prospect.provider_id == bindparam("provider_id"),
    )
    .order_by(Prospect.created_at, Prospect.id)
    .limit(MAX_MATCHES)
)


async def find_by_provider_id(
    db: Database, account_group_id: str, provider_id: str
) -> list[dict[str, str | None]]:
    """The group's prospects carrying `provider_id`, as wire-ready matches."""
    rows = await db.fetch(_LOOKUP, account_group_id=account_group_id, provider_id=provider_id)
    return [_match(row) for row in rows]


def _match(row: asyncpg.Record, first: int = 0) -> dict[str, str | None]:
    """A match as the wire shows it, from the row's columns from `first` on in _LOOKUP's
    order (one function for both lookups: their matches must be the same bytes)."""
    return {
        "prospectId": row[first],
        "personId": row[first + 1],
        "publicIdentifier": row[first + 2],
        "linkedinUrl": row[first + 3],
        "name": row[first + 4],
        "companyName": row[first + 5],
        "title": row[first + 6],
    }


# The batch lookup: the distinct requested ids as rows (unnest, numbered), and for each, the
# single lookup's query as a LATERAL subquery: one index scan per id on the same (account
# group, provider id, person) index, the same order and the same cap of 50. One statement
# and one round trip for the whole batch. Ordered by the ids' position, then as the single
# lookup orders, so each id's matches arrive together and in order.
_REQUESTED = (
    func.unnest(bindparam("provider_ids", type_=ARRAY(Text)))
    .table_valued("provider_id", with_ordinality="position")
    .render_derived(name="requested")
)
_MATCHES = (
    select(
        Prospect.id,
        Prospect.person_id,
        Prospect.public_identifier,
        Prospect.linkedin_url,
        Prospect.name,
        Prospect.company_name,
        Prospect.title,
        Prospect.created_at,
    )
    .where(
        Prospect.account_group_id == bindparam("account_group_id"),
        Prospect.provider_id == _REQUESTED.c.provider_id,
    )
    .order_by(Prospect.created_at, Prospect.id)
    .limit(MAX_MATCHES)
    .lateral("matches")
)
_BATCH_LOOKUP = DriverStatement.compile(
    select(
        _REQUESTED.c.provider_id,
        _MATCHES.c.id,
        _MATCHES.c.person_id,
        _MATCHES.c.public_identifier,
        _MATCHES.c.linkedin_url,
        _MATCHES.c.name,
        _MATCHES.c.company_name,
        _MATCHES.c.title,
    )
    .select_from(_REQUESTED.join(_MATCHES, true()))
    .order_by(_REQUESTED.c.position, _MATCHES.c.created_at, _MATCHES.c.id)
)


async def find_by_provider_ids(
    db: Database, account_group_id: str, provider_ids: Sequence[str]
) -> dict[str, list[dict[str, str | None]]]:
    """For each of the distinct `provider_ids`, the group's prospects carrying it (as
    `find_by_provider_id` returns them); ids nobody in the group carries are left out."""
    rows = await db.fetch(
        _BATCH_LOOKUP, account_group_id=account_group_id, provider_ids=list(provider_ids)
    )
    found: dict[str, list[dict[str, str | None]]] = {}
    for row in rows:
        matches = found.get(row[0])
        if matches is None:
            matches = found[row[0]] = []
        matches.append(_match(row, 1))
    return found
