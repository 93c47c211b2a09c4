"""plans and credits: account_groups.plan, credit_balances, credit_ledger

Revision ID: 0004_plans_and_credits
Revises: 0003_reference_checks_scan
Create Date: 2026-12-04 13:45:00

Every account group gets a plan (existing ones: starter) and a balance row (existing ones:
zero), so credit operations always find the row they lock.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_plans_and_credits"
down_revision: str | None = "0003_reference_checks_scan"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "account_groups",
        sa.Column("plan", sa.Text(), server_default=sa.text("'starter'"), nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_account_groups_plan_known"),
        "account_groups",
        "plan IN ('tester', 'starter', 'scale', 'enterprise')",
    )
    op.create_table(
        "credit_balances",
        sa.Column("account_group_id", sa.Text(), nullable=False),
        sa.Column("balance", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("reserved", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("balance >= 0", name=op.f("ck_credit_balances_balance_not_negative")),
        sa.CheckConstraint("reserved >= 0", name=op.f("ck_credit_balances_reserved_not_negative")),
        sa.CheckConstraint(
            "reserved <= balance", name=op.f("ck_credit_balances_reserved_within_balance")
        ),
        sa.ForeignKeyConstraint(
            ["account_group_id"],
            ["account_groups.id"],
            name=op.f("fk_credit_balances_account_group_id_account_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_group_id", name=op.f("pk_credit_balances")),
    )
    op.create_table(
        "credit_ledger",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("account_group_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("job_id", sa.Text(), nullable=True),
        sa.Column("entry_key", sa.Text(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "kind IN ('grant', 'reserve', 'charge', 'release')",
            name=op.f("ck_credit_ledger_kind_known"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_credit_ledger_amount_positive")),
        sa.ForeignKeyConstraint(
            ["account_group_id"],
            ["account_groups.id"],
            name=op.f("fk_credit_ledger_account_group_id_account_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_ledger")),
        sa.UniqueConstraint("entry_key", name=op.f("uq_credit_ledger_entry_key")),
    )
    op.create_index(
        "ix_credit_ledger_account_group_id_id", "credit_ledger", ["account_group_id", "id"]
    )
    op.create_index(
        "ix_credit_ledger_account_group_id_job_id",
        "credit_ledger",
        ["account_group_id", "job_id"],
        postgresql_where=sa.text("job_id IS NOT NULL"),
    )
    op.execute("INSERT INTO credit_balances (account_group_id) SELECT id FROM account_groups")


def downgrade() -> None:
    op.drop_index("ix_credit_ledger_account_group_id_job_id", table_name="credit_ledger")
    op.drop_index("ix_credit_ledger_account_group_id_id", table_name="credit_ledger")
    op.drop_table("credit_ledger")
    op.drop_table("credit_balances")
    op.drop_constraint(op.f("ck_account_groups_plan_known"), "account_groups", type_="check")
    op.drop_column("account_groups", "plan")
