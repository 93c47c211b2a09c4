"""SQL of credits. Every query takes the account group id."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from sonarly_api.accounts.models import AccountGroup
from sonarly_api.credits.models import CreditBalance, CreditLedgerEntry


@dataclass(frozen=True)
class BalanceRow:
    balance: int
    reserved: int


@dataclass(frozen=True)
class EntryRow:
    kind: str
    amount: int
    job_id: str | None
    note: str | None
    created_at: datetime


@dataclass(frozen=True)
class JobTotals:
    reserved: int
    charged: int
    released: int

    @property
    def remaining(self) -> int:
        """What is left of the job's reservation."""
        return self.reserved - self.charged - self.released


async def lock_balance(conn: AsyncConnection, account_group_id: str) -> BalanceRow | None:
    """The group's balance row, locked FOR UPDATE until the caller's transaction ends (the
    per-group lock of every credit operation); None if the group does not exist."""
    stmt = (
        select(CreditBalance.balance, CreditBalance.reserved)
        .where(CreditBalance.account_group_id == account_group_id)
        .with_for_update()
    )
    row = (await conn.execute(stmt)).one_or_none()
    if row is None:
        # A group that predates its balance row (none should: migration 0004 and `create`
        # add one). Concurrent callers both get here: ON CONFLICT makes one insert win and the
        # other wait for it, then both lock the same row.
        await conn.execute(
            pg_insert(CreditBalance)
            .from_select(
                ["account_group_id"],
                select(AccountGroup.id).where(AccountGroup.id == account_group_id),
            )
            .on_conflict_do_nothing()
        )
        row = (await conn.execute(stmt)).one_or_none()
    return None if row is None else BalanceRow(balance=row.balance, reserved=row.reserved)


async def read_balance(conn: AsyncConnection, account_group_id: str) -> BalanceRow | None:
    """The group's balance without locking it; None if the group does not exist."""
    row = (
        await conn.execute(
            select(
                func.coalesce(CreditBalance.balance, 0),
                func.coalesce(CreditBalance.reserved, 0),
            )
            .select_from(AccountGroup)
            .outerjoin(CreditBalance, CreditBalance.account_group_id == AccountGroup.id)
            .where(AccountGroup.id == account_group_id)
        )
    ).one_or_none()
    return None if row is None else BalanceRow(balance=row[0], reserved=row[1])


async def insert_balance(conn: AsyncConnection, account_group_id: str) -> None:
    await conn.execute(insert(CreditBalance).values(account_group_id=account_group_id))


async def move(
    conn: AsyncConnection, account_group_id: str, *, balance: int = 0, reserved: int = 0
) -> None:
    """Add `balance` and `reserved` (either may be negative) to the group's totals."""
    await conn.execute(
        update(CreditBalance)
        .where(CreditBalance.account_group_id == account_group_id)
        .values(
            balance=CreditBalance.balance + balance,
            reserved=CreditBalance.reserved + reserved,
            updated_at=func.now(),
        )
    )


async def append(
    conn: AsyncConnection,
    account_group_id: str,
    kind: str,
    amount: int,
    *,
    job_id: str | None = None,
    entry_key: str | None = None,
    note: str | None = None,
) -> None:
    await conn.execute(
        insert(CreditLedgerEntry).values(
            account_group_id=account_group_id,
            kind=kind,
            amount=amount,
            job_id=job_id,
            entry_key=entry_key,
            note=note,
        )
    )


async def entry_exists(conn: AsyncConnection, account_group_id: str, entry_key: str) -> bool:
    found = await conn.scalar(
        select(literal(True))
        .where(
            CreditLedgerEntry.account_group_id == account_group_id,
            CreditLedgerEntry.entry_key == entry_key,
        )
        .limit(1)
    )
    return bool(found)


async def job_totals(conn: AsyncConnection, account_group_id: str, job_id: str) -> JobTotals:
    rows = await conn.execute(
        select(CreditLedgerEntry.kind, func.sum(CreditLedgerEntry.amount))
        .where(
            CreditLedgerEntry.account_group_id == account_group_id,
            CreditLedgerEntry.job_id == job_id,
        )
        .group_by(CreditLedgerEntry.kind)
    )
    sums = {kind: int(total) for kind, total in rows}
    return JobTotals(
        reserved=sums.get("reserve", 0),
        charged=sums.get("charge", 0),
        released=sums.get("release", 0),
    )


async def recent_entries(
    conn: AsyncConnection, account_group_id: str, limit: int
) -> list[EntryRow]:
    """The group's last `limit` ledger entries, newest first."""
    rows = await conn.execute(
        select(
            CreditLedgerEntry.kind,
            CreditLedgerEntry.amount,
            CreditLedgerEntry.job_id,
            CreditLedgerEntry.note,
            CreditLedgerEntry.created_at,
        )
        .where(CreditLedgerEntry.account_group_id == account_group_id)
        .order_by(CreditLedgerEntry.id.desc())
        .limit(limit)
    )
    return [EntryRow(*r) for r in rows]
