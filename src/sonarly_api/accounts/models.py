"""Account group table."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from sonarly_api.db import Base, KeyText


class AccountGroup(Base):
    __tablename__ = "account_groups"
    __table_args__ = (
        CheckConstraint("id ~ '^[0-9a-f]{24}$'", name="id_format"),
        CheckConstraint("length(name) BETWEEN 1 AND 200", name="name_length"),
        CheckConstraint("plan IN ('tester', 'starter', 'scale', 'enterprise')", name="plan_known"),
    )

    id: Mapped[str] = mapped_column(KeyText, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    # A sonarly_api.credits.plans.Plan word.
    plan: Mapped[str] = mapped_column(KeyText, server_default=text("'starter'"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
