"""SQL for account groups."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from sonarly_api.accounts.models import AccountGroup
from sonarly_api.auth.models import ApiKeyGrant
from sonarly_api.ids import new_id


@dataclass(frozen=True)
class AccountGroupRow:
    id: str
    name: str
    created_at: datetime


async def create(conn: AsyncConnection, name: str) -> AccountGroupRow:
    row = (
        await conn.execute(
            insert(AccountGroup)
            .values(id=new_id(), name=name)
            .returning(AccountGroup.id, AccountGroup.name, AccountGroup.created_at)
        )
    ).one()
    return AccountGroupRow(*row)


async def list_all(conn: AsyncConnection) -> list[AccountGroupRow]:
    rows = await conn.execute(
        select(AccountGroup.id, AccountGroup.name, AccountGroup.created_at).order_by(
            AccountGroup.id
        )
    )
    return [AccountGroupRow(*r) for r in rows]


async def existing_ids(conn: AsyncConnection, ids: list[str]) -> set[str]:
    rows = await conn.execute(select(AccountGroup.id).where(AccountGroup.id.in_(ids)))
    return {r[0] for r in rows}


async def list_granted(
    conn: AsyncConnection, key_id: str, after_id: str | None, limit: int
) -> list[AccountGroupRow]:
    """The groups `key_id` is granted, in id order, after the cursor; `limit` rows at most."""
    stmt = (
        select(AccountGroup.id, AccountGroup.name, AccountGroup.created_at)
        .join(ApiKeyGrant, ApiKeyGrant.account_group_id == AccountGroup.id)
        .where(ApiKeyGrant.api_key_id == key_id)
        .order_by(AccountGroup.id)
        .limit(limit)
    )
    if after_id is not None:
        stmt = stmt.where(AccountGroup.id > after_id)
    return [AccountGroupRow(*r) for r in await conn.execute(stmt)]
