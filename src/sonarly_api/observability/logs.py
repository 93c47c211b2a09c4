"""Logging through structlog: our lines, uvicorn's and SQLAlchemy's share one format — JSON in
production, readable on a terminal — and every line written during a request carries its
traceId.

stdlib loggers (uvicorn, SQLAlchemy, the app's `logging.getLogger`) are rendered by
structlog's `ProcessorFormatter`. The access line, one per request, is on the hot path: it
skips `logging.LogRecord` and structlog's generic machinery and goes through the same
renderer with the same keys (`AccessLog`), several times cheaper.

Logging belongs to the process: `configure_logging` is called by `serve` and in each worker
(observability/serving.py). An app built by `create_app` alone — tests, embedding — leaves
logging as it finds it and writes no access line until it is called.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any, Literal, TextIO

import structlog
from pydantic_core import to_json
from structlog.typing import EventDict, Processor, WrappedLogger

from sonarly_api.tracing import current_trace_id

LogFormat = Literal["json", "console"]

ACCESS_LOGGER = "sonarly_api.access"
_NO_TRACE = "0" * 32
_LEVELS = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": 5,  # uvicorn's TRACE level
}


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours, so that configuring again replaces it and leaves any other handler alone
    (pytest's log capture, for one). Without a stream of its own it writes to whatever
    `sys.stderr` is at the time, like `logging.lastResort`: a test runner that swaps and
    closes stderr must not leave it writing to a closed file."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__()
        self._own_stream = stream

    @property
    def stream(self) -> TextIO:
        return self._own_stream if self._own_stream is not None else sys.stderr

    @stream.setter
    def stream(self, _: TextIO) -> None:
        pass  # StreamHandler.__init__ sets it; ours is decided above


class _Clock:
    """ISO 8601 UTC with milliseconds, like the API's timestamps. Formatted at most once
    per millisecond, and the date and time once per second: `datetime.isoformat` on every
    line would cost more than the rest of an access line."""

    def __init__(self) -> None:
        self._millis = -1
        self._second = -1
        self._prefix = ""
        self._text = ""

    def now(self) -> str:
        millis = int(time.time() * 1000)
        if millis != self._millis:
            second, fraction = divmod(millis, 1000)
            if second != self._second:
                self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
                self._second = second
            self._text = f"{self._prefix}.{fraction:03d}Z"
            self._millis = millis
        return self._text


_clock = _Clock()


def _add_logger_name(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    record = event_dict.get("_record")
    if record is not None:
        event_dict["logger"] = record.name
    return event_dict


def _add_level_and_time(_: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    event_dict["level"] = "warning" if method == "warn" else method
    event_dict["timestamp"] = _clock.now()
    return event_dict


def _add_trace_id(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # Read when the line is formatted, which logging does synchronously in the caller's
    # context: the request's trace id is still set.
    trace_id = current_trace_id()
    if trace_id != _NO_TRACE:
        event_dict.setdefault("traceId", trace_id)
    return event_dict


def _exception_type_only(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # The service's rule: no stack trace or exception message in a log — either may carry
    # SQL, driver messages or secrets. The type is enough, with the traceId.
    exc_info = event_dict.pop("exc_info", None)
    event_dict.pop("stack_info", None)
    if exc_info is True:
        exc_info = sys.exc_info()
    if isinstance(exc_info, BaseException):
        event_dict["exception"] = type(exc_info).__name__
    elif isinstance(exc_info, tuple) and exc_info[0] is not None:
        event_dict["exception"] = exc_info[0].__name__
    return event_dict


def _json(event_dict: Any, **_: Any) -> str:
    # pydantic-core's serializer: several times faster than json.dumps.
    return to_json(event_dict, fallback=str).decode()


class AccessLog:
    """Writes the access line: the keys and rendering of every other line, without their
    cost."""

    def __init__(self, render: Callable[[EventDict], str], stream: TextIO | None) -> None:
        self._render = render
        self._stream = stream  # None: sys.stderr at the time of each line (see _Handler)

    def write(
        self,
        method: str,
        route: str,
        status: int,
        seconds: float,
        key_id: str | None,
        account_group_id: str | None,
        job_id: str | None = None,
    ) -> None:
        entry: EventDict = {
            "event": "request",
            "logger": ACCESS_LOGGER,
            "level": "info",
            "timestamp": _clock.now(),
            "traceId": current_trace_id(),
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": int(seconds * 1_000_000) / 1000,  # cheaper than round()
            "keyId": key_id,
            "accountGroupId": account_group_id,
        }
        if job_id is not None:
            entry["jobId"] = job_id  # a prospecting job's requests
        line = self._render(entry)
        stream = self._stream if self._stream is not None else sys.stderr
        try:  # noqa: SIM105 - free in 3.11+, where contextlib.suppress is not
            # One call with the whole line, and stderr is line-buffered: one system call,
            # and no other thread's line can land inside this one (the GIL covers the call).
            stream.write(line + "\n")
        except (OSError, ValueError):
            pass  # a log that cannot be written must not fail the request it describes


_access_log: AccessLog | None = None


def access_log() -> AccessLog | None:
    """The access log of this process; None until logging is configured, or above INFO."""
    return _access_log


def _isatty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


def resolve_format(configured: LogFormat | None, stream: TextIO) -> LogFormat:
    if configured is not None:
        return configured
    return "console" if _isatty(stream) else "json"


# Loggers of the job queue's libraries, whose warnings quote driver errors (socket paths,
# server messages) after a colon: only the part before it is kept.
_QUEUE_LIBRARIES = ("psycopg", "procrastinate")


def _queue_library_lines(record: logging.LogRecord) -> bool:
    if record.levelno >= logging.WARNING and record.name.startswith(_QUEUE_LIBRARIES):
        record.msg = record.getMessage().split(": ", 1)[0].strip()
        record.args = None
    return True


def configure_logging(
    level: str = "info",
    fmt: LogFormat | None = None,
    stream: TextIO | None = None,
) -> LogFormat:
    """Route every logger to `stream` (stderr) in one format; returns the format chosen.
    Idempotent: `serve` calls it, then each worker process once."""
    global _access_log
    fmt = resolve_format(fmt, stream if stream is not None else sys.stderr)
    levelno = _LEVELS.get(level.lower(), logging.INFO)
    shared: list[Processor] = [
        _add_logger_name,
        _add_level_and_time,
        _add_trace_id,
        _exception_type_only,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer(serializer=_json)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(
            colors=_isatty(stream if stream is not None else sys.stderr)
        )
    )

    handler = _Handler(stream)
    handler.addFilter(_queue_library_lines)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(levelno)
    for name in ("uvicorn", "uvicorn.error"):
        # Up to the root handler, whatever uvicorn's default configuration attached.
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # We write one access line per request ourselves, with the route template rather than
    # the raw path and its query string.
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.handlers.clear()
    uvicorn_access.propagate = False
    # SQLAlchemy logs statements and parameters at INFO: never, whatever LOG_LEVEL says.
    logging.getLogger("sqlalchemy").setLevel(max(levelno, logging.WARNING))

    # Native structlog loggers (structlog.get_logger()), should code use them: same lines.
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(levelno),
        logger_factory=lambda *_: structlog.WriteLogger(stream or sys.stderr),
        cache_logger_on_first_use=True,
    )

    def render(event_dict: EventDict) -> str:
        if fmt == "json":
            # Only strings and numbers: the serializer needs no fallback, which is faster.
            return to_json(event_dict).decode()
        line = renderer(None, "info", event_dict)
        assert isinstance(line, str)
        return line

    # Access lines are at INFO: LOG_LEVEL=warning silences them too.
    _access_log = AccessLog(render, stream) if levelno <= logging.INFO else None
    return fmt


def reset_logging() -> None:
    """Undo `configure_logging` (tests, or an embedding process taking logging back)."""
    global _access_log
    _access_log = None
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(handler)
    structlog.reset_defaults()
