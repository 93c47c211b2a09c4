"""A request path that is not UTF-8 once percent-decoded.

The HTTP server decodes such a path with U+FFFD replacement characters, so `x%ff` would look up
a stored `x\\ufffd`. Here the path is decoded again with each invalid byte kept as a lone
surrogate (Python's surrogateescape): no stored value has one, the routes still match it, and
the route's validation refuses it in its place in the order of checks (422 for the lookup's
`providerId`, after authentication, the rate limit and the permission).
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from sonarly_api.tracing import Scope


def path_with_invalid_bytes(scope: Scope) -> str | None:
    """The path, its invalid UTF-8 bytes as lone surrogates; None when it is valid UTF-8."""
    raw: bytes | None = scope.get("raw_path")
    if raw is None:
        return None
    # Some servers (and test clients) leave the query string in raw_path.
    raw = raw.split(b"?", 1)[0]
    if b"%" not in raw and raw.isascii():
        return None
    decoded = unquote_to_bytes(raw)
    try:
        decoded.decode("utf-8")
    except UnicodeDecodeError:
        return decoded.decode("utf-8", "surrogateescape")
    return None


# Set once the path was looked at: the fast lane does it before matching, the request guard
# after it, and a path is decoded once.
_CHECKED = "sonarly.path_checked"


def keep_invalid_bytes(scope: Scope) -> None:
    """Put the surrogate form in `scope["path"]` when the path is not UTF-8."""
    if scope.get(_CHECKED):
        return
    scope[_CHECKED] = True
    path = path_with_invalid_bytes(scope)
    if path is not None:
        scope["path"] = path
