"""Use cases of account groups."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from sonarly_api.accounts import repository
from sonarly_api.accounts.repository import AccountGroupRow
from sonarly_api.accounts.schemas import AccountGroupOut, AccountGroupPage
from sonarly_api.auth.principal import Principal
from sonarly_api.credits.plans import DEFAULT_PLAN, parse_plan
from sonarly_api.db import Database
from sonarly_api.pagination import decode_cursor, encode_cursor
from sonarly_api.timestamps import iso_millis


async def granted_account_groups(
    db: Database, principal: Principal, cursor: str | None, limit: int
) -> AccountGroupPage:
    after_id = decode_cursor(cursor)
    # One row more than asked tells whether another page exists.
    rows = await db.read(repository.list_granted, principal.key_id, after_id, limit + 1)
    page, has_more = rows[:limit], len(rows) > limit
    return AccountGroupPage(
        items=[
            AccountGroupOut(id=r.id, name=r.name, created_at=iso_millis(r.created_at)) for r in page
        ],
        next_cursor=encode_cursor(page[-1].id) if has_more else None,
        has_more=has_more,
    )


async def create(
    conn: AsyncConnection, name: str, plan: str = DEFAULT_PLAN, credits: int = 0
) -> AccountGroupRow:
    """A new account group on `plan` with `credits` granted, on the caller's transaction.
    ValueError (a readable reason) for an unknown plan or negative credits."""
    if credits < 0:
        raise ValueError(f"initial credits cannot be negative ({credits})")
    return await repository.create(conn, name, parse_plan(plan), credits)
