"""identifier columns compared byte by byte (COLLATE "C"), whatever the database's collation

Revision ID: 0010_identifiers_collate_c
Revises: 0009_job_prospects_inputs
Create Date: 2026-12-04 17:20:00

Ids, provider ids, public identifiers, profile URLs, keys and statuses took the collation of the
database they were created in: on a server initialised with a libc or ICU locale (C.UTF-8 on
Debian, en_US.utf8 in the official image) every comparison in their indexes went through
strcoll, 15% of a million-row import, for an order these values never needed (the embedded
server, initialised without a locale, compared them byte by byte already). Human text (names,
titles, notes, error messages) keeps the database's collation.

Changing a column's collation keeps its data and rebuilds its indexes; the foreign keys between
changed columns are dropped first and made again once both sides agree.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_identifiers_collate_c"
down_revision: str | None = "0009_job_prospects_inputs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS: dict[str, tuple[str, ...]] = {
    "account_groups": ("id", "plan"),
    "api_keys": ("id",),
    "persons": ("id", "public_identifier", "linkedin_url"),
    "prospects": (
        "account_group_id", "id", "person_id", "provider_id", "public_identifier", "linkedin_url",
    ),
    "api_key_grants": ("account_group_id", "api_key_id"),
    "credit_balances": ("account_group_id",),
    "credit_ledger": ("account_group_id", "kind", "job_id", "entry_key"),
    "linkedin_connections": ("account_group_id", "provider_account_id"),
    "prospecting_jobs": (
        "id", "account_group_id", "api_key_id", "status", "import_status", "enrichment_status",
        "error_code", "resume_cursor",
    ),
    "prospecting_idempotency_keys": ("api_key_id", "account_group_id", "key", "job_id"),
    "prospecting_job_prospects": (
        "job_id", "account_group_id", "prospect_id", "provider_id", "public_identifier",
    ),
}  # fmt: skip


def _collate(collation: str) -> None:
    # The foreign keys among these tables, saved and dropped while their two sides differ.
    bind = op.get_bind()
    tables = list(COLUMNS)
    foreign_keys = bind.execute(
        sa.text(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)"
            " FROM pg_constraint WHERE contype = 'f' AND conrelid::regclass::text = ANY(:t)"
            " ORDER BY conname"
        ),
        {"t": tables},
    ).all()
    for table, name, _ in foreign_keys:
        op.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for table, columns in COLUMNS.items():
        changes = ", ".join(
            f'ALTER COLUMN {column} TYPE text COLLATE "{collation}"' for column in columns
        )
        op.execute(f"ALTER TABLE {table} {changes}")
    for table, name, definition in foreign_keys:
        op.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')


def upgrade() -> None:
    _collate("C")


def downgrade() -> None:
    _collate("default")
