"""initial schema

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-26 21:09:51.092773
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "account_groups",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("id ~ '^[0-9a-f]{24}$'", name=op.f("ck_account_groups_id_format")),
        sa.CheckConstraint(
            "length(name) BETWEEN 1 AND 200", name=op.f("ck_account_groups_name_length")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_groups")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("key_hash", sa.LargeBinary(), nullable=False),
        sa.Column("permissions", sa.ARRAY(sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("id ~ '^[0-9a-f]{24}$'", name=op.f("ck_api_keys_id_format")),
        sa.CheckConstraint("octet_length(key_hash) = 32", name=op.f("ck_api_keys_key_hash_length")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_table(
        "persons",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("public_identifier", sa.Text(), nullable=True),
        sa.Column("linkedin_url", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("id ~ '^[0-9a-f]{24}$'", name=op.f("ck_persons_id_format")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_persons")),
        sa.UniqueConstraint("linkedin_url", name=op.f("uq_persons_linkedin_url")),
        sa.UniqueConstraint("public_identifier", name=op.f("uq_persons_public_identifier")),
    )
    op.create_table(
        "api_key_grants",
        sa.Column("account_group_id", sa.Text(), nullable=False),
        sa.Column("api_key_id", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_group_id"],
            ["account_groups.id"],
            name=op.f("fk_api_key_grants_account_group_id_account_groups"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_api_key_grants_api_key_id_api_keys"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_group_id", "api_key_id", name=op.f("pk_api_key_grants")),
    )
    op.create_index("ix_api_key_grants_api_key_id", "api_key_grants", ["api_key_id"], unique=False)
    op.create_table(
        "prospects",
        sa.Column("account_group_id", sa.Text(), nullable=False),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("person_id", sa.Text(), nullable=False),
        sa.Column("provider_id", sa.Text(), nullable=False),
        sa.Column("public_identifier", sa.Text(), nullable=True),
        sa.Column("linkedin_url", sa.Text(), nullable=True),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("company_name", sa.Text(), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("id ~ '^[0-9a-f]{24}$'", name=op.f("ck_prospects_id_format")),
        sa.CheckConstraint(
            "length(provider_id) BETWEEN 1 AND 256", name=op.f("ck_prospects_provider_id_length")
        ),
        sa.ForeignKeyConstraint(
            ["account_group_id"],
            ["account_groups.id"],
            name=op.f("fk_prospects_account_group_id_account_groups"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_prospects_person_id_persons")
        ),
        sa.PrimaryKeyConstraint("account_group_id", "id", name=op.f("pk_prospects")),
    )
    op.create_index(
        "uq_prospects_account_group_id_provider_id_person_id",
        "prospects",
        ["account_group_id", "provider_id", "person_id"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("uq_prospects_account_group_id_provider_id_person_id", table_name="prospects")
    op.drop_table("prospects")
    op.drop_index("ix_api_key_grants_api_key_id", table_name="api_key_grants")
    op.drop_table("api_key_grants")
    op.drop_table("persons")
    op.drop_table("api_keys")
    op.drop_table("account_groups")
