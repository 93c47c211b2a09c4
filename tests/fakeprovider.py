"""A fake data provider: a real HTTP server (Starlette under uvicorn, in a thread, on a free port)
that follows docs/provider-api.md, for tests of the HTTP provider and of what uses it.

    with running_fake_provider() as fake:
        account = fake.account("acc-1")
        account.lead_lists["ll-1"] = ("CTOs", make_profiles("cto", 60))
        fake.fault("429", retry_after="1")          # the next request answers 429
        ... HttpProvider(fake.url, SecretStr(fake.token)) ...
        fake.requests                               # what the adapter sent

Faults are served in the order they were added, each to the next request whose path contains
`path_contains` (any request when None), `times` times (None: for ever), once `after` such
requests went through untouched (e.g. `after=1`: page 2 on; the first matching fault
decides). Every request is recorded (method, path, query, headers, JSON body, when), and the
number of requests in flight is tracked per provider account.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote

import uvicorn
from starlette.types import Receive, Scope, Send

from tests.servers import free_port

FaultKind = Literal[
    "slow",  # wait `delay` seconds, then answer normally
    "429",  # 429 with Retry-After (`retry_after`, if given)
    "500",
    "503",
    "drop",  # headers and part of the body, then the connection is closed
    "malformed",  # 200 with a body that is not JSON
    "wrong_shape",  # 200 with JSON that is not the documented shape
    "disconnected",  # 409 account_disconnected
    "restricted",  # 423 account_restricted
    "not_found",  # 404 not_found
    "unauthorized",  # 401 invalid_token
]

# The provider's own error text: the adapter must never pass it on.
RAW_MESSAGE = "fake-provider internal text 7f3a: do not leak"


def make_profiles(prefix: str, count: int, start: int = 0) -> list[dict[str, Any]]:
    """`count` profiles as the provider sends them (memberId `<prefix>-m<i>`)."""
    return [
        {
            "memberId": f"{prefix}-m{i}",
            "publicIdentifier": f"{prefix}-{i}",
            "profileUrl": f"https://www.linkedin.com/in/{prefix}-{i}/",
            "name": f"{prefix.title()} Person {i}",
            "headline": None if i % 3 == 0 else f"Headline {i}",
        }
        for i in range(start, start + count)
    ]


@dataclass
class FakeAccount:
    """One provider account's data."""

    lead_lists: dict[str, tuple[str, list[dict[str, Any]]]] = field(default_factory=dict)
    saved_searches: dict[str, tuple[str, list[dict[str, Any]]]] = field(default_factory=dict)
    searches: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by search URL
    posts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by post URL
    state: Literal["connected", "disconnected", "restricted"] = "connected"


@dataclass
class Fault:
    kind: FaultKind
    times: int | None = 1
    delay: float = 0.0
    retry_after: str | None = None
    path_contains: str | None = None
    after: int = 0  # let this many matching requests through first


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str  # as sent (percent-encoded)
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    at: float  # time.monotonic() when the request arrived


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _offset(cursor: str | None) -> int | None:
    if cursor is None:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
    except ValueError:
        return None
    if not text.startswith("offset:") or not text[7:].isdigit():
        return None
    return int(text[7:])


