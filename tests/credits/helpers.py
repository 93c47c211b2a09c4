"""Helpers of the credits tests: groups made as the service makes them, and the ledger read
back with plain SQL (not through the code under test)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sonarly_api.accounts import repository as account_groups
from sonarly_api.credits.plans import Plan
from sonarly_api.ids import new_id


async def new_group(engine: AsyncEngine, credits: int = 0, plan: Plan = "starter") -> str:
    async with engine.begin() as conn:
        return (await account_groups.create(conn, "credits test", plan, credits)).id


@dataclass(frozen=True)
class Totals:
    balance: int
    reserved: int


async def totals(conn: AsyncConnection, group: str) -> Totals:
    row = (
        await conn.execute(
            text("SELECT balance, reserved FROM credit_balances WHERE account_group_id = :g"),
            {"g": group},
        )
    ).one()
    return Totals(balance=row.balance, reserved=row.reserved)


async def ledger(
    conn: AsyncConnection, group: str
) -> list[tuple[str, int, str | None, str | None]]:
    """(kind, amount, job id, entry key) of the group's entries, oldest first."""
    rows = await conn.execute(
        text(
            "SELECT kind, amount, job_id, entry_key FROM credit_ledger"
            " WHERE account_group_id = :g ORDER BY id"
        ),
        {"g": group},
    )
    return [(r.kind, r.amount, r.job_id, r.entry_key) for r in rows]


async def ledger_sums(conn: AsyncConnection, group: str) -> dict[str, int]:
    rows = await conn.execute(
        text(
            "SELECT kind, sum(amount) AS total FROM credit_ledger"
            " WHERE account_group_id = :g GROUP BY kind"
        ),
        {"g": group},
    )
    return {r.kind: int(r.total) for r in rows}


async def open_reservations(conn: AsyncConnection, group: str) -> int:
    """Per job: reserved - charged - released, summed (from the ledger alone)."""
    value = await conn.scalar(
        text(
            "SELECT coalesce(sum(CASE kind WHEN 'reserve' THEN amount ELSE -amount END), 0)"
            " FROM credit_ledger WHERE account_group_id = :g AND job_id IS NOT NULL"
        ),
        {"g": group},
    )
    return int(value)


def job() -> str:
    return new_id()
