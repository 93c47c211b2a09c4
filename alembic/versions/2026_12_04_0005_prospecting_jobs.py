"""prospecting jobs: the job table, the prospects a job wrote, idempotency keys, work emails

Revision ID: 0005_prospecting_jobs
Revises: 0004_plans_and_credits
Create Date: 2026-12-04 13:45:00

Why: `POST /v1/accounts/{id}/prospecting` starts an asynchronous job whose row is the
source of truth (status, stages, counts, credits, the worker's resume point). An
Idempotency-Key is unique per (API key, account group) so that concurrent starts with
one key insert one job in the same transaction. `prospects.work_email` holds what the
enrichment stage finds with `searchEmails`.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005_prospecting_jobs"
down_revision: str | None = "0004_plans_and_credits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUSES = "'queued', 'running', 'completed', 'failed', 'cancelled'"


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.add_column("prospects", sa.Column("work_email", sa.Text(), nullable=True))
    op.create_table(
        "prospecting_jobs",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("account_group_id", sa.Text(), nullable=False),
        sa.Column("api_key_id", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), server_default=sa.text("'queued'"), nullable=False),
        sa.Column("source", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("max_results", sa.Integer(), nullable=False),
        sa.Column("search_emails", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("import_status", sa.Text(), server_default=sa.text("'queued'"), nullable=False),
        sa.Column("import_progress", sa.Double(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "enrichment_status", sa.Text(), server_default=sa.text("'queued'"), nullable=False
        ),
        sa.Column("enrichment_progress", sa.Double(), server_default=sa.text("0"), nullable=False),
        sa.Column("found", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("updated", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("unchanged", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("failed", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("credits_reserved", sa.Integer(), nullable=False),
        sa.Column("credits_charged", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("error_code", sa.Text(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("resume_cursor", sa.Text(), nullable=True),
        sa.Column("pages_done", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.CheckConstraint("id ~ '^[0-9a-f]{24}$'", name=op.f("ck_prospecting_jobs_id_format")),
        sa.CheckConstraint(
            f"status IN ({_STATUSES})", name=op.f("ck_prospecting_jobs_status_valid")
        ),
        sa.CheckConstraint(
            f"import_status IN ({_STATUSES})", name=op.f("ck_prospecting_jobs_import_status_valid")
        ),
        sa.CheckConstraint(
            f"enrichment_status IN ({_STATUSES})",
            name=op.f("ck_prospecting_jobs_enrichment_status_valid"),
        ),
        sa.CheckConstraint(
            "import_progress BETWEEN 0 AND 1",
            name=op.f("ck_prospecting_jobs_import_progress_range"),
        ),
        sa.CheckConstraint(
            "enrichment_progress BETWEEN 0 AND 1",
            name=op.f("ck_prospecting_jobs_enrichment_progress_range"),
        ),
        sa.CheckConstraint(
            "max_results >= 1", name=op.f("ck_prospecting_jobs_max_results_positive")
        ),
        sa.CheckConstraint(
            "credits_reserved >= 0 AND credits_charged BETWEEN 0 AND credits_reserved",
            name=op.f("ck_prospecting_jobs_credits_range"),
        ),
        sa.ForeignKeyConstraint(
            ["account_group_id"],
            ["account_groups.id"],
            name=op.f("fk_prospecting_jobs_account_group_id_account_groups"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_prospecting_jobs_api_key_id_api_keys"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prospecting_jobs")),
    )
    op.create_index(
        "ix_prospecting_jobs_account_group_id_created_at_id",
        "prospecting_jobs",
        ["account_group_id", sa.text("created_at DESC"), sa.text("id DESC")],
        unique=False,
    )
    op.create_index(
        "ix_prospecting_jobs_active",
        "prospecting_jobs",
        ["status"],
        unique=False,
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )
    op.create_table(
        "prospecting_job_prospects",
        sa.Column("job_id", sa.Text(), nullable=False),
        sa.Column("account_group_id", sa.Text(), nullable=False),
        sa.Column("prospect_id", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["prospecting_jobs.id"],
            name=op.f("fk_prospecting_job_prospects_job_id_prospecting_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", "prospect_id", name=op.f("pk_prospecting_job_prospects")),
    )
    op.create_table(
        "prospecting_idempotency_keys",
        sa.Column("api_key_id", sa.Text(), nullable=False),
        sa.Column("account_group_id", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("request_hash", sa.LargeBinary(), nullable=False),
        sa.Column("job_id", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.CheckConstraint(
            "octet_length(request_hash) = 32",
            name=op.f("ck_prospecting_idempotency_keys_request_hash_length"),
        ),
        sa.ForeignKeyConstraint(
            ["account_group_id"],
            ["account_groups.id"],
            name=op.f("fk_prospecting_idempotency_keys_account_group_id_account_groups"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_prospecting_idempotency_keys_api_key_id_api_keys"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["prospecting_jobs.id"],
            name=op.f("fk_prospecting_idempotency_keys_job_id_prospecting_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "api_key_id", "account_group_id", "key", name=op.f("pk_prospecting_idempotency_keys")
        ),
    )
    op.create_index(
        "ix_prospecting_idempotency_keys_job_id",
        "prospecting_idempotency_keys",
        ["job_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        "ix_prospecting_idempotency_keys_job_id", table_name="prospecting_idempotency_keys"
    )
    op.drop_table("prospecting_idempotency_keys")
    op.drop_table("prospecting_job_prospects")
    op.drop_index("ix_prospecting_jobs_active", table_name="prospecting_jobs")
    op.drop_index(
        "ix_prospecting_jobs_account_group_id_created_at_id", table_name="prospecting_jobs"
    )
    op.drop_table("prospecting_jobs")
    op.drop_column("prospects", "work_email")
