"""Fixtures of the CLI tests: the environment a command reads, and the database it uses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sonarly_api.config import Settings, get_settings
from sonarly_api.migrations import upgrade
from tests.cli.helpers import CLI_PEPPER


# One database for all the CLI tests.
@pytest.fixture(scope="package")
def cli_database(create_database: Any) -> str:
    url: str = create_database("sonarly_cli")
    upgrade(url)
    return url


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No setting from the outer environment or a developer's `.env`."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)
    # `serve` sets JOB_WORKER for its server processes: undone after the test this way.
    monkeypatch.setenv("JOB_WORKER", "false")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def cli_env(clean_env: None, monkeypatch: pytest.MonkeyPatch, cli_database: str) -> str:
    monkeypatch.setenv("DATABASE_URL", cli_database)
    monkeypatch.setenv("API_KEY_PEPPER", CLI_PEPPER)
    return cli_database


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Should a start-up check fail to stop `serve`, fail the test instead of serving."""
    import uvicorn

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("serve went on to run uvicorn")

    monkeypatch.setattr(uvicorn, "run", refuse)
