"""EdgeProtocol: uvicorn's httptools protocol with the limits it lacks, used by `serve`.

uvicorn bounds neither the request head nor the time to send it, nor the connections it keeps:
a 96 MB header was accepted (httptools concatenates a header's pieces, quadratic work that froze
every other request), a connection that sends half a request line stayed open for ever, and
20,000 of them used up the process's file descriptors. Its refusals were plain text, without a
trace id, a log line or a metric.

Here, before the parser sees a byte of a request head, the head is measured: a request line
over `MAX_REQUEST_LINE` is answered 414, a head over `MAX_HEAD` or with more than
`MAX_HEADERS` headers 431; the parser is never fed more. A head not complete within
`HTTP_HEADER_TIMEOUT_SECONDS` of its first byte (or of the connection, for the first) is
answered 408, or closed silently if nothing was sent; a connection beyond
`HTTP_MAX_CONNECTIONS` is answered 503 at once. Requests the parser refuses (an invalid byte,
both Content-Length and Transfer-Encoding, ...) are answered 400.

Each refusal is handed to the app as a request carrying the error (see guard.py), so it is
rendered, traced, logged and counted like any other answer. The connection is then closed
gracefully: the answer is sent, the writing side shut, and whatever the client still sends is
read and dropped for a moment, so the client reads the answer instead of a reset.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from sonarly_api.config import get_settings
from sonarly_api.edge.errors import (
    HeadersTooLarge,
    MalformedRequest,
    RequestTimeout,
    TooManyConnections,
    UriTooLong,
)
from sonarly_api.edge.guard import REFUSAL
from sonarly_api.errors import AppError

MAX_REQUEST_LINE = 8 * 1024  # bytes, method and URL included (nginx's default buffer)
MAX_HEAD = 32 * 1024  # bytes: request line and every header
MAX_HEADERS = 100  # as Apache's LimitRequestFields
LINGER_SECONDS = 2.0  # reading (and dropping) what a refused client still sends,
LINGER_BYTES = 1024 * 1024  # but no more than this
_WARN_EVERY = 10.0  # seconds between two "too many connections" warnings
# Open files besides connections and database pool: listening socket, logs, Redis, metrics.
_OTHER_DESCRIPTORS = 64

_BOTH_LENGTHS = "Content-Length and Transfer-Encoding must not both be sent."
_KNOWN_METHODS = {b"GET", b"HEAD", b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS"}

logger = logging.getLogger("sonarly_api.edge")


class _Refused(Exception):
    """Raised in a parser callback to stop parsing; carries the answer."""

    def __init__(self, error: AppError) -> None:
        super().__init__(error.details)
        self.error = error


def describe_limits() -> str:
    settings = get_settings()
    return (
        f"request line ≤ {MAX_REQUEST_LINE // 1024} KiB, head ≤ {MAX_HEAD // 1024} KiB and "
        f"{MAX_HEADERS} headers, head within {settings.http_header_timeout_seconds:g} s "
        f"(HTTP_HEADER_TIMEOUT_SECONDS), at most {settings.http_max_connections} connections "
        "per worker (HTTP_MAX_CONNECTIONS)"
    )


def ensure_descriptors() -> str | None:
    """Raise this process's soft limit on open files (inherited by the workers) so that
    HTTP_MAX_CONNECTIONS connections fit beside the database pool and the rest; past the
    hard limit, a warning to log instead: the kernel would refuse connections first."""
    settings = get_settings()
    needed = settings.http_max_connections + settings.db_pool_size + _OTHER_DESCRIPTORS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return None
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target >= needed:
        return None
    return (
        f"HTTP_MAX_CONNECTIONS={settings.http_max_connections} needs about {needed} open "
        f"files per worker, and the limit is {target} (ulimit -n): lower HTTP_MAX_CONNECTIONS "
        "or raise the limit"
    )


class EdgeProtocol(HttpToolsProtocol):
    _last_warning = 0.0  # class-wide: one warning per interval per process

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        settings = get_settings()
        self._head_timeout = settings.http_header_timeout_seconds
        self._max_connections = settings.http_max_connections
        self._in_head = True  # bytes received now belong to a request head
        self._head_bytes = 0
        self._line_done = False
        self._tail = b""  # last bytes of the head so far: its end may straddle two reads
        self._head_start = b""  # the first bytes of the head (its method)
        self._header_count = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._dropped = 0

    # --- connection ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self._max_connections:
            now = time.monotonic()
            if now - EdgeProtocol._last_warning >= _WARN_EVERY:
                EdgeProtocol._last_warning = now
                logger.warning(
                    "refusing connections: %d open, HTTP_MAX_CONNECTIONS is %d",
                    len(self.connections) - 1,
                    self._max_connections,
                )
            self._refuse(TooManyConnections())
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            # Lingering: read and dropped, up to a bound.
            self._dropped += len(data)
            if self._dropped > LINGER_BYTES:
                self.transport.close()
            return
        if self._in_head and not self._head_fits(data):
            return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            if isinstance(cause, _Refused):
                self._refuse(cause.error)
            else:
                self._refuse(MalformedRequest(self._parser_problem(str(exc))))

    # --- the request head ---------------------------------------------------------------------

    def _head_fits(self, data: bytes) -> bool:
        """False (and the request refused) when `data` takes the head over a limit."""
        if self._head_bytes == 0:
            self._head_start = data[:8]
        if not self._line_done:
            newline = data.find(b"\n")
            line = self._head_bytes + (len(data) if newline < 0 else newline)
            if line > MAX_REQUEST_LINE:
                self._refuse(
                    UriTooLong(f"The request line must be at most {MAX_REQUEST_LINE} bytes.")
                )
                return False
            self._line_done = newline >= 0
        window = self._tail + data
        end = window.find(b"\r\n\r\n")
        head = self._head_bytes + (len(data) if end < 0 else end + 4 - len(self._tail))
        if head > MAX_HEAD:
            self._refuse(HeadersTooLarge(f"The request head must be at most {MAX_HEAD} bytes."))
            return False
        self._head_bytes += len(data)
        self._tail = window[-3:]
        return True

    @staticmethod
    def _parser_problem(reason: str) -> str:
        # llhttp's own wording names both headers ("... can't be present with ..."); the
        # others are told apart by no one but a parser's author, and stay generic.
        if "Content-Length" in reason and "Transfer-Encoding" in reason:
            return _BOTH_LENGTHS
        return "The request is not valid HTTP/1.1."

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:
            self._arm_head_timer()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > MAX_HEADERS:
            raise _Refused(HeadersTooLarge(f"At most {MAX_HEADERS} headers are accepted."))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        names = [name for name, _ in self.headers]
        if b"content-length" in names and b"transfer-encoding" in names:
            # llhttp refuses it already; kept in case a lenient parser setting lets it by.
            raise _Refused(MalformedRequest(_BOTH_LENGTHS))
        self._cancel_head_timer()
        self._in_head = False
        self._head_bytes = self._header_count = 0
        self._line_done = False
        self._tail = self._head_start = b""
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True

    # --- timers -------------------------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self._head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._refused or self.transport.is_closing():
            return
        if self._head_bytes == 0:
            self.transport.close()  # nothing sent: an idle connection, closed as keep-alive is
            return
        self._refuse(
            RequestTimeout(
                f"The request head must arrive within {self._head_timeout:g} s of its start."
            )
        )

    # --- refusing -----------------------------------------------------------------------------

    def _method(self) -> str:
        """The refused request's method, for the access line and metrics, if one was sent."""
        method = self._head_start.split(b" ", 1)[0]
        return method.decode() if method in _KNOWN_METHODS else "OTHER"

    def _refuse(self, error: AppError) -> None:
        """Answer `error` through the app, then close gracefully."""
        self._refused = True
        self._cancel_head_timer()
        self._unset_keepalive_if_required()
        busy = self.cycle
        if busy is not None and not busy.response_complete:
            # A request of this connection is being served (the fault is in its body, or in a
            # pipelined request behind it).
            if busy.response_started:
                # Its answer is on the wire: nothing can follow it but the end.
                logger.warning("closing a connection: %s", error.details)
                self.transport.close()
                return
            # It has not answered yet: it sees the client go away, and the refusal answers.
            busy.disconnected = True
            busy.message_event.set()
        scope: Any = {
            "type": "http",
            "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
            "http_version": "1.1",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "root_path": self.root_path,
            # What was refused is not routed: no path, no headers of the client's.
            "method": self._method(),
            "path": "",
            "raw_path": b"",
            "query_string": b"",
            "headers": [],
            "state": self.app_state.copy(),
            "extensions": {REFUSAL: error},
        }
        cycle = RequestResponseCycle(
            scope=scope,
            transport=self.transport,
            flow=self.flow,
            logger=self.logger,
            access_logger=self.access_logger,
            access_log=self.access_log,
            default_headers=self.server_state.default_headers,
            message_event=asyncio.Event(),
            expect_100_continue=False,
            keep_alive=True,  # closed by _linger once answered, not at once
            on_response=self._linger,
        )
        cycle.more_body = False
        self.cycle = cycle
        self._start_asgi_task(cycle, self.app)

    def _linger(self) -> None:
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)
