"""Where the database is: the configured server, or the embedded one started on demand.

Every entry point (server, CLI commands) goes through `open_database`, so they all read the
same configuration and the embedded server is started, migrated and stopped in one place.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sonarly_api.config import Settings
from sonarly_api.embedded_pg import EmbeddedPostgres, read_or_create_secret
from sonarly_api.migrations import upgrade

EMBEDDED_DATABASE = "sonarly"


@dataclass(frozen=True)
class ResolvedDatabase:
    url: str
    pepper: str
    embedded: bool


@contextmanager
def open_database(settings: Settings, *, migrate: bool | None = None) -> Iterator[ResolvedDatabase]:
    """Yield the database to use. `migrate=None` migrates only the embedded database (a
    configured server is migrated explicitly with `sonarly-api db upgrade`)."""
    if settings.database_url is not None:
        assert settings.api_key_pepper is not None  # enforced by Settings
        if migrate:
            upgrade(settings.database_url)
        yield ResolvedDatabase(
            settings.database_url, settings.api_key_pepper.get_secret_value(), embedded=False
        )
        return

    base_dir = settings.embedded_pg_dir.resolve()
    server = EmbeddedPostgres(base_dir)
    server.start()
    try:
        server.ensure_database(EMBEDDED_DATABASE)
        url = server.url(EMBEDDED_DATABASE)
        if migrate is None or migrate:
            upgrade(url)
        pepper = (
            settings.api_key_pepper.get_secret_value()
            if settings.api_key_pepper is not None
            else read_or_create_secret(base_dir / "api-key-pepper")
        )
        yield ResolvedDatabase(url, pepper, embedded=True)
    finally:
        server.stop()
