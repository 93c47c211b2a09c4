"""SQL for the provider-id lookup. Every query takes the account group id: isolation is a
property of the query, not of a check someone must remember."""

from __future__ import annotations

from sqlalchemy import bindparam, select

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
    return [
        {
            "prospectId": row[0],
            "personId": row[1],
            "publicIdentifier": row[2],
            "linkedinUrl": row[3],
            "name": row[4],
            "companyName": row[5],
            "title": row[6],
        }
        for row in rows
    ]
