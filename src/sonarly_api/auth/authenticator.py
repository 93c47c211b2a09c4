"""Turns an `Authorization` header into a Principal, with a bounded in-process cache.

The cache is what keeps authentication off the database on the hot path. Its TTL
(`KEY_CACHE_TTL_SECONDS`, default 10 s) is the documented upper bound for a revoked
key to stop working in every worker process.
"""

from __future__ import annotations

from cachetools import TTLCache

from sonarly_api.auth import keys
from sonarly_api.auth.principal import Principal
from sonarly_api.auth.repository import principal_by_hash
from sonarly_api.auth.usage import UsageRecorder
from sonarly_api.db import Database
from sonarly_api.errors import Unauthorized
from sonarly_api.timestamps import utcnow


class Authenticator:
    def __init__(
        self, db: Database, pepper: bytes, cache_ttl_seconds: float, cache_size: int
    ) -> None:
        self._db = db
        self._pepper = pepper
        self.usage = UsageRecorder(db)
        self._cache: TTLCache[bytes, Principal | None] | None = (
            TTLCache(maxsize=cache_size, ttl=cache_ttl_seconds) if cache_ttl_seconds > 0 else None
        )

    @staticmethod
    def presented_key(authorization: str | None) -> str:
        """The key in a `Bearer` header. Raises Unauthorized without touching the database."""
        if not authorization:
            raise Unauthorized("The Authorization header is missing.")
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() != "bearer":
            raise Unauthorized("The Authorization scheme must be Bearer.")
        key = credentials.strip()
        problem = keys.check_format(key)
        if problem is not None:
            raise Unauthorized(problem.value)
        return key

    async def _load(self, key_hash: bytes) -> Principal | None:
        if self._cache is not None:
            try:
                return self._cache[key_hash]
            except KeyError:
                pass
        principal: Principal | None = await self._db.read(principal_by_hash, key_hash)
        if self._cache is not None:
            self._cache[key_hash] = principal
        return principal

    async def authenticate(self, authorization: str | None) -> Principal:
        key = self.presented_key(authorization)
        principal = await self._load(keys.hash_key(key, self._pepper))
        if principal is None:
            raise Unauthorized("The API key is not recognised.")
        if principal.revoked_at is not None:
            raise Unauthorized("The API key has been revoked.")
        if principal.expires_at is not None and principal.expires_at <= utcnow():
            raise Unauthorized("The API key has expired.")
        self.usage.seen(principal.key_id)
        return principal

    def forget_all(self) -> None:
        if self._cache is not None:
            self._cache.clear()
