"""SQL for the provider-id lookup. Every query takes the account group id: isolation is a
property of the query, not of a check someone must remember."""

from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from sonarly_api.prospects.models import Prospect
from sonarly_api.prospects.schemas import ProviderIdProspectMatch

MAX_MATCHES = 50

# Built once at import: served by the (account_group_id, provider_id, person_id) index.
_LOOKUP = (
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
    conn: AsyncConnection, account_group_id: str, provider_id: str
) -> list[ProviderIdProspectMatch]:
    result = await conn.execute(
        _LOOKUP, {"account_group_id": account_group_id, "provider_id": provider_id}
    )
    return [
        ProviderIdProspectMatch(
            prospect_id=row[0],
            person_id=row[1],
            public_identifier=row[2],
            linkedin_url=row[3],
            name=row[4],
            company_name=row[5],
            title=row[6],
        )
        for row in result
    ]
