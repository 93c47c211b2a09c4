"""Every way a request can fail, rendered as the envelope: AppError, Starlette's HTTPException
(router 404/405), request validation, and anything unexpected."""

from __future__ import annotations

import logging
import traceback

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from sonarly_api.db import is_unavailable
from sonarly_api.envelope import error_response
from sonarly_api.errors import (
    AppError,
    InternalError,
    MethodNotAllowed,
    NotFound,
    ServiceUnavailable,
    ValidationFailed,
)

logger = logging.getLogger("sonarly_api.errors")

# The method the client sent, when the request guard serves HEAD as GET.
CLIENT_METHOD = "sonarly.client_method"

_BY_STATUS: dict[int, type[AppError]] = {
    404: NotFound,
    405: MethodNotAllowed,
    422: ValidationFailed,
}


def render(exc: AppError) -> Response:
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


async def _app_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    return render(exc)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    error_type = _BY_STATUS.get(exc.status_code)
    method = request.scope.get(CLIENT_METHOD, request.method)
    if error_type is NotFound:
        # A byte of the path that is not UTF-8 is a lone surrogate here (edge/paths.py):
        # shown as \xNN, since JSON cannot carry it.
        path = request.url.path.encode("utf-8", "surrogateescape").decode(
            "utf-8", "backslashreplace"
        )
        details = f"No route matches {method} {path}."
    elif error_type is MethodNotAllowed:
        allowed = (exc.headers or {}).get("Allow", "")
        if "GET" in allowed and "HEAD" not in allowed:
            allowed += ", HEAD"
        details = f"{method} is not allowed here. Allowed: {allowed}."
    else:
        details = None
    if error_type is None:
        return error_response(
            exc.status_code, "HTTP_ERROR", "Request failed.", details, exc.headers
        )
    error = error_type(details, headers=exc.headers)
    return render(error)


def _location(loc: tuple[int | str, ...]) -> str:
    # ("query", "limit") -> "limit"; ("path", "providerId") -> "providerId"
    parts = [str(p) for p in loc if p not in ("query", "path", "header", "body")]
    return ".".join(parts) or "request"


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    # Only loc and msg: `ctx` may hold raw exceptions and `input` echoes client data.
    details = "; ".join(f"{_location(tuple(e['loc']))}: {e['msg']}" for e in exc.errors())
    return render(ValidationFailed(details or None))


def render_unhandled(exc: BaseException) -> Response:
    """The response for an exception no handler took: 503 for an unreachable database,
    500 otherwise. Logged by type and place only: no message, no stack trace, no secrets."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name}" if frames else "?"
    if is_unavailable(exc):
        logger.warning("database unavailable: %s at %s", type(exc).__name__, where)
        return render(ServiceUnavailable())
    logger.error("unhandled %s at %s", type(exc).__name__, where)
    return render(InternalError())


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_error)
