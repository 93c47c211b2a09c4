"""Every command refuses bad settings with one `error:` line naming the setting."""

from __future__ import annotations

import pytest

from tests.cli.helpers import failure_line, invoke


class TestSettingsErrors:
    @pytest.mark.parametrize(
        "command",
        [["account-groups", "list"], ["keys", "list"], ["db", "upgrade"], ["serve"]],
        ids=["groups", "keys", "db", "serve"],
    )
    def test_bad_rate_limit(
        self, cli_env: str, no_server: None, monkeypatch: pytest.MonkeyPatch, command: list[str]
    ) -> None:
        monkeypatch.setenv("RATE_LIMIT", "banana")

        line = failure_line(invoke(*command), 2)

        assert "RATE_LIMIT" in line
        assert "banana" in line

    def test_database_url_without_pepper(
        self, cli_env: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("API_KEY_PEPPER")

        line = failure_line(invoke("account-groups", "list"), 2)

        assert "API_KEY_PEPPER" in line

    def test_short_pepper(self, cli_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("API_KEY_PEPPER", "short")

        line = failure_line(invoke("keys", "list"), 2)

        assert "API_KEY_PEPPER" in line
        assert "16 characters" in line
        assert "short" not in line.replace("API_KEY_PEPPER", "")

    def test_bad_database_url(self, cli_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("DATABASE_URL", "mysql://db/x")

        line = failure_line(invoke("keys", "list"), 2)

        assert "DATABASE_URL" in line
