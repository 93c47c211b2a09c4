"""RequestGuard: what every request is checked for before any route sees it, on the fast lane
and on the framework's stack alike (it is user middleware, so both run it).

- A refusal the HTTP server decided (head too large, too slow, unparsable; see protocol.py)
  arrives as a request carrying the error: answered here, so it gets the envelope, a trace id,
  an access line and a metric like any other answer.
- Ambiguous requests (two `Host`, no `Host` on HTTP/1.1, two `Authorization`): 400. Which of
  two values a proxy and this service each pick is how requests get smuggled past checks.
- A path whose percent-decoded bytes are not UTF-8 goes on with each invalid byte as a lone
  surrogate, for the route's validation to refuse in its place in the order of checks
  (paths.py).
- HEAD is served as GET without the body, wherever GET is (RFC 9110 §9.3.2).
"""

from __future__ import annotations

from sonarly_api.edge.errors import MalformedRequest
from sonarly_api.edge.paths import keep_invalid_bytes
from sonarly_api.errors import AppError
from sonarly_api.handlers import CLIENT_METHOD, render
from sonarly_api.tracing import ASGIApp, Message, Receive, Scope, Send

# Where the HTTP server puts the error it refuses a request with (an AppError).
REFUSAL = "sonarly.refusal"

_SINGLE_HEADERS = {b"host": "Host", b"authorization": "Authorization"}


def refusal_of(scope: Scope) -> AppError | None:
    error = (scope.get("extensions") or {}).get(REFUSAL)
    return error if isinstance(error, AppError) else None


def _ambiguity(scope: Scope) -> str | None:
    seen: dict[bytes, int] = {}
    for name, _ in scope["headers"]:
        if name in _SINGLE_HEADERS:
            seen[name] = seen.get(name, 0) + 1
    for name, label in _SINGLE_HEADERS.items():
        if seen.get(name, 0) > 1:
            return f"The request has {seen[name]} {label} headers; send exactly one."
    if scope.get("http_version") == "1.1" and b"host" not in seen:
        return "An HTTP/1.1 request must have a Host header."
    return None


def _with_head(allow: bytes) -> bytes:
    methods = [m.strip() for m in allow.split(b",")]
    if b"GET" in methods and b"HEAD" not in methods:
        return allow + b", HEAD"
    return allow


class RequestGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        error = refusal_of(scope)
        if error is None:
            problem = _ambiguity(scope)
            if problem is not None:
                error = MalformedRequest(problem)
            else:
                keep_invalid_bytes(scope)  # the fast lane did it already, before matching
        if error is not None:
            # Refused before any route, on the fast lane (which matched one already) as on
            # the framework's stack: the access line and metrics say `<unmatched>` for both.
            scope.pop("route", None)
            scope.pop("path_params", None)
            await render(error)(scope, receive, send)
            return
        if scope["method"] == "HEAD":
            await self._head(scope, receive, send)
            return
        await self.app(scope, receive, self._allowing_head(send))

    @staticmethod
    def _allowing_head(send: Send) -> Send:
        async def send_allowing_head(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                message["headers"] = [
                    (name, _with_head(value) if name.lower() == b"allow" else value)
                    for name, value in message.get("headers", ())
                ]
            await send(message)

        return send_allowing_head

    async def _head(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Routed as GET; the headers (Content-Length included) are GET's, the body is dropped.
        async def send_without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        scope["method"] = "GET"
        scope[CLIENT_METHOD] = "HEAD"
        try:
            await self.app(scope, receive, self._allowing_head(send_without_body))
        finally:
            # Outer layers (access log, metrics) report what the client sent.
            scope["method"] = "HEAD"
