"""The adapter's pure rules: the contract's error table, Retry-After, backoff, the answers it
accepts (docs/provider-api.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from sonarly_api.providers import wire
from sonarly_api.providers.calls import MESSAGES, Backoff, Verdict, failure, judge
from sonarly_api.providers.calls import retry_after_seconds as retry_after


class TestJudge:
    @pytest.mark.parametrize(
        ("status", "code", "verdict"),
        [
            (200, None, Verdict("ok")),
            (429, "rate_limited", Verdict("retry", "rate_limited")),
            (500, None, Verdict("retry", "bad_answer")),
            (503, None, Verdict("retry", "bad_answer")),
            (404, "not_found", Verdict("fail", "not_found")),
            (404, None, Verdict("fail", "not_found")),
            (404, "account_not_found", Verdict("fail", "disconnected")),
            (409, "account_disconnected", Verdict("fail", "disconnected")),
            (423, "account_restricted", Verdict("fail", "disconnected")),
            (400, "invalid_request", Verdict("fail", "refused")),
            (401, "invalid_token", Verdict("fail", "refused")),
            (403, "forbidden", Verdict("fail", "refused")),
            (302, None, Verdict("fail", "bad_answer")),
            (410, None, Verdict("fail", "bad_answer")),
        ],
    )
    def test_error_table(self, status: int, code: str | None, verdict: Verdict) -> None:
        assert judge(status, code) == verdict

    def test_codes_and_messages(self) -> None:
        assert (failure("disconnected").code, failure("not_found").code) == (
            "LINKEDIN_DISCONNECTED",
            "SOURCE_NOT_FOUND",
        )
        assert failure("not_connected").code == "LINKEDIN_NOT_CONNECTED"
        for kind in ("timeout", "refused", "rate_limited", "bad_answer"):
            error = failure(kind)
            assert (error.code, error.failure, error.message) == (
                "UPSTREAM_ERROR",
                kind,
                MESSAGES[kind],
            )
            assert error.message.startswith(f"{kind}: ")


class TestRetryAfter:
    NOW = datetime(2026, 12, 4, 14, 0, tzinfo=UTC)

    @pytest.mark.parametrize(
        ("header", "seconds"),
        [(None, None), ("3", 3.0), (" 0.5 ", 0.5), ("-4", 0.0), ("soon", None), ("nan", 0.0)],
    )
    def test_seconds(self, header: str | None, seconds: float | None) -> None:
        assert retry_after(header, self.NOW) == seconds

    def test_http_date(self) -> None:
        header = format_datetime(self.NOW + timedelta(seconds=30), usegmt=True)

        assert retry_after(header, self.NOW) == 30.0
        assert (
            retry_after(format_datetime(self.NOW - timedelta(hours=1), usegmt=True), self.NOW) == 0
        )


class TestBackoff:
    def test_full_jitter_within_the_exponential_ceiling(self) -> None:
        backoff = Backoff(base_seconds=0.25, cap_seconds=1.0)
        for attempt, ceiling in ((1, 0.25), (2, 0.5), (3, 1.0), (6, 1.0)):
            waits = [backoff.wait(attempt, None) for _ in range(200)]
            assert all(0 <= w <= ceiling for w in waits)
            assert len(set(waits)) > 100  # jittered, not in step

    def test_retry_after_is_a_floor(self) -> None:
        waits = [Backoff().wait(1, 2.0) for _ in range(100)]

        assert all(2.0 <= w <= 2.25 for w in waits)


def profile(**changes: Any) -> dict[str, Any]:
    return {
        "memberId": "ACoAAB1x",
        "publicIdentifier": "avery-stone",
        "profileUrl": "https://www.linkedin.com/in/avery-stone",
        "name": "Avery Stone",
        **changes,
    }


class TestWire:
    @pytest.mark.parametrize(
        ("url", "normalised"),
        [
            (
                "http://linkedin.com/in/Avery-Stone/?trk=x",
                "https://www.linkedin.com/in/avery-stone",
            ),
            ("https://de.linkedin.com/in/avery-stone", "https://www.linkedin.com/in/avery-stone"),
            ("https://evil.example/in/avery", "https://www.linkedin.com/in/fallback"),
            ("https://www.linkedin.com/sales/lead/123", "https://www.linkedin.com/in/fallback"),
        ],
    )
    def test_profile_url(self, url: str, normalised: str) -> None:
        assert wire.normalise_profile_url(url, "fallback") == normalised

    def test_page(self) -> None:
        page = wire.profile_page({"items": [profile(extra=1)], "nextCursor": "c2"}, "c1")

        assert page.next_cursor == "c2"
        assert page.profiles[0].member_id == "ACoAAB1x"
        assert page.profiles[0].headline is None

    @pytest.mark.parametrize(
        "body",
        [
            {"items": [profile(memberId="has space")]},
            {"items": [profile(memberId="")]},
            {"items": [profile(publicIdentifier=None)]},
            {"items": "nope"},
            {"results": []},
            [],
            {"items": [], "nextCursor": "c1"},  # the cursor sent: an endless loop
        ],
    )
    def test_bad_answers(self, body: Any) -> None:
        with pytest.raises(wire.BadAnswer):
            wire.profile_page(body, "c1")
