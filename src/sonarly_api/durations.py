"""Durations as the CLI takes them: a whole number and one unit, `90d`, `24h`, `30m`, `3600s`.

Strict on purpose: a key's lifetime is a security setting, so `1.5h`, `1h30m`, `10` or
` 24h` are refused rather than guessed at.
"""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_PATTERN = re.compile(r"(0|[1-9][0-9]{0,9})([smhd])")
# Past this, `now + duration` could overflow a datetime; no key needs to live that long.
MAX = timedelta(days=36_500)
EXAMPLES = "90d, 24h, 30m or 3600s"


def parse_duration(text: str, *, allow_zero: bool = False) -> timedelta:
    """The duration `text` names; ValueError with a readable message otherwise. A bare `0`
    is accepted when zero is: it is unambiguous whatever the unit."""
    if allow_zero and text == "0":
        return timedelta(0)
    match = _PATTERN.fullmatch(text)
    if match is None:
        raise ValueError(f"not a duration like {EXAMPLES}: {text!r}")
    # Compared as an int first: `9999999999d` would overflow timedelta itself.
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if not seconds and not allow_zero:
        raise ValueError(f"must be longer than zero: {text!r}")
    if seconds > MAX.total_seconds():
        raise ValueError(f"must be at most {MAX.days}d: {text!r}")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The largest exact unit: 86400 s → `1d`, 5400 s → `90m`."""
    seconds = int(value.total_seconds())
    for unit, size in sorted(_UNITS.items(), key=lambda item: -item[1]):
        if seconds % size == 0 and seconds:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
