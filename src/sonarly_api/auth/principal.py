"""Who is calling: the verified key and what it may do."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sonarly_api.errors import AccountGroupForbidden

PERMISSIONS = ("prospects:read", "prospecting:read", "prospecting:write")


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    permissions: frozenset[str]
    account_group_ids: frozenset[str]
    revoked_at: datetime | None
    expires_at: datetime | None

    def ensure_account_group(self, account_group_id: str) -> None:
        # Only the key's grants are consulted: the answer is the same whether or not
        # the group exists, so a key cannot probe for other tenants' ids.
        if account_group_id not in self.account_group_ids:
            raise AccountGroupForbidden()
