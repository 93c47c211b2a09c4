"""prospecting_job_prospects: what enrichment asks the provider about, kept with the job

Revision ID: 0009_job_prospects_inputs
Revises: 0008_job_queue
Create Date: 2026-12-04 17:00:00

The enrichment stage walked the job's prospect ids and read each prospect back for its provider
id and public identifier. For a group the planner believes tiny (a new one, which the job is
filling) that read went through the group-wide index and read the whole group for every id:
quadratic in the job's size. The job's rows now carry the two values themselves, so the stage
reads the job's own rows and nothing else. Rows written before this revision get them from
their prospects.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_job_prospects_inputs"
down_revision: str | None = "0008_job_queue"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("prospecting_job_prospects", sa.Column("provider_id", sa.Text(), nullable=True))
    op.add_column(
        "prospecting_job_prospects", sa.Column("public_identifier", sa.Text(), nullable=True)
    )
    op.execute(
        """
        UPDATE prospecting_job_prospects j
        SET provider_id = p.provider_id, public_identifier = p.public_identifier
        FROM prospects p
        WHERE p.account_group_id = j.account_group_id AND p.id = j.prospect_id
        """
    )
    # A job's row whose prospect is gone (deleted since) has nothing left to enrich.
    op.execute("DELETE FROM prospecting_job_prospects WHERE provider_id IS NULL")
    op.alter_column("prospecting_job_prospects", "provider_id", nullable=False)


def downgrade() -> None:
    op.drop_column("prospecting_job_prospects", "public_identifier")
    op.drop_column("prospecting_job_prospects", "provider_id")
