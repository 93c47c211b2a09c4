"""SQL for LinkedIn connections. Every query but the administrator's listing takes the group."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from sonarly_api.accounts.models import AccountGroup
from sonarly_api.linkedin.models import LinkedInConnection


@dataclass(frozen=True)
class ConnectionStatus:
    """An account group and its connection (None: not connected)."""

    account_group_id: str
    account_group_name: str
    provider_account_id: str | None
    connected_at: datetime | None


async def provider_account_of(conn: AsyncConnection, account_group_id: str) -> str | None:
    return (
        await conn.execute(
            select(LinkedInConnection.provider_account_id).where(
                LinkedInConnection.account_group_id == account_group_id
            )
        )
    ).scalar_one_or_none()


async def group_of(conn: AsyncConnection, provider_account_id: str) -> str | None:
    """The group a provider account is connected to, if any."""
    return (
        await conn.execute(
            select(LinkedInConnection.account_group_id).where(
                LinkedInConnection.provider_account_id == provider_account_id
            )
        )
    ).scalar_one_or_none()


async def connect(
    conn: AsyncConnection, account_group_id: str, provider_account_id: str
) -> datetime:
    """Connect (or re-connect to another provider account); returns when."""
    values = insert(LinkedInConnection).values(
        account_group_id=account_group_id, provider_account_id=provider_account_id
    )
    statement = values.on_conflict_do_update(
        index_elements=[LinkedInConnection.account_group_id],
        set_={
            "provider_account_id": provider_account_id,
            "connected_at": values.excluded.connected_at,
        },
    ).returning(LinkedInConnection.connected_at)
    connected_at: datetime = (await conn.execute(statement)).scalar_one()
    return connected_at


async def disconnect(conn: AsyncConnection, account_group_id: str) -> str | None:
    """Remove the group's connection; returns the provider account it had, if any."""
    return (
        await conn.execute(
            delete(LinkedInConnection)
            .where(LinkedInConnection.account_group_id == account_group_id)
            .returning(LinkedInConnection.provider_account_id)
        )
    ).scalar_one_or_none()


async def statuses(
    conn: AsyncConnection, account_group_id: str | None = None
) -> list[ConnectionStatus]:
    """Every account group (or the one given) with its connection, in id order."""
    stmt = (
        select(
            AccountGroup.id,
            AccountGroup.name,
            LinkedInConnection.provider_account_id,
            LinkedInConnection.connected_at,
        )
        .outerjoin(LinkedInConnection, LinkedInConnection.account_group_id == AccountGroup.id)
        .order_by(AccountGroup.id)
    )
    if account_group_id is not None:
        stmt = stmt.where(AccountGroup.id == account_group_id)
    return [ConnectionStatus(*row) for row in await conn.execute(stmt)]
