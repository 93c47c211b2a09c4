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
    def _credentials(authorization: str | None) -> str:
        if not authorization:
            raise Unauthorized("The Authorization header is missing.")
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() != "bearer":
            raise Unauthorized("The Authorization scheme must be Bearer.")
        return credentials.strip()

    async def _load(self, key: str) -> Principal | None:
        if len(key) > keys.KEY_LENGTH:
            raise Unauthorized(keys.KeyProblem.MALFORMED.value)
        key_hash = keys.hash_key(key, self._pepper)
        if self._cache is not None:
            try:
                # Only well-formed keys are ever cached, so a hit needs no format check.
                return self._cache[key_hash]
            except KeyError:
                pass
        # Before any query: a malformed key or a bad checksum never reaches the database.
        problem = keys.check_format(key)
        if problem is not None:
            raise Unauthorized(problem.value)
        principal: Principal | None = await self._db.read(principal_by_hash, key_hash)
        if self._cache is not None:
            self._cache[key_hash] = principal
        return principal

    async def authenticate(self, authorization: str | None) -> Principal:
        principal = await self._load(self._credentials(authorization))
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
