"""The CLI's duration syntax: one whole number and one unit, nothing guessed."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sonarly_api.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90d", timedelta(days=90)),
        ("24h", timedelta(hours=24)),
        ("30m", timedelta(minutes=30)),
        ("3600s", timedelta(hours=1)),
        ("1s", timedelta(seconds=1)),
        ("36500d", timedelta(days=36_500)),
    ],
)
def test_accepted(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "24", "1.5h", "1h30m", "-1h", "+1h", "24H", " 24h", "24h ", "1w", "01h", "1e3s", "h"],
)
def test_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration like 90d, 24h, 30m or 3600s"):
        parse_duration(text)


def test_zero_only_when_allowed() -> None:
    with pytest.raises(ValueError, match="longer than zero"):
        parse_duration("0s")
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("0")
    assert parse_duration("0", allow_zero=True) == timedelta(0)
    assert parse_duration("0h", allow_zero=True) == timedelta(0)


def test_too_long() -> None:
    with pytest.raises(ValueError, match="at most 36500d"):
        parse_duration("36501d")
    with pytest.raises(ValueError, match="at most"):
        parse_duration("9999999999d")


@pytest.mark.parametrize(
    ("seconds", "text"), [(86_400, "1d"), (5_400, "90m"), (7, "7s"), (7_200, "2h"), (0, "0s")]
)
def test_format(seconds: int, text: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == text
