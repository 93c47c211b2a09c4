"""Credit tables: one balance row per account group, and the append-only ledger that moves it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Text,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from sonarly_api.db import Base, KeyText

LEDGER_KINDS = ("grant", "reserve", "charge", "release")


class CreditBalance(Base):
    """The running totals of a group's ledger. Every ledger entry updates this row in the same
    transaction, under its row lock, so it is also the per-group lock of credit operations."""

    __tablename__ = "credit_balances"
    __table_args__ = (
        CheckConstraint("balance >= 0", name="balance_not_negative"),
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
        CheckConstraint("reserved <= balance", name="reserved_within_balance"),
    )

    account_group_id: Mapped[str] = mapped_column(
        KeyText, ForeignKey("account_groups.id", ondelete="CASCADE"), primary_key=True
    )
    balance: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    reserved: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CreditLedgerEntry(Base):
    __tablename__ = "credit_ledger"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('grant', 'reserve', 'charge', 'release')",
            name="kind_known",
        ),
        CheckConstraint("amount > 0", name="amount_positive"),
        # `show` (newest first) and the sums of one job's entries.
        Index("ix_credit_ledger_account_group_id_id", "account_group_id", "id"),
        Index(
            "ix_credit_ledger_account_group_id_job_id",
            "account_group_id",
            "job_id",
            postgresql_where=text("job_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    account_group_id: Mapped[str] = mapped_column(
        KeyText, ForeignKey("account_groups.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(KeyText)
    amount: Mapped[int] = mapped_column(BigInteger)
    # No foreign key: the jobs table comes in a later revision.
    job_id: Mapped[str | None] = mapped_column(KeyText)
    # Makes an operation idempotent: a replay finds its key taken and changes nothing.
    entry_key: Mapped[str | None] = mapped_column(KeyText, unique=True)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
