"""`sonarly-api db upgrade` and the start-up checks of `sonarly-api serve`."""

from __future__ import annotations

from typing import Any

import pytest

from sonarly_api.cli import server as serve_command
from tests.cli.helpers import CLI_PEPPER, as_json, failure_line, invoke, succeeded


class TestDbUpgrade:
    def test_makes_a_fresh_database_usable(
        self, clean_env: None, monkeypatch: pytest.MonkeyPatch, create_database: Any
    ) -> None:
        monkeypatch.setenv("DATABASE_URL", create_database("sonarly_cli_fresh"))
        monkeypatch.setenv("API_KEY_PEPPER", CLI_PEPPER)
        assert invoke("account-groups", "list", "--json").exit_code != 0  # no tables yet

        result = succeeded(invoke("db", "upgrade"))

        assert "latest schema revision" in result.stderr
        assert as_json("account-groups", "list") == []
        group = as_json("account-groups", "create", "--name", "first")
        assert as_json("account-groups", "list") == [group]
        succeeded(invoke("db", "upgrade"))  # again: nothing to do
        assert as_json("account-groups", "list") == [group]


class TestServe:
    def test_embedded_database_refuses_several_workers(
        self, clean_env: None, no_server: None, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def no_database(*_: object, **__: object) -> None:
            raise AssertionError("serve opened a database")

        monkeypatch.setattr(serve_command, "open_database", no_database)

        line = failure_line(invoke("serve", "--workers", "2"), 2)

        assert "embedded PostgreSQL" in line
        assert "single worker" in line
        assert "DATABASE_URL" in line

    def test_zero_workers_is_a_usage_error(self, clean_env: None, no_server: None) -> None:
        result = invoke("serve", "--workers", "0")

        assert result.exit_code == 2
        assert "--workers" in result.stderr
