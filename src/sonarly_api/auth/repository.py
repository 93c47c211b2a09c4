"""SQL for API keys and their grants."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from sonarly_api.auth.models import ApiKey, ApiKeyGrant
from sonarly_api.auth.principal import Principal
from sonarly_api.ids import new_id
from sonarly_api.timestamps import utcnow

# The key's account groups as one array column (NULL when it has none).
_grants = (
    select(func.array_agg(ApiKeyGrant.account_group_id))
    .where(ApiKeyGrant.api_key_id == ApiKey.id)
    .scalar_subquery()
)

# Built once: the only query authentication needs (and only on a cache miss).
_PRINCIPAL_BY_HASH = select(
    ApiKey.id, ApiKey.permissions, _grants, ApiKey.revoked_at, ApiKey.expires_at
)


def _principal(row: Sequence[Any]) -> Principal:
    return Principal(
        key_id=row[0],
        permissions=frozenset(row[1]),
        account_group_ids=frozenset(row[2] or ()),
        revoked_at=row[3],
        expires_at=row[4],
    )


async def principal_by_hash(conn: AsyncConnection, key_hash: bytes) -> Principal | None:
    row = (await conn.execute(_PRINCIPAL_BY_HASH.where(ApiKey.key_hash == key_hash))).first()
    return None if row is None else _principal(row)


@dataclass(frozen=True)
class KeySummary:
    id: str
    name: str
    permissions: list[str]
    account_group_ids: list[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    expires_at: datetime | None


async def create_key(
    conn: AsyncConnection,
    *,
    name: str,
    key_hash: bytes,
    permissions: Sequence[str],
    account_group_ids: Sequence[str],
    expires_at: datetime | None = None,
) -> str:
    key_id = new_id()
    await conn.execute(
        insert(ApiKey).values(
            id=key_id,
            name=name,
            key_hash=key_hash,
            permissions=sorted(set(permissions)),
            expires_at=expires_at,
        )
    )
    await conn.execute(
        insert(ApiKeyGrant),
        [{"api_key_id": key_id, "account_group_id": g} for g in sorted(set(account_group_ids))],
    )
    return key_id


async def list_keys(conn: AsyncConnection) -> list[KeySummary]:
    stmt = select(
        ApiKey.id,
        ApiKey.name,
        ApiKey.permissions,
        _grants,
        ApiKey.created_at,
        ApiKey.last_used_at,
        ApiKey.revoked_at,
        ApiKey.expires_at,
    ).order_by(ApiKey.id)
    rows = (await conn.execute(stmt)).all()
    return [
        KeySummary(r[0], r[1], list(r[2]), sorted(r[3] or ()), r[4], r[5], r[6], r[7]) for r in rows
    ]


async def revoke_key(conn: AsyncConnection, key_id: str) -> bool:
    """Revoke a key; False when no such key. Revoking twice keeps the first timestamp."""
    result = await conn.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id)
        .values(revoked_at=func.coalesce(ApiKey.revoked_at, utcnow()))
        .returning(ApiKey.id)
    )
    return result.first() is not None


async def touch_last_used(conn: AsyncConnection, key_id: str) -> None:
    await conn.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=func.now()))
