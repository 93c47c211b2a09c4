"""Turns an `Authorization` header into a Principal, with a bounded in-process cache.

The cache keeps authentication off the database on the hot path. An entry is trusted for
`KEY_CACHE_TTL_SECONDS` (default 10 s) after it was last read from the database: that is the
documented upper bound for a revoked key to stop working in every worker process. Rather than
letting busy keys expire and re-reading them one query each (with many keys, those misses
were the largest cost in the benchmark's profile), a background task re-reads every cached
key at 0.8 of the TTL, 200 keys per query. If that fails, entries simply age out and are read
one by one again, so the bound holds either way.

Unknown keys are cached apart, in a bounded negative cache of their own: the checksum is a
typo check that anyone can compute, so well-formed keys can be made at will, and each must
neither cost more than one query per TTL nor push a real key out of the cache. And only one
query per key is in flight: concurrent requests with the same uncached key wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from cachetools import LRUCache

from sonarly_api.auth import keys
from sonarly_api.auth.principal import Principal
from sonarly_api.auth.repository import principal_by_hash, principals_by_hashes
from sonarly_api.auth.usage import UsageRecorder
from sonarly_api.db import Database
from sonarly_api.errors import Unauthorized
from sonarly_api.timestamps import utcnow

logger = logging.getLogger(__name__)

_REVERIFY_AT = 0.8  # of the TTL
_REVERIFY_CHUNK = 200


@dataclass(frozen=True, slots=True)
class _Entry:
    principal: Principal | None  # None: no such key
    verified_at: float  # time.monotonic() just before the database was read


_UNKNOWN_CACHE_SIZE = 10_000  # unknown keys remembered per process (32-byte hash + a float)


class Authenticator:
    def __init__(
        self, db: Database, pepper: bytes, cache_ttl_seconds: float, cache_size: int
    ) -> None:
        self._db = db
        self._pepper = pepper
        self.usage = UsageRecorder(db)
        self._ttl = cache_ttl_seconds
        self._cache: LRUCache[bytes, _Entry] | None = (
            LRUCache(maxsize=cache_size) if cache_ttl_seconds > 0 else None
        )
        # Unknown keys: hash -> when the database said so (time.monotonic()).
        self._unknown: LRUCache[bytes, float] | None = (
            LRUCache(maxsize=_UNKNOWN_CACHE_SIZE) if cache_ttl_seconds > 0 else None
        )
        # The query in flight for a key hash, shared by every request presenting that key.
        self._reading: dict[bytes, asyncio.Task[Principal | None]] = {}
        self._refresher: asyncio.Task[None] | None = None

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
        if self._cache is not None and self._unknown is not None:
            entry = self._cache.get(key_hash)
            # Only well-formed keys are ever cached, so a hit needs no format check.
            if entry is not None and time.monotonic() - entry.verified_at < self._ttl:
                return entry.principal
            unknown_since = self._unknown.get(key_hash)
            if unknown_since is not None and time.monotonic() - unknown_since < self._ttl:
                return None
        # Before any query: a malformed key or a bad checksum never reaches the database.
        problem = keys.check_format(key)
        if problem is not None:
            raise Unauthorized(problem.value)
        reading = self._reading.get(key_hash)
        if reading is None:
            reading = asyncio.get_running_loop().create_task(self._read(key_hash))
            self._reading[key_hash] = reading
            reading.add_done_callback(lambda done: self._read_done(key_hash, done))
        # Shielded: a request that goes away does not cancel the others' query.
        return await asyncio.shield(reading)

    async def _read(self, key_hash: bytes) -> Principal | None:
        started = time.monotonic()
        principal = await principal_by_hash(self._db, key_hash)
        self._remember(key_hash, principal, started)
        if self._cache is not None and self._refresher is None:
            self._refresher = asyncio.get_running_loop().create_task(self._reverify())
        return principal

    def _read_done(self, key_hash: bytes, done: asyncio.Task[Principal | None]) -> None:
        self._reading.pop(key_hash, None)
        if not done.cancelled():
            done.exception()  # retrieved: every waiter may have gone

    def _remember(self, key_hash: bytes, principal: Principal | None, read_at: float) -> None:
        if self._cache is None or self._unknown is None:
            return
        if principal is None:
            self._cache.pop(key_hash, None)
            self._unknown[key_hash] = read_at
        else:
            self._unknown.pop(key_hash, None)
            self._cache[key_hash] = _Entry(principal, read_at)

    async def _reverify(self) -> None:
        while True:
            # Before the entries expire, with room for a slow query: an entry read at T is
            # trusted until T + TTL, and the batch read at 0.8 TTL renews it from that read.
            await asyncio.sleep(self._ttl * _REVERIFY_AT)
            try:
                await self._reverify_cached_keys()
            except Exception as exc:
                logger.warning("could not re-verify cached keys (%s)", type(exc).__name__)

    async def _reverify_cached_keys(self) -> None:
        assert self._cache is not None
        # Known keys only: unknown ones age out (they are guesses or typos, not traffic).
        key_hashes = list(self._cache.keys())
        # One query per chunk, and requests in flight go on between them: a thousand keys
        # read and renewed at once held the event loop for 3-8 ms of CPU every 8 s
        # (per-callback CPU accounting of a worker at 2,000 req/s; docs/performance.md).
        for start in range(0, len(key_hashes), _REVERIFY_CHUNK):
            chunk = key_hashes[start : start + _REVERIFY_CHUNK]
            started = time.monotonic()
            current = await principals_by_hashes(self._db, chunk)
            for key_hash in chunk:
                # A key deleted meanwhile is cached as unknown, like any unknown key.
                self._remember(key_hash, current.get(key_hash), started)

    async def close(self) -> None:
        """Stop the re-verification and write pending key uses (at shutdown)."""
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        await self.usage.drain()

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
