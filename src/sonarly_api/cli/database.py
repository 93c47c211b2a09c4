"""`sonarly-api db`: the database schema."""

from __future__ import annotations

import typer

from sonarly_api.cli.common import err, fail, load_settings
from sonarly_api.embedded_pg import EmbeddedPostgresError
from sonarly_api.runtime import open_database

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    settings = load_settings()
    try:
        with open_database(settings, migrate=True):
            pass
    except EmbeddedPostgresError as exc:
        fail(f"embedded PostgreSQL: {exc}")
    err.print("database is at the latest schema revision")
