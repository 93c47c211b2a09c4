"""Prospecting job tables.

The `prospecting_jobs` row is the source of truth of a job: the HTTP side creates and
cancels it, workers move it through its states and record where to resume after a crash.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from sonarly_api.db import Base, KeyText

JOB_STATUSES = ("queued", "running", "completed", "failed", "cancelled")
_STATUS_LIST = ", ".join(f"'{s}'" for s in JOB_STATUSES)


class ProspectingJob(Base):
    __tablename__ = "prospecting_jobs"
    __table_args__ = (
        CheckConstraint("id ~ '^[0-9a-f]{24}$'", name="id_format"),
        CheckConstraint(f"status IN ({_STATUS_LIST})", name="status_valid"),
        CheckConstraint(f"import_status IN ({_STATUS_LIST})", name="import_status_valid"),
        CheckConstraint(f"enrichment_status IN ({_STATUS_LIST})", name="enrichment_status_valid"),
        CheckConstraint("import_progress BETWEEN 0 AND 1", name="import_progress_range"),
        CheckConstraint("enrichment_progress BETWEEN 0 AND 1", name="enrichment_progress_range"),
        CheckConstraint("max_results >= 1", name="max_results_positive"),
        CheckConstraint(
            "credits_reserved >= 0 AND credits_charged BETWEEN 0 AND credits_reserved",
            name="credits_range",
        ),
        # The list endpoint's keyset order: newest first, id breaking ties.
        Index(
            "ix_prospecting_jobs_account_group_id_created_at_id",
            "account_group_id",
            text("created_at DESC"),
            text("id DESC"),
        ),
        # Workers and the reconcile loop only ever look for unfinished jobs.
        Index(
            "ix_prospecting_jobs_active",
            "status",
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
    )

    id: Mapped[str] = mapped_column(KeyText, primary_key=True)
    account_group_id: Mapped[str] = mapped_column(
        KeyText, ForeignKey("account_groups.id", ondelete="CASCADE")
    )
    # Which key started it (scopes idempotency); kept as NULL once that key is deleted.
    api_key_id: Mapped[str | None] = mapped_column(
        KeyText, ForeignKey("api_keys.id", ondelete="SET NULL")
    )
    status: Mapped[str] = mapped_column(KeyText, server_default=text("'queued'"))
    source: Mapped[dict[str, Any]] = mapped_column(JSONB)
    max_results: Mapped[int] = mapped_column(Integer)
    search_emails: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    import_status: Mapped[str] = mapped_column(KeyText, server_default=text("'queued'"))
    import_progress: Mapped[float] = mapped_column(Double, server_default=text("0"))
    enrichment_status: Mapped[str] = mapped_column(KeyText, server_default=text("'queued'"))
    enrichment_progress: Mapped[float] = mapped_column(Double, server_default=text("0"))
    found: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    created: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    updated: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    unchanged: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    failed: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    credits_reserved: Mapped[int] = mapped_column(Integer)
    credits_charged: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    error_code: Mapped[str | None] = mapped_column(KeyText)
    error_message: Mapped[str | None] = mapped_column(Text)
    # The worker's resume point: the provider cursor after the last committed page.
    resume_cursor: Mapped[str | None] = mapped_column(KeyText)
    pages_done: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))


class ProspectingJobProspect(Base):
    """Which prospects a job wrote: the enrichment stage walks them."""

    __tablename__ = "prospecting_job_prospects"

    job_id: Mapped[str] = mapped_column(
        KeyText, ForeignKey("prospecting_jobs.id", ondelete="CASCADE"), primary_key=True
    )
    account_group_id: Mapped[str] = mapped_column(KeyText)
    prospect_id: Mapped[str] = mapped_column(KeyText, primary_key=True)
    # What enrichment asks the provider about, so that it never reads the prospects back.
    provider_id: Mapped[str] = mapped_column(KeyText)
    public_identifier: Mapped[str | None] = mapped_column(KeyText)


class ProspectingIdempotencyKey(Base):
    """An Idempotency-Key of a start request, scoped to (API key, account group)."""

    __tablename__ = "prospecting_idempotency_keys"
    __table_args__ = (
        CheckConstraint("octet_length(request_hash) = 32", name="request_hash_length"),
        # Serves the cascade from a deleted job.
        Index("ix_prospecting_idempotency_keys_job_id", "job_id"),
    )

    api_key_id: Mapped[str] = mapped_column(
        KeyText, ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True
    )
    account_group_id: Mapped[str] = mapped_column(
        KeyText, ForeignKey("account_groups.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(KeyText, primary_key=True)
    # SHA-256 of the canonical request (source, maxResults, searchEmails as validated).
    request_hash: Mapped[bytes] = mapped_column(LargeBinary)
    job_id: Mapped[str] = mapped_column(
        KeyText, ForeignKey("prospecting_jobs.id", ondelete="CASCADE")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
