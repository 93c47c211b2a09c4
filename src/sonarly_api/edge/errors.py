"""The edge's refusals, in the envelope like every other error (see sonarly_api/errors.py)."""

from __future__ import annotations

from sonarly_api.errors import AppError


class MalformedRequest(AppError):
    """400: the request cannot be read one way only (ambiguous or broken framing)."""

    status = 400
    code = "VALIDATION_ERROR"
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


class TooManyConnections(AppError):
    status = 503
    code = "SERVICE_UNAVAILABLE"
    message = "The service is temporarily unavailable."

    def __init__(self) -> None:
        super().__init__(
            "The server has too many open connections. Retry shortly.",
            headers={"Retry-After": "1"},
        )
