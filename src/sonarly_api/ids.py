"""Resource ids: 24 lowercase hex characters, the shape of a MongoDB ObjectId.

Four bytes of seconds since the epoch first (so ids sort by creation time and
B-tree inserts stay at the right edge), then eight random bytes.
"""

from __future__ import annotations

import os
import re
import time

ID_PATTERN = re.compile(r"[0-9a-f]{24}")


def new_id() -> str:
    return (int(time.time()) & 0xFFFFFFFF).to_bytes(4, "big").hex() + os.urandom(8).hex()


def is_id(value: str) -> bool:
    return ID_PATTERN.fullmatch(value) is not None
