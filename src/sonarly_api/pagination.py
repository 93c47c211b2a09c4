"""Opaque cursors for `{items, nextCursor, hasMore}` lists."""

from __future__ import annotations

import base64
import binascii

from sonarly_api.errors import ValidationFailed
from sonarly_api.ids import is_id

DEFAULT_LIMIT = 50
MAX_LIMIT = 100


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(f"v1:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    """The id the cursor points after, or None for the first page (also for an empty cursor,
    `?cursor=`, which the document's schema allows)."""
    if not cursor:
        return None
    try:
        decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = ""
    version, _, last_id = decoded.partition(":")
    if version != "v1" or not is_id(last_id):
        raise ValidationFailed("cursor: not a cursor returned by this endpoint.")
    return last_id
