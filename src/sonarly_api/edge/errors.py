"""The edge's refusals, in the envelope like every other error (see sonarly_api/errors.py)."""

from __future__ import annotations

from sonarly_api.errors import AppError, BadRequest, ServiceUnavailable


class MalformedRequest(BadRequest):
    """400 VALIDATION_ERROR: the request cannot be read one way only (ambiguous or broken
    framing)."""

    message = "The request is malformed."


class RequestTimeout(AppError):
    status = 408
    code = "REQUEST_TIMEOUT"
    message = "The request was not received in time."


class UriTooLong(AppError):
    status = 414
    code = "URI_TOO_LONG"
    message = "The request URL is too long."


class HeadersTooLarge(AppError):
    status = 431
    code = "HEADERS_TOO_LARGE"
    message = "The request headers are too large."


class TooManyConnections(ServiceUnavailable):
    """503 SERVICE_UNAVAILABLE at the connection cap, which frees up sooner than a database
    comes back: a shorter Retry-After."""

    def __init__(self) -> None:
        super().__init__("The server has too many open connections. Retry shortly.")
        self.headers["Retry-After"] = "1"
