"""The Sales Navigator listings: lead lists and saved searches of the group's LinkedIn account."""

from __future__ import annotations

from typing import Literal

from sonarly_api.auth.principal import Principal
from sonarly_api.db import Database
from sonarly_api.errors import (
    BadRequest,
    LinkedInNotConnected,
    ServiceUnavailable,
    UpstreamError,
)
from sonarly_api.ids import is_id
from sonarly_api.linkedin.connections import require_connected
from sonarly_api.linkedin.schemas import SalesNavigatorItem, SalesNavigatorList
from sonarly_api.providers.base import Provider, ProviderError

SourceKind = Literal["lead_lists", "saved_searches"]


def account_group_id(raw: str) -> str:
    """24 hex characters in either case, normalised to lowercase (else 400)."""
    value = raw.lower()
    if len(value) != 24 or not is_id(value):
        raise BadRequest("accountGroupId: must be 24 hexadecimal characters.")
    return value


async def list_sources(
    db: Database,
    provider: Provider | None,
    principal: Principal,
    raw_account_group_id: str,
    kind: SourceKind,
) -> SalesNavigatorList:
    """Order of checks after the route's dependency (401 → 429 → 403 PERMISSION_DENIED):
    400 path id → 403 ACCOUNT_GROUP_FORBIDDEN → 409 LINKEDIN_NOT_CONNECTED → 502 UPSTREAM_ERROR."""
    group = account_group_id(raw_account_group_id)
    principal.ensure_account_group(group)
    if provider is None:
        raise ServiceUnavailable("No LinkedIn data provider is configured (PROVIDER).")
    account = await require_connected(db, provider, group)
    try:
        if kind == "lead_lists":
            items = await provider.list_lead_lists(account)
        else:
            items = await provider.list_saved_searches(account)
    except ProviderError as exc:
        if exc.code == "LINKEDIN_NOT_CONNECTED":
            raise LinkedInNotConnected() from None
        # The message is the adapter's own sentence naming the failure class.
        raise UpstreamError(exc.message) from None
    return SalesNavigatorList(items=[SalesNavigatorItem(id=i.id, name=i.name) for i in items])
