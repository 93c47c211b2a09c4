"""The reference baseline: the same lookup with nothing but a bare ASGI callable, an asyncpg
pool and orjson, served by uvicorn like the service.

It answers what the service answers, byte for byte except the trace id (the harness checks
this before timing anything), so the ratio service/baseline prices the framework and the
layering, not a difference in work: same key format check and HMAC, same key cache (a dict
with a 10 s TTL), same indexed query, same validation and order of checks, same envelope.
It has no rate limiting, no traceparent support and no OpenAPI: those are the service's own
costs. Configured by the service's variables (DATABASE_URL, API_KEY_PEPPER, DB_POOL_SIZE).

    uvicorn bench.baseline:create_app --factory --workers 2 --no-server-header --no-access-log
"""

from __future__ import annotations

import os
import re
import time
import unicodedata
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

import asyncpg
import orjson

from sonarly_api.auth.keys import check_format, hash_key

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Starlette's `{name:path}` convertor is `.*`: the service's route is this regex (greedy).
ROUTE = re.compile(r"^/v1/accounts/(.*)/prospects/by-provider-id/(.*)$")
GROUP_ID = re.compile(r"[0-9a-f]{24}")
MAX_PROVIDER_ID = 256
CACHE_TTL = 10.0
CACHE_SIZE = 10_000

LOOKUP = (
    "SELECT id, person_id, public_identifier, linkedin_url, name, company_name, title"
    " FROM prospects WHERE account_group_id = $1 AND provider_id = $2"
    " ORDER BY created_at, id LIMIT 50"
)
KEY = (
    "SELECT k.id, k.permissions,"
    " (SELECT array_agg(g.account_group_id) FROM api_key_grants g WHERE g.api_key_id = k.id),"
    " k.revoked_at, k.expires_at FROM api_keys k WHERE k.key_hash = $1"
)
JSON_HEADER = (b"content-type", b"application/json")


class Principal(NamedTuple):
    permissions: frozenset[str]
    groups: frozenset[str]
    revoked_at: datetime | None
    expires_at: datetime | None


