"""The address a client's failed-authentication budget is counted against.

`request.client` is the connection's peer, or, when `TRUSTED_PROXIES` names that peer, the
client uvicorn read from its X-Forwarded-For (see `serve`). An IPv6 client usually holds a
whole /64 (SLAAC, privacy addresses): counted per address, it could guess keys from 2**64 of
them, so its budget is its /64. An IPv4 address mapped into IPv6 counts as the IPv4 address.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

IPV6_PREFIX = 64


@lru_cache(maxsize=4096)
def budget_address(host: str | None) -> str:
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # not an IP (a Unix socket's peer, a test client's name): as is
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)
