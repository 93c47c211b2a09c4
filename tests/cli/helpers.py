"""Running the `sonarly-api` CLI in-process and reading what it prints, and the fixtures
of its environment and database (tests/cli/ and the feature CLIs' tests import them).

CLI commands call `asyncio.run`, which cannot run inside the test's event loop: async tests
(those that also call the API) run them in a thread with `asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from sonarly_api import cli
from sonarly_api.app import create_app
from sonarly_api.config import Settings, get_settings
from sonarly_api.migrations import upgrade
from tests.conftest import client_for, make_settings

# Not conftest's PEPPER: keys made here must only work with an app built on this pepper.
CLI_PEPPER = "cli-test-pepper-fedcba9876543210"
ISO_MILLIS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
ID = re.compile(r"[0-9a-f]{24}")
LOOKUP = "/v1/accounts/{group}/prospects/by-provider-id/{provider}"

runner = CliRunner()


def invoke(*args: str) -> Result:
    """Run the CLI with settings read afresh from the (monkeypatched) environment."""
    get_settings.cache_clear()
    try:
        return runner.invoke(cli.app, list(args))
    finally:
        get_settings.cache_clear()


def succeeded(result: Result) -> Result:
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def as_json(*args: str) -> Any:
    return json.loads(succeeded(invoke(*args, "--json")).stdout)


def failure_line(result: Result, exit_code: int) -> str:
    """The single `error: …` line a failed command prints on stderr (and nothing on stdout)."""
    assert result.exit_code == exit_code, (result.stdout, result.stderr, result.exception)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


async def in_thread(*args: str) -> Result:
    return await asyncio.to_thread(invoke, *args)


async def in_thread_json(*args: str) -> Any:
    return json.loads(succeeded(await in_thread(*args, "--json")).stdout)


@asynccontextmanager
async def api(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A running app on the CLI's database and pepper; no key cache, so revocation is
    seen at once."""
    settings = make_settings(database_url, api_key_pepper=CLI_PEPPER, key_cache_ttl_seconds=0)
    app = create_app(settings)
    async with app.router.lifespan_context(app), client_for(app) as http:
        yield http


def lookup(group: str, provider: str) -> str:
    return LOOKUP.format(group=group, provider=provider)


def create_key(name: str, groups: list[str], permissions: list[str]) -> list[str]:
    """`keys create` arguments, each option repeated as the CLI expects."""
    args = ["keys", "create", "--name", name]
    for group in groups:
        args += ["--account-group", group]
    for permission in permissions:
        args += ["--permission", permission]
    return args


def new_group(name: str = "Acme EMEA") -> str:
    group: str = as_json("account-groups", "create", "--name", name)["id"]
    return group


# A database of the importing module's own, migrated once.
@pytest.fixture(scope="module")
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
