"""FastAPI dependencies that enforce the contract's order of checks:
401 (who) → 429 (how often) → 403 PERMISSION_DENIED (what) — then the route validates its
input (422) and checks the account group grant (403 ACCOUNT_GROUP_FORBIDDEN)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from sonarly_api.auth.principal import Principal
from sonarly_api.edge.addresses import budget_address
from sonarly_api.errors import PermissionDenied, RateLimited, Unauthorized
from sonarly_api.ratelimit import Quota
from sonarly_api.state import AppState
from sonarly_api.tracing import add_response_header, remove_response_headers


async def _authenticate_and_limit(request: Request) -> Principal:
    state: AppState = request.app.state.sonarly
    # The connection's address, or a trusted proxy's X-Forwarded-For; per /64 for IPv6.
    address = budget_address(request.client.host if request.client else None)
    limits = state.rate_limits
    limits.ensure_address_not_blocked(address)
    try:
        principal = await state.authenticator.authenticate(request.headers.get("authorization"))
    except Unauthorized:
        await limits.record_failed_auth(address)
        raise
    request.state.principal = principal
    # Authenticated answers are per key and per tenant: no shared or private cache may keep them.
    add_response_header(request.scope, "Cache-Control", "no-store")
    quota = await limits.hit_key(principal.key_id)
    request.state.rate_limit_quota = quota  # for spend_per_item
    if quota is not None:
        for name, value in quota.headers().items():
            add_response_header(request.scope, name, value)
    return principal


async def authenticated(request: Request) -> Principal:
    """Any valid key, within its rate limit."""
    return await _authenticate_and_limit(request)


def require(permission: str) -> Callable[[Request], Awaitable[Principal]]:
    """A valid key, within its rate limit, holding `permission`."""

    async def dependency(request: Request) -> Principal:
        principal = await _authenticate_and_limit(request)
        if permission not in principal.permissions:
            raise PermissionDenied(permission)
        return principal

    dependency.__name__ = f"require_{permission.replace(':', '_')}"
    return dependency


_RATE_LIMIT_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


async def spend_per_item(request: Request, principal: Principal, items: int) -> None:
    """For a request that costs one unit of the key's budget per item (a batch lookup: one
    per provider id), known once its body is read: the unit spent at authentication counts
    for the first item, the others are spent now, all or nothing. Over budget: 429 and
    nothing spent (RateLimited). The X-RateLimit-* headers then say what is left."""
    state: AppState = request.app.state.sonarly
    spent: Quota | None = getattr(request.state, "rate_limit_quota", None)
    try:
        quota = await state.rate_limits.hit_key_more(principal.key_id, spent, items - 1)
    except RateLimited:
        # The error carries the current figures; the ones queued at authentication are stale.
        remove_response_headers(request.scope, _RATE_LIMIT_HEADERS)
        raise
    if quota is not None and quota is not spent:
        remove_response_headers(request.scope, _RATE_LIMIT_HEADERS)
        for name, value in quota.headers().items():
            add_response_header(request.scope, name, value)
