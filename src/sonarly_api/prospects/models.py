"""Person and prospect tables.

A person is an identity shared across account groups (`personId`); a prospect is that
person's record inside one account group, carrying the metadata that group imported.
Keeping the metadata on the prospect keeps every group's data its own and lets the
lookup read a single table through a single index.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Index,
    Text,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from sonarly_api.db import Base, KeyText


class Person(Base):
    __tablename__ = "persons"
    __table_args__ = (CheckConstraint("id ~ '^[0-9a-f]{24}$'", name="id_format"),)

    id: Mapped[str] = mapped_column(KeyText, primary_key=True)
    # The identity a person was first known by; unique so imports resolve to one person.
    public_identifier: Mapped[str | None] = mapped_column(KeyText, unique=True)
    linkedin_url: Mapped[str | None] = mapped_column(KeyText, unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Prospect(Base):
    __tablename__ = "prospects"
    __table_args__ = (
        CheckConstraint("id ~ '^[0-9a-f]{24}$'", name="id_format"),
        CheckConstraint("length(provider_id) BETWEEN 1 AND 256", name="provider_id_length"),
        # Serves the lookup (prefix account_group_id, provider_id) and makes one
        # (group, provider id, person) one prospect, which is what import upserts on.
        Index(
            "uq_prospects_account_group_id_provider_id_person_id",
            "account_group_id",
            "provider_id",
            "person_id",
            unique=True,
        ),
    )

    # References to account_groups (ON DELETE CASCADE) and persons: enforced by statement-
    # level triggers, not foreign keys, so that a bulk import is checked once per statement
    # rather than once per row (see alembic revisions 0002_set_based_references and
    # 0003_reference_checks_scan).
    account_group_id: Mapped[str] = mapped_column(KeyText, primary_key=True)
    id: Mapped[str] = mapped_column(KeyText, primary_key=True)
    person_id: Mapped[str] = mapped_column(KeyText)
    provider_id: Mapped[str] = mapped_column(KeyText)
    public_identifier: Mapped[str | None] = mapped_column(KeyText)
    linkedin_url: Mapped[str | None] = mapped_column(KeyText)
    name: Mapped[str | None] = mapped_column(Text)
    company_name: Mapped[str | None] = mapped_column(Text)
    title: Mapped[str | None] = mapped_column(Text)
    # Filled by a prospecting job's enrichment with searchEmails; the lookup does not return it.
    work_email: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
