"""linkedin_connections: the provider account each account group reads LinkedIn through

Revision ID: 0007_linkedin_connections
Revises: 0006_tenant_guards
Create Date: 2026-12-04 13:50:00

One row per account group (primary key), written by `sonarly-api linkedin connect`; a provider
account serves one group at most (unique), so no group reads another's lead lists. Deleting the
group deletes its connection.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_linkedin_connections"
down_revision: str | None = "0006_tenant_guards"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "linkedin_connections",
        sa.Column("account_group_id", sa.Text(), nullable=False),
        sa.Column("provider_account_id", sa.Text(), nullable=False),
        sa.Column(
            "connected_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "length(provider_account_id) BETWEEN 1 AND 256",
            name=op.f("ck_linkedin_connections_provider_account_id_length"),
        ),
        sa.ForeignKeyConstraint(
            ["account_group_id"],
            ["account_groups.id"],
            name=op.f("fk_linkedin_connections_account_group_id_account_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_group_id", name=op.f("pk_linkedin_connections")),
        sa.UniqueConstraint(
            "provider_account_id", name=op.f("uq_linkedin_connections_provider_account_id")
        ),
    )


def downgrade() -> None:
    op.drop_table("linkedin_connections")
