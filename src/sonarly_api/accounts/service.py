"""Use cases of account groups."""

from __future__ import annotations

from sonarly_api.accounts import repository
from sonarly_api.accounts.schemas import AccountGroupOut, AccountGroupPage
from sonarly_api.auth.principal import Principal
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
