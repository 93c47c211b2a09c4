"""API key format: `sk_live_` + 22 base62 characters of randomness + 6 of CRC32 checksum.

The checksum lets a mistyped key be rejected before any database query. It is a typo check,
not a protection: CRC32 is public, so anyone can make well-formed keys at will, and those
reach the database like real ones (the authenticator caches them apart and reads each once).
The key is stored only as HMAC-SHA256(pepper, key) and compared by that digest.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib
from enum import Enum

PREFIX = "sk_live_"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_RANDOM_LEN = 22  # 62**22 > 2**130
_CHECKSUM_LEN = 6  # 62**6 > 2**32
KEY_LENGTH = len(PREFIX) + _RANDOM_LEN + _CHECKSUM_LEN
_KEY_PATTERN = re.compile(rf"{PREFIX}[0-9A-Za-z]{{{_RANDOM_LEN + _CHECKSUM_LEN}}}")


class KeyProblem(Enum):
    MALFORMED = "API key is malformed."
    BAD_CHECKSUM = "API key checksum is invalid."


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def _checksum(random_part: str) -> str:
    return _base62(zlib.crc32((PREFIX + random_part).encode()), _CHECKSUM_LEN)


def generate_key() -> str:
    random_part = "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_LEN))
    return PREFIX + random_part + _checksum(random_part)


def check_format(key: str) -> KeyProblem | None:
    """None when `key` is well formed with a valid checksum; otherwise what is wrong."""
    if _KEY_PATTERN.fullmatch(key) is None:
        return KeyProblem.MALFORMED
    body = key[len(PREFIX) :]
    if not hmac.compare_digest(_checksum(body[:_RANDOM_LEN]), body[_RANDOM_LEN:]):
        return KeyProblem.BAD_CHECKSUM
    return None


def hash_key(key: str, pepper: bytes) -> bytes:
    return hmac.new(pepper, key.encode(), hashlib.sha256).digest()
