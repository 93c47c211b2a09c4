"""linkedin_connections: the provider account an account group reads LinkedIn through."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, func
from sqlalchemy.orm import Mapped, mapped_column

from sonarly_api.db import Base, KeyText


class LinkedInConnection(Base):
    """One per account group (the primary key). A provider account serves one group at most
    (unique): two groups sharing one would read each other's lead lists and saved searches."""

    __tablename__ = "linkedin_connections"
    __table_args__ = (
        CheckConstraint(
            "length(provider_account_id) BETWEEN 1 AND 256", name="provider_account_id_length"
        ),
    )

    account_group_id: Mapped[str] = mapped_column(
        KeyText, ForeignKey("account_groups.id", ondelete="CASCADE"), primary_key=True
    )
    provider_account_id: Mapped[str] = mapped_column(KeyText, unique=True)
    connected_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
