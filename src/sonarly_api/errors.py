"""One error family. Every failure a client can see is an `AppError` rendered as the envelope."""

from __future__ import annotations

from collections.abc import Mapping


class AppError(Exception):
    status: int = 500
    code: str = "INTERNAL_ERROR"
    message: str = "An unexpected error occurred."

    def __init__(
        self,
        details: str | None = None,
        *,
        message: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(details or self.message)
        self.details = details
        if message is not None:
            self.message = message
        self.headers: dict[str, str] = dict(headers or {})


class Unauthorized(AppError):
    status = 401
    code = "UNAUTHORIZED"
    message = "Invalid or missing API key."

    def __init__(self, details: str) -> None:
        super().__init__(details, headers={"WWW-Authenticate": "Bearer"})


class PermissionDenied(AppError):
    status = 403
    code = "PERMISSION_DENIED"
    message = "The API key lacks the permission this endpoint requires."

    def __init__(self, permission: str) -> None:
        super().__init__(f"Missing permission: {permission}.")


class AccountGroupForbidden(AppError):
    status = 403
    code = "ACCOUNT_GROUP_FORBIDDEN"
    message = "The API key is not granted this account group."

    def __init__(self) -> None:
        # Deliberately says nothing about whether the group exists.
        super().__init__("Use an account group listed by GET /v1/accounts for this key.")


class NotFound(AppError):
    status = 404
    code = "NOT_FOUND"
    message = "Resource not found."


class MethodNotAllowed(AppError):
    status = 405
    code = "METHOD_NOT_ALLOWED"
    message = "Method not allowed on this resource."


class ValidationFailed(AppError):
    status = 422
    code = "VALIDATION_ERROR"
    message = "Request validation failed."


class RateLimited(AppError):
    status = 429
    code = "RATE_LIMITED"
    message = "Rate limit exceeded."


class ServiceUnavailable(AppError):
    status = 503
    code = "SERVICE_UNAVAILABLE"
    message = "The service is temporarily unavailable."

    def __init__(self, details: str = "The database cannot be reached. Retry shortly.") -> None:
        super().__init__(details, headers={"Retry-After": "2"})


class InternalError(AppError):
    """500: anything unexpected. Details never carry the exception text."""

    def __init__(self) -> None:
        super().__init__("The error was logged with this response's traceId.")


# --- providers and LinkedIn connections (branch provider) ------------------------------------


class BadRequest(AppError):
    """400 VALIDATION_ERROR: the answer of the job and Sales Navigator endpoints to invalid
    ids, bodies and queries (the lookup's path parameters keep the reference's 422,
    `ValidationFailed`). One class for both, so they cannot drift apart."""

    status = 400
    code = "VALIDATION_ERROR"
    message = "Request validation failed."


class LinkedInNotConnected(AppError):
    status = 409
    code = "LINKEDIN_NOT_CONNECTED"
    message = "No LinkedIn account is connected to this account group."

    def __init__(self) -> None:
        super().__init__(
            "LinkedIn-native sources need a connected LinkedIn account; an administrator "
            "connects one with `sonarly-api linkedin connect`."
        )


class UpstreamError(AppError):
    """502: the data provider failed after the adapter's bounded retries. `details` is the
    provider error's client-safe message (it names the failure class), never the provider's."""

    status = 502
    code = "UPSTREAM_ERROR"
    message = "The upstream data provider failed."