class Failure(Exception):
    """An error answer: status, envelope error fields, extra headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: str | None,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers

    def body(self, trace_id: bytes) -> bytes:
        error = {"code": self.code, "message": self.message, "details": self.details}
        return orjson.dumps(
            {"success": False, "data": None, "error": error, "traceId": trace_id.decode()}
        )


def unauthorized(details: str) -> Failure:
    return Failure(
        401,
        "UNAUTHORIZED",
        "Invalid or missing API key.",
        details,
        ((b"www-authenticate", b"Bearer"),),
    )


def invalid(details: str) -> Failure:
    return Failure(422, "VALIDATION_ERROR", "Request validation failed.", details)


FORBIDDEN_GROUP = Failure(
    403,
    "ACCOUNT_GROUP_FORBIDDEN",
    "The API key is not granted this account group.",
    "Use an account group listed by GET /v1/accounts for this key.",
)
PERMISSION_DENIED = Failure(
    403,
    "PERMISSION_DENIED",
    "The API key lacks the permission this endpoint requires.",
    "Missing permission: prospects:read.",
)
UNAVAILABLE = Failure(
    503,
    "SERVICE_UNAVAILABLE",
    "The service is temporarily unavailable.",
    "The database cannot be reached. Retry shortly.",
    ((b"retry-after", b"2"),),
)
INTERNAL = Failure(
    500,
    "INTERNAL_ERROR",
    "An unexpected error occurred.",
    "The error was logged with this response's traceId.",
)
# The errors that mean "the database cannot be reached": 503, like the service.
OUTAGE = (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError)


def check_group_id(raw: str) -> str:
    value = raw.lower()
    if len(value) != 24 or GROUP_ID.fullmatch(value) is None:
        raise invalid("accountGroupId: must be 24 hexadecimal characters.")
    return value


def check_provider_id(raw: str) -> str:
    if not 1 <= len(raw) <= MAX_PROVIDER_ID:
        raise invalid(
            f"providerId: must be 1 to {MAX_PROVIDER_ID} characters long, got {len(raw)}."
        )
    if "/" in raw:
        raise invalid("providerId: must not contain '/' (also not as %2F).")
    for char in raw:
        if char.isspace() or unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp"):
            raise invalid("providerId: must not contain whitespace or control characters.")
    return raw


def presented_key(headers: list[tuple[bytes, bytes]]) -> str:
    authorization = next((v for n, v in headers if n == b"authorization"), None)
    if not authorization:
        raise unauthorized("The Authorization header is missing.")
    scheme, _, credentials = authorization.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer":
        raise unauthorized("The Authorization scheme must be Bearer.")
    key = credentials.strip()
    problem = check_format(key)
    if problem is not None:
        raise unauthorized(problem.value)
    return key


async def _keep_session(_conn: object) -> None:
    """asyncpg's default reset sends `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL` on every release: a round trip per lookup. Single autocommit SELECTs leave no
    session state behind (as in the service, whose pool only rolls back, a no-op in its
    autocommit reads), so there is nothing to reset."""


Answer = tuple[int, tuple[tuple[bytes, bytes], ...], bytes]  # status, extra headers, body
NO_STORE = ((b"cache-control", b"no-store"),)


def failed(exc: Exception, trace_id: bytes, extra: tuple[tuple[bytes, bytes], ...] = ()) -> Answer:
    """The error answer for `exc`: its own, 503 for an outage, 500 for anything else."""
    if isinstance(exc, Failure):
        failure = exc
    else:
        failure = UNAVAILABLE if isinstance(exc, OUTAGE) else INTERNAL
    return failure.status, (*failure.headers, *extra), failure.body(trace_id)


def new_trace_id() -> bytes:
    while True:
        value = os.urandom(16).hex()
        if value != "0" * 32:
            return value.encode()


class Baseline:
    def __init__(self) -> None:
        url = os.environ["DATABASE_URL"]
        # asyncpg takes libpq URLs; the service's form names the SQLAlchemy driver.
        self.dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
        self.pepper = os.environ["API_KEY_PEPPER"].encode()
        self.pool_size = int(os.environ.get("DB_POOL_SIZE", "10"))  # the service's default
        self.pool: Any = None
        self.cache: dict[bytes, tuple[float, Principal | None]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, send)
        elif scope["type"] == "lifespan":
            await self.lifespan(receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.pool = await asyncpg.create_pool(
                    self.dsn,
                    min_size=1,
                    max_size=self.pool_size,
                    reset=_keep_session,
                    server_settings={
                        "application_name": "sonarly-bench-baseline",
                        "statement_timeout": "5000",
                    },
                )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def principal(self, key: str) -> Principal:
        key_hash = hash_key(key, self.pepper)
        now = time.monotonic()
        cached = self.cache.get(key_hash)
        if cached is not None and cached[0] > now:
            principal = cached[1]
        else:
            row = await self.pool.fetchrow(KEY, key_hash)
            principal = (
                None
                if row is None
                else Principal(frozenset(row[1]), frozenset(row[2] or ()), row[3], row[4])
            )
            if len(self.cache) >= CACHE_SIZE:
                self.cache.clear()
            self.cache[key_hash] = (now + CACHE_TTL, principal)
        if principal is None:
            raise unauthorized("The API key is not recognised.")
        if principal.revoked_at is not None:
            raise unauthorized("The API key has been revoked.")
        if principal.expires_at is not None and principal.expires_at <= datetime.now(UTC):
            raise unauthorized("The API key has expired.")
        return principal

    async def lookup(self, principal: Principal, group_raw: str, provider_raw: str) -> bytes:
        if "prospects:read" not in principal.permissions:
            raise PERMISSION_DENIED
        group = check_group_id(group_raw)
        provider = check_provider_id(provider_raw)
        if group not in principal.groups:
            raise FORBIDDEN_GROUP
        rows = await self.pool.fetch(LOOKUP, group, provider)
        count = len(rows)
        return orjson.dumps(
            {
                "providerId": provider,
                "resolution": "none" if count == 0 else "unique" if count == 1 else "ambiguous",
                "matches": [
                    {
                        "prospectId": r[0],
                        "personId": r[1],
                        "publicIdentifier": r[2],
                        "linkedinUrl": r[3],
                        "name": r[4],
                        "companyName": r[5],
                        "title": r[6],
                    }
                    for r in rows
                ],
            }
        )

    async def answer(self, scope: Scope, trace_id: bytes) -> Answer:
        match = ROUTE.match(scope["path"])
        try:
            if match is None or scope["method"] != "GET":
                # Only the lookup is served: any other request is outside the benchmark.
                raise Failure(404, "NOT_FOUND", "Resource not found.", None)
            principal = await self.principal(presented_key(scope["headers"]))
        except Exception as exc:
            return failed(exc, trace_id)
        # From here on the answer is per key and per tenant, as in the service: no caching.
        try:
            data = await self.lookup(principal, match[1], match[2])
        except Exception as exc:
            return failed(exc, trace_id, NO_STORE)
        body = b'{"success":true,"data":%s,"error":null,"traceId":"%s"}' % (data, trace_id)
        return 200, NO_STORE, body

    async def http(self, scope: Scope, send: Send) -> None:
        trace_id = new_trace_id()
        status, headers, body = await self.answer(scope, trace_id)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    *headers,
                    (b"content-length", str(len(body)).encode()),
                    JSON_HEADER,
                    (b"x-trace-id", trace_id),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def create_app() -> Baseline:
    return Baseline()
