"""Credit operations. The rules live here; the CLI and the API call the same functions.

Every function runs on the caller's connection, inside the caller's transaction: it never
commits or opens one, so a job's row and its credits move together or not at all. Each one
that writes first locks the group's balance row (SELECT ... FOR UPDATE), which serialises the
operations of one group and nothing else. The ledger is append-only; the balance row holds
its running totals, and its CHECKs keep the balance and the reservations from going below zero
even should a bug get past the checks here.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from sonarly_api.credits import repository
from sonarly_api.credits.repository import BalanceRow
from sonarly_api.credits.schemas import CreditsView, LedgerEntryView
from sonarly_api.errors import AppError, NotFound
from sonarly_api.timestamps import iso_millis


class InsufficientCredits(AppError):
    status = 402
    code = "INSUFFICIENT_CREDITS"
    message = "Not enough credits."

    def __init__(self, required: int, available: int) -> None:
        super().__init__(f"requires {required} credits, {available} available")
        self.required = required
        self.available = available


class UnknownAccountGroup(NotFound):
    def __init__(self, account_group_id: str) -> None:
        super().__init__(f"no account group {account_group_id}")
        self.account_group_id = account_group_id


def reserve_key(job_id: str) -> str:
    return f"{job_id}:reserve"


def release_key(job_id: str) -> str:
    return f"{job_id}:release"


async def _locked(conn: AsyncConnection, account_group_id: str) -> BalanceRow:
    balance = await repository.lock_balance(conn, account_group_id)
    if balance is None:
        raise UnknownAccountGroup(account_group_id)
    return balance


def _positive(amount: int, what: str) -> None:
    # Amounts come from code, never straight from a client: a bad one is a bug.
    if amount <= 0:
        raise ValueError(f"{what} must be a positive number of credits, not {amount}")


async def grant(
    conn: AsyncConnection,
    account_group_id: str,
    amount: int,
    note: str | None = None,
    *,
    entry_key: str | None = None,
) -> None:
    """Add `amount` credits to the group's balance. With `entry_key`, a second grant under
    the same key changes nothing."""
    _positive(amount, "a grant")
    await _locked(conn, account_group_id)
    if entry_key is not None and await repository.entry_exists(conn, account_group_id, entry_key):
        return
    await repository.append(conn, account_group_id, "grant", amount, entry_key=entry_key, note=note)
    await repository.move(conn, account_group_id, balance=amount)


async def reserve(conn: AsyncConnection, account_group_id: str, job_id: str, amount: int) -> None:
    """Set `amount` credits aside for a job; InsufficientCredits when the available credits
    (balance - reserved) do not cover it. A job reserves once: a second call is a no-op."""
    _positive(amount, "a reservation")
    balance = await _locked(conn, account_group_id)
    key = reserve_key(job_id)
    if await repository.entry_exists(conn, account_group_id, key):
        return
    available = balance.balance - balance.reserved
    if available < amount:
        raise InsufficientCredits(required=amount, available=available)
    await repository.append(conn, account_group_id, "reserve", amount, job_id=job_id, entry_key=key)
    await repository.move(conn, account_group_id, reserved=amount)


async def charge(
    conn: AsyncConnection, account_group_id: str, job_id: str, entry_key: str, amount: int
) -> bool:
    """Spend `amount` of the job's reservation (balance and reserved both go down). Returns
    False, changing nothing, when `entry_key` was charged already (a replayed page)."""
    if amount < 0:
        raise ValueError(f"a charge cannot be negative ({amount})")
    if amount == 0:
        return True
    await _locked(conn, account_group_id)
    if await repository.entry_exists(conn, account_group_id, entry_key):
        return False
    remaining = (await repository.job_totals(conn, account_group_id, job_id)).remaining
    if amount > remaining:
        raise ValueError(
            f"charge of {amount} credits exceeds job {job_id}'s remaining reservation "
            f"of {remaining}"
        )
    await repository.append(
        conn, account_group_id, "charge", amount, job_id=job_id, entry_key=entry_key
    )
    await repository.move(conn, account_group_id, balance=-amount, reserved=-amount)
    return True


async def release(conn: AsyncConnection, account_group_id: str, job_id: str) -> int:
    """Give back what is left of the job's reservation; returns that amount (0 on a second
    call, or when nothing is left)."""
    await _locked(conn, account_group_id)
    key = release_key(job_id)
    if await repository.entry_exists(conn, account_group_id, key):
        return 0
    remaining = (await repository.job_totals(conn, account_group_id, job_id)).remaining
    if remaining <= 0:
        return 0
    await repository.append(
        conn, account_group_id, "release", remaining, job_id=job_id, entry_key=key
    )
    await repository.move(conn, account_group_id, reserved=-remaining)
    return remaining


async def job_credits(conn: AsyncConnection, account_group_id: str, job_id: str) -> tuple[int, int]:
    """(what the job reserved at start, what it has been charged so far)."""
    totals = await repository.job_totals(conn, account_group_id, job_id)
    return totals.reserved, totals.charged


async def show(conn: AsyncConnection, account_group_id: str, limit: int = 20) -> CreditsView:
    """The group's balance, reservations, available credits and last `limit` entries."""
    balance = await repository.read_balance(conn, account_group_id)
    if balance is None:
        raise UnknownAccountGroup(account_group_id)
    entries = await repository.recent_entries(conn, account_group_id, limit)
    return CreditsView(
        balance=balance.balance,
        reserved=balance.reserved,
        available=balance.balance - balance.reserved,
        entries=[
            LedgerEntryView(
                kind=e.kind,
                amount=e.amount,
                job_id=e.job_id,
                note=e.note,
                created_at=iso_millis(e.created_at),
            )
            for e in entries
        ],
    )
