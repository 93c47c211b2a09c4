"""API key tables. A key is stored only as its HMAC; grants tie it to account groups."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    ARRAY,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    Text,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from sonarly_api.db import Base, KeyText


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("id ~ '^[0-9a-f]{24}$'", name="id_format"),
        CheckConstraint("octet_length(key_hash) = 32", name="key_hash_length"),
    )

    id: Mapped[str] = mapped_column(KeyText, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    # HMAC-SHA256(pepper, key): the key itself is never stored.
    key_hash: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    permissions: Mapped[list[str]] = mapped_column(ARRAY(Text))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ApiKeyGrant(Base):
    """Which account groups a key may use (account group first, like every tenant key)."""

    __tablename__ = "api_key_grants"
    __table_args__ = (Index("ix_api_key_grants_api_key_id", "api_key_id"),)

    account_group_id: Mapped[str] = mapped_column(
        KeyText, ForeignKey("account_groups.id", ondelete="CASCADE"), primary_key=True
    )
    api_key_id: Mapped[str] = mapped_column(
        KeyText, ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True
    )
