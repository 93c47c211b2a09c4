"""The Sales Navigator listings: lead lists and saved searches of the group's LinkedIn account."""

from __future__ import annotations

from typing import Literal

from sonarly_api.auth.principal import Principal
from sonarly_api.db import Database
from sonarly_api.errors import (
    AppError,
    BadRequest,
    LinkedInNotConnected,
    ServiceUnavailable,
    UpstreamError,
)
from sonarly_api.ids import is_id
from sonarly_api.linkedin.connections import require_connected
from sonarly_api.linkedin.schemas import SalesNavigatorItem, SalesNavigatorList
from sonarly_api.providers.base import Provider, ProviderAccount, ProviderError

SourceKind = Literal["lead_lists", "saved_searches"]


def account_group_id(raw: str) -> str:
    """24 hex characters in either case, normalised to lowercase (else 400)."""
    value = raw.lower()
    if len(value) != 24 or not is_id(value):
        raise BadRequest("accountGroupId: must be 24 hexadecimal characters.")
    return value


def client_error(exc: ProviderError) -> AppError:
    """What a request answers for a provider failure: 409 when the group has no account, else
    502 whose details are the adapter's own sentence naming the failure class."""
    if exc.code == "LINKEDIN_NOT_CONNECTED":
        return LinkedInNotConnected()
    return UpstreamError(exc.message)


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
        raise client_error(exc) from None
    return SalesNavigatorList(items=[SalesNavigatorItem(id=i.id, name=i.name) for i in items])


async def check_sales_navigator_source(
    db: Database,
    provider: Provider,
    account_group_id: str,
    *,
    lead_list_id: str | None = None,
    saved_search_id: str | None = None,
) -> ProviderAccount:
    """For a `sales_navigator` job start: the group's account, once the id is known to be one
    of its listings (so a wrong id is a 400 at start, not a failed job minutes later).

    409 LINKEDIN_NOT_CONNECTED without a connection, 400 VALIDATION_ERROR naming the field when
    the id is not listed, 502 UPSTREAM_ERROR when the provider cannot say.
    """
    if (lead_list_id is None) == (saved_search_id is None):
        raise ValueError("exactly one of lead_list_id and saved_search_id")
    account = await require_connected(db, provider, account_group_id)
    try:
        if lead_list_id is not None:
            field, wanted, listing = "leadListId", lead_list_id, "lead lists"
            items = await provider.list_lead_lists(account)
        else:
            assert saved_search_id is not None
            field, wanted, listing = "savedSearchId", saved_search_id, "saved searches"
            items = await provider.list_saved_searches(account)
    except ProviderError as exc:
        raise client_error(exc) from None
    if all(item.id != wanted for item in items):
        raise BadRequest(
            f"{field}: not one of the account group's Sales Navigator {listing} "
            f"(GET …/sales-navigator/{listing.replace(' ', '-')})."
        )
    return account