class FakeProvider:
    def __init__(self, token: str | None = None) -> None:
        self.token = token or "fake-token-" + secrets.token_hex(8)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.accounts: dict[str, FakeAccount] = {}
        # Public profile data, read with the token alone (no provider account).
        self.profiles: dict[str, dict[str, Any]] = {}  # by profile URL
        self.enrichments: dict[str, dict[str, Any]] = {}  # by member id
        self.requests: list[Recorded] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}
        self.max_in_flight: dict[str, int] = {}  # per provider account

    # --- what a test sets up and reads --------------------------------------------------------

    def account(self, account_id: str) -> FakeAccount:
        return self.accounts.setdefault(account_id, FakeAccount())

    def fault(
        self,
        kind: FaultKind,
        *,
        times: int | None = 1,
        delay: float = 0.0,
        retry_after: str | None = None,
        path_contains: str | None = None,
        after: int = 0,
    ) -> None:
        with self._lock:
            self._faults.append(Fault(kind, times, delay, retry_after, path_contains, after))

    def reset(self) -> None:
        with self._lock:
            self.accounts.clear()
            self.profiles.clear()
            self.enrichments.clear()
            self.requests.clear()
            self._faults.clear()
            self._in_flight.clear()
            self.max_in_flight.clear()

    def requests_to(self, path_contains: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if path_contains in r.path]

    # --- the server ---------------------------------------------------------------------------

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.path_contains is None or fault.path_contains in path:
                    if fault.after > 0:
                        fault.after -= 1
                        return None
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        path = raw_path.decode()
        query = dict(parse_qsl(scope["query_string"].decode()))
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        parsed_body = json.loads(body) if body else None
        with self._lock:
            self.requests.append(
                Recorded(scope["method"], path, query, headers, parsed_body, time.monotonic())
            )
        parts = [unquote(p) for p in path.strip("/").split("/")]
        account_id = parts[2] if len(parts) > 2 and parts[:2] == ["v1", "accounts"] else ""
        with self._lock:
            self._in_flight[account_id] = self._in_flight.get(account_id, 0) + 1
            self.max_in_flight[account_id] = max(
                self.max_in_flight.get(account_id, 0), self._in_flight[account_id]
            )
        try:
            await self._answer(scope["method"], parts, query, headers, parsed_body, send)
        finally:
            with self._lock:
                self._in_flight[account_id] -= 1

    async def _answer(
        self,
        method: str,
        parts: list[str],
        query: dict[str, str],
        headers: dict[str, str],
        body: Any,
        send: Send,
    ) -> None:
        if headers.get("authorization") != f"Bearer {self.token}":
            return await _send(send, 401, _error("invalid_token"))
        fault = self._take_fault("/" + "/".join(parts))
        if fault is not None:
            if fault.kind == "slow":
                await asyncio.sleep(fault.delay)
            else:
                return await _send_fault(send, fault)
        if method == "POST" and parts[:2] == ["v1", "profiles"]:
            return await _send(send, *self._public(parts[2:], body))
        if len(parts) < 4 or parts[:2] != ["v1", "accounts"]:
            return await _send(send, 404, _error("not_found"))
        account = self.accounts.get(parts[2])
        if account is None:
            return await _send(send, 404, _error("account_not_found"))
        if account.state == "disconnected":
            return await _send(send, 409, _error("account_disconnected"))
        if account.state == "restricted":
            return await _send(send, 423, _error("account_restricted"))
        status, answer = self._route(method, parts[3:], query, body, account)
        await _send(send, status, answer)

    def _route(
        self, method: str, rest: list[str], query: dict[str, str], body: Any, acc: FakeAccount
    ) -> tuple[int, Any]:
        limit = int(query.get("limit", "25"))
        cursor = query.get("cursor")
        if method == "GET" and rest == ["sales-navigator", "lead-lists"]:
            items = [{"id": k, "name": v[0]} for k, v in acc.lead_lists.items()]
            return _paged(items, cursor, limit)
        if method == "GET" and rest == ["sales-navigator", "saved-searches"]:
            items = [{"id": k, "name": v[0]} for k, v in acc.saved_searches.items()]
            return _paged(items, cursor, limit)
        if method == "GET" and len(rest) == 4 and rest[:2] == ["sales-navigator", "lead-lists"]:
            found = acc.lead_lists.get(rest[2])
            return (404, _error("not_found")) if found is None else _paged(found[1], cursor, limit)
        if method == "GET" and len(rest) == 4 and rest[:2] == ["sales-navigator", "saved-searches"]:
            found = acc.saved_searches.get(rest[2])
            return (404, _error("not_found")) if found is None else _paged(found[1], cursor, limit)
        if method == "GET" and rest == ["people", "search"]:
            people = acc.searches.get(query.get("url", ""))
            return (404, _error("not_found")) if people is None else _paged(people, cursor, limit)
        if method == "GET" and rest == ["posts", "commenters"]:
            people = acc.posts.get(query.get("postUrl", ""))
            return (404, _error("not_found")) if people is None else _paged(people, cursor, limit)
        return 404, _error("not_found")

    def _public(self, rest: list[str], body: Any) -> tuple[int, Any]:
        if rest == ["lookup"]:
            urls = body.get("profileUrls", [])
            if not 1 <= len(urls) <= 25:
                return 400, _error("invalid_request")
            return 200, {"items": [self.profiles[u] for u in urls if u in self.profiles]}
        if rest == ["enrich"]:
            ids = body.get("memberIds", [])
            if not 1 <= len(ids) <= 25:
                return 400, _error("invalid_request")
            items = []
            for member_id in ids:
                if member_id in self.enrichments:
                    item = dict(self.enrichments[member_id])
                    if not body.get("workEmail"):
                        item["workEmail"] = None
                    items.append({"memberId": member_id, **item})
            return 200, {"items": items}
        return 404, _error("not_found")


def _paged(items: list[Any], cursor: str | None, limit: int) -> tuple[int, Any]:
    offset = _offset(cursor)
    if offset is None or not 1 <= limit <= 100:
        return 400, _error("invalid_request")
    end = offset + limit
    return 200, {
        "items": items[offset:end],
        "nextCursor": _cursor(end) if end < len(items) else None,
    }


def _error(code: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": RAW_MESSAGE}}


async def _send(
    send: Send, status: int, answer: Any, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class DroppedConnection(Exception):
    """Raised after a partial answer: uvicorn then closes the connection."""


async def _send_fault(send: Send, fault: Fault) -> None:
    if fault.kind == "429":
        extra = [] if fault.retry_after is None else [(b"retry-after", fault.retry_after.encode())]
        return await _send(send, 429, _error("rate_limited"), extra)
    if fault.kind in ("500", "503"):
        return await _send(send, int(fault.kind), _error("internal"))
    if fault.kind == "malformed":
        return await _send(send, 200, b'{"items": [{"memberId": "x"')
    if fault.kind == "wrong_shape":
        return await _send(send, 200, {"results": "nope"})
    if fault.kind == "disconnected":
        return await _send(send, 409, _error("account_disconnected"))
    if fault.kind == "restricted":
        return await _send(send, 423, _error("account_restricted"))
    if fault.kind == "not_found":
        return await _send(send, 404, _error("not_found"))
    if fault.kind == "unauthorized":
        return await _send(send, 401, _error("invalid_token"))
    assert fault.kind == "drop"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
        }
    )
    await send({"type": "http.response.body", "body": b'{"items": [', "more_body": True})
    raise DroppedConnection


@contextlib.contextmanager
def running_fake_provider(token: str | None = None) -> Iterator[FakeProvider]:
    """The fake, served until the block ends."""
    fake = FakeProvider(token)
    # No log_level, log_config or access_log=False: uvicorn would apply them to its loggers
    # process-wide, and the tests of the service's own logging run in this process too.
    config = uvicorn.Config(
        fake, host="127.0.0.1", port=fake.port, lifespan="off", log_config=None, loop="asyncio"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="fake-provider", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the fake provider did not start")
        time.sleep(0.01)
    try:
        yield fake
    finally:
        server.should_exit = True
        thread.join(10)
