"""Is this account group connected to LinkedIn, and through which provider account?

The listings (and the job runner) ask `connected_account`; for the HTTP provider the answer is
the group's row in linkedin_connections, other providers answer themselves (the sandbox counts
every group as connected).
"""

from __future__ import annotations

from sonarly_api.db import Database
from sonarly_api.errors import LinkedInNotConnected
from sonarly_api.linkedin import repository
from sonarly_api.providers.base import Provider, ProviderAccount
from sonarly_api.providers.http import AccountResolver, HttpProvider


def account_resolver(db: Database) -> AccountResolver:
    """What `HttpProvider.is_connected` asks: the group's provider account id, or None."""

    async def resolve(account_group_id: str) -> str | None:
        return await db.read(repository.provider_account_of, account_group_id)

    return resolve


async def connected_account(
    db: Database, provider: Provider, account_group_id: str
) -> ProviderAccount | None:
    """The group's provider account, None when it has connected none."""
    if isinstance(provider, HttpProvider):
        account_id = await account_resolver(db)(account_group_id)
        return None if account_id is None else ProviderAccount(account_group_id, account_id)
    return await provider.is_connected(account_group_id)


async def require_connected(
    db: Database, provider: Provider, account_group_id: str
) -> ProviderAccount:
    """`connected_account`, or 409 LINKEDIN_NOT_CONNECTED."""
    account = await connected_account(db, provider, account_group_id)
    if account is None:
        raise LinkedInNotConnected()
    return account
