"""Settings that used to pass validation and fail later (or never) are refused at start-up
with one line naming the setting, as any invalid setting is."""

from __future__ import annotations

import pytest

from tests.cli.helpers import CLI_PEPPER, clean_env, failure_line, invoke, no_server

__all__ = ["clean_env", "no_server"]  # fixtures used below

DATABASE_URL = "postgresql://nobody@127.0.0.1:1/never_opened"


@pytest.fixture
def configured(clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # A configured server that is never reached: every refusal comes before any connection.
    monkeypatch.setenv("DATABASE_URL", DATABASE_URL)
    monkeypatch.setenv("API_KEY_PEPPER", CLI_PEPPER)


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        (
            "RATE_LIMIT_STORAGE_URI",
            "redis://127.0.0.1:notaport/0",
            "the port is not a number from 1 to 65535: '127.0.0.1:notaport'",
        ),
        (
            "RATE_LIMIT_STORAGE_URI",
            "redis://127.0.0.1:6379/zero",
            "the database is not a number: 'zero' (redis://host:port/0)",
        ),
        # Several limits: `limits` honoured the first only. One window per budget is what
        # the service counts, so several are refused.
        (
            "RATE_LIMIT",
            "600/minute;10/second",
            "one limit only, like '600/minute' (several were given): '600/minute;10/second'",
        ),
        (
            "AUTH_FAILURE_RATE_LIMIT",
            "30/minute,5/second",
            "one limit only, like '600/minute' (several were given): '30/minute,5/second'",
        ),
        ("DB_POOL_TIMEOUT_SECONDS", "inf", "Input should be a finite number"),
        ("DB_POOL_TIMEOUT_SECONDS", "nan", "Input should be a finite number"),
        ("DB_CONNECT_TIMEOUT_SECONDS", "inf", "Input should be a finite number"),
        ("KEY_CACHE_TTL_SECONDS", "nan", "Input should be a finite number"),
    ],
)
@pytest.mark.parametrize("command", [["serve"], ["keys", "list"]], ids=["serve", "keys-list"])
def test_refused_with_one_line_naming_it(
    configured: None,
    no_server: None,
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
    name: str,
    value: str,
    says: str,
) -> None:
    monkeypatch.setenv(name, value)

    line = failure_line(invoke(*command), 2)

    assert line == f"error: invalid setting {name}: {says}"


def test_a_password_in_the_storage_uri_is_never_echoed(
    configured: None, no_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RATE_LIMIT_STORAGE_URI", "redis://:s3cret-pass@redis.internal:port/0")

    line = failure_line(invoke("serve"), 2)

    assert "RATE_LIMIT_STORAGE_URI" in line
    assert "s3cret" not in line


def test_several_workers_with_per_process_counters_are_refused(
    configured: None, no_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sonarly_api.cli import server as cli

    def no_database(*_: object, **__: object) -> None:
        raise AssertionError("serve opened a database")

    monkeypatch.setattr(cli, "open_database", no_database)

    line = failure_line(invoke("serve", "--workers", "3"), 2)

    assert line == (
        "error: invalid setting RATE_LIMIT_STORAGE_URI: memory:// counts per process; "
        "--workers 3 needs redis://host:port/db"
    )


def test_one_worker_with_memory_counters_is_fine(
    configured: None, no_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sonarly_api.cli import server as cli

    opened: list[object] = []

    def record(*args: object, **_: object) -> None:
        opened.append(args)
        raise SystemExit(0)  # stop there: the check under test comes before

    monkeypatch.setattr(cli, "open_database", record)

    invoke("serve", "--workers", "1")

    assert len(opened) == 1
