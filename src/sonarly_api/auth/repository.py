"""SQL for API keys and their grants."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ARRAY,
    LargeBinary,
    any_,
    bindparam,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from sonarly_api.auth.models import ApiKey, ApiKeyGrant
from sonarly_api.auth.principal import Principal
from sonarly_api.db import Database, DriverStatement
from sonarly_api.ids import new_id
from sonarly_api.timestamps import utcnow

# The key's account groups as one array column (NULL when it has none).
_grants = (
    select(func.array_agg(ApiKeyGrant.account_group_id))
    .where(ApiKeyGrant.api_key_id == ApiKey.id)
    .scalar_subquery()
)

# What authentication reads of a key. Both statements below are compiled once to the driver's
# SQL (`Database.fetch`): a key-cache miss through the Connection/Result machinery cost about
# a millisecond of CPU, more than a whole lookup, and after a restart every key misses once.
_PRINCIPAL_COLUMNS = (ApiKey.id, ApiKey.permissions, _grants, ApiKey.revoked_at, ApiKey.expires_at)
_PRINCIPAL_BY_HASH = DriverStatement.compile(
    select(*_PRINCIPAL_COLUMNS).where(ApiKey.key_hash == bindparam("key_hash"))
)
_PRINCIPALS_BY_HASHES = DriverStatement.compile(
    select(ApiKey.key_hash, *_PRINCIPAL_COLUMNS).where(
        ApiKey.key_hash == any_(bindparam("key_hashes", type_=ARRAY(LargeBinary)))
    )
)


def _principal(row: Sequence[Any]) -> Principal:
    return Principal(
        key_id=row[0],
        permissions=frozenset(row[1]),
        account_group_ids=frozenset(row[2] or ()),
        revoked_at=row[3],
        expires_at=row[4],
    )


async def principals_by_hashes(db: Database, key_hashes: Sequence[bytes]) -> dict[bytes, Principal]:
    """Many keys in one query (the key cache's periodic re-verification)."""
    rows = await db.fetch(_PRINCIPALS_BY_HASHES, key_hashes=list(key_hashes))
    return {bytes(row[0]): _principal(row[1:]) for row in rows}


async def principal_by_hash(db: Database, key_hash: bytes) -> Principal | None:
    rows = await db.fetch(_PRINCIPAL_BY_HASH, key_hash=key_hash)
    return _principal(rows[0]) if rows else None


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


class KeyNotRotatable(Exception):
    """The key exists but must not be rotated (revoked or expired); the message says why."""


@dataclass(frozen=True)
class Rotation:
    key_id: str
    name: str
    permissions: list[str]
    account_group_ids: list[str]
    old_key_expires_at: datetime


async def rotate_key(
    conn: AsyncConnection,
    key_id: str,
    *,
    key_hash: bytes,
    grace: timedelta,
    now: datetime,
    expires_at: datetime | None = None,
) -> Rotation | None:
    """Issue a key with `key_id`'s name, permissions and grants, and make the old one expire
    at min(its expiry, now + grace). None when no such key. Raises KeyNotRotatable for a
    revoked or expired key: rotating would revive access that was deliberately ended."""
    old = (
        await conn.execute(
            select(ApiKey.name, ApiKey.permissions, ApiKey.revoked_at, ApiKey.expires_at)
            .where(ApiKey.id == key_id)
            # Two rotations of one key at once: the second sees the first's new expiry.
            .with_for_update()
        )
    ).first()
    if old is None:
        return None
    name, permissions, revoked_at, old_expires_at = old
    if revoked_at is not None:
        raise KeyNotRotatable(f"key {key_id} is revoked; issue a new one with `keys create`")
    if old_expires_at is not None and old_expires_at <= now:
        raise KeyNotRotatable(f"key {key_id} has expired; issue a new one with `keys create`")
    ends = now + grace if old_expires_at is None else min(old_expires_at, now + grace)
    await conn.execute(update(ApiKey).where(ApiKey.id == key_id).values(expires_at=ends))
    new_key_id = new_id()
    await conn.execute(
        insert(ApiKey).values(
            id=new_key_id,
            name=name,
            key_hash=key_hash,
            permissions=list(permissions),
            expires_at=expires_at,
        )
    )
    # Copied in SQL, so the grants are those of the locked row, whatever the caller saw.
    granted = await conn.execute(
        insert(ApiKeyGrant)
        .from_select(
            ["api_key_id", "account_group_id"],
            select(literal(new_key_id), ApiKeyGrant.account_group_id).where(
                ApiKeyGrant.api_key_id == key_id
            ),
        )
        .returning(ApiKeyGrant.account_group_id)
    )
    return Rotation(
        key_id=new_key_id,
        name=name,
        permissions=sorted(permissions),
        account_group_ids=sorted(r[0] for r in granted),
        old_key_expires_at=ends,
    )


# Array parameters rather than an expanding IN: with a thousand keys, SQLAlchemy's expansion
# of a bind per id cost 6-18 ms of the event loop's CPU once a minute per worker. Each key gets
# the time of its last request seen by this process (not the time of the write, up to a minute
# later), never earlier than what another process wrote, and never later than its revocation:
# a cached key still works for up to KEY_CACHE_TTL_SECONDS after it, but was revoked when used.
_TOUCH_LAST_USED = DriverStatement.compile(
    text(
        # greatest() and least() skip NULLs: no earlier stamp, no revocation.
        "UPDATE api_keys SET last_used_at ="
        " least(greatest(api_keys.last_used_at, used.at), api_keys.revoked_at)"
        " FROM unnest(CAST(:key_ids AS text[]), CAST(:used_at AS timestamptz[])) AS used(id, at)"
        " WHERE api_keys.id = used.id"
    )
)


async def touch_last_used(db: Database, used_at: Mapping[str, datetime]) -> None:
    """One UPDATE for all keys of `used_at` (key id: time of its last request; autocommit: a
    single statement; repeating it is harmless, so `Database.fetch` may retry it)."""
    key_ids = sorted(used_at)
    await db.fetch(_TOUCH_LAST_USED, key_ids=key_ids, used_at=[used_at[k] for k in key_ids])
