"""Trace ids: W3C `traceparent` in, `X-Trace-Id` out, one id per request in a contextvar."""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from contextvars import ContextVar
from typing import Any

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = "0" * 32
_ZERO_PARENT = "0" * 16

_trace_id: ContextVar[str] = ContextVar("trace_id", default=_ZERO_TRACE)


def new_trace_id() -> str:
    while True:
        value = os.urandom(16).hex()
        if value != _ZERO_TRACE:
            return value


def trace_id_from_traceparent(header: str | None) -> str | None:
    """The trace id of a valid W3C traceparent header, else None.

    Version `ff` is forbidden and all-zero trace or parent ids are invalid (W3C Trace Context §3.2).
    Future versions may append fields after the flags, so only the first 55 characters are parsed.
    """
    if not header:
        return None
    header = header.strip()
    match = _TRACEPARENT.fullmatch(header[:55])
    if match is None:
        return None
    version, trace_id, parent_id, _flags = match.groups()
    if version == "ff" or trace_id == _ZERO_TRACE or parent_id == _ZERO_PARENT:
        return None
    if version == "00" and len(header) != 55:
        return None
    if len(header) > 55 and header[55] != "-":
        return None
    return trace_id


def current_trace_id() -> str:
    return _trace_id.get()


# --- the outermost ASGI layer -------------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
ErrorRenderer = Callable[[BaseException], ASGIApp]

EXTRA_HEADERS = "extra_response_headers"


def add_response_header(scope: Scope, name: str, value: str) -> None:
    """Queue a header for whatever response this request ends with (success or error)."""
    scope["state"][EXTRA_HEADERS].append((name.encode("latin-1"), value.encode("latin-1")))


def remove_response_headers(scope: Scope, names: Iterable[str]) -> None:
    """Unqueue the headers of these names (e.g. to queue newer values instead)."""
    dropped = {name.lower().encode("latin-1") for name in names}
    queued: list[tuple[bytes, bytes]] = scope["state"][EXTRA_HEADERS]
    queued[:] = [(name, value) for name, value in queued if name.lower() not in dropped]


class TraceMiddleware:
    """Pure ASGI, outermost: sets the trace id, adds `X-Trace-Id` (and queued headers) to every
    response, and turns an unhandled exception into the envelope.

    It has to be the outermost layer: Starlette runs `Exception` handlers in
    ServerErrorMiddleware, outside user middleware, where they would miss these headers.
    """

    def __init__(self, app: ASGIApp, render_error: ErrorRenderer) -> None:
        self.app = app
        self.render_error = render_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        traceparent = None
        for name, value in scope["headers"]:
            if name == b"traceparent":
                traceparent = value.decode("latin-1")
                break
        trace_id = trace_id_from_traceparent(traceparent) or new_trace_id()
        token = _trace_id.set(trace_id)
        extra: list[tuple[bytes, bytes]] = [(b"x-trace-id", trace_id.encode())]
        scope.setdefault("state", {})[EXTRA_HEADERS] = extra
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            if started:
                raise
            await self.render_error(exc)(scope, receive, send_with_headers)
        finally:
            _trace_id.reset(token)
