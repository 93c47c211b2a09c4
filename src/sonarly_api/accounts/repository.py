"""SQL for account groups."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from sonarly_api.accounts.models import AccountGroup
from sonarly_api.auth.models import ApiKeyGrant
from sonarly_api.credits import repository as credits_repository
from sonarly_api.credits.plans import DEFAULT_PLAN, Plan
from sonarly_api.ids import new_id


@dataclass(frozen=True)
class AccountGroupRow:
    id: str
    name: str
    created_at: datetime
    plan: Plan = DEFAULT_PLAN


async def create(
    conn: AsyncConnection, name: str, plan: Plan = DEFAULT_PLAN, credits: int = 0
) -> AccountGroupRow:
    """A new group on `plan`, with its credit balance row and, when `credits` > 0, an
    initial grant of that many credits (on the caller's transaction)."""
    if credits < 0:
        raise ValueError(f"initial credits cannot be negative ({credits})")
    row = (
        await conn.execute(
            insert(AccountGroup)
            .values(id=new_id(), name=name, plan=plan)
            .returning(AccountGroup.id, AccountGroup.name, AccountGroup.created_at)
        )
    ).one()
    await credits_repository.insert_balance(conn, row.id)
    if credits:
        # The group is new: nobody else can hold its balance row, so no lock to take first.
        await credits_repository.append(conn, row.id, "grant", credits, note="initial grant")
        await credits_repository.move(conn, row.id, balance=credits)
    return AccountGroupRow(*row, plan=plan)


async def list_all(conn: AsyncConnection) -> list[AccountGroupRow]:
    rows = await conn.execute(
        select(
            AccountGroup.id, AccountGroup.name, AccountGroup.created_at, AccountGroup.plan
        ).order_by(AccountGroup.id)
    )
    # The column's CHECK keeps `plan` one of the Plan words.
    return [AccountGroupRow(r.id, r.name, r.created_at, cast(Plan, r.plan)) for r in rows]


async def plan_of(conn: AsyncConnection, account_group_id: str) -> Plan | None:
    """The group's plan; None if there is no such group."""
    plan = await conn.scalar(select(AccountGroup.plan).where(AccountGroup.id == account_group_id))
    return cast(Plan | None, plan)


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
