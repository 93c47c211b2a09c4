"""`sonarly-api`: serve the API and administer it (database, account groups, keys, imports).

Every command reads the same settings as the server (environment and `.env`) and uses the same
database: the one DATABASE_URL names, or the embedded PostgreSQL when it is unset.
"""

from __future__ import annotations

import re

import typer

from sonarly_api.cli import account_groups, database, keys, prospects, server
from sonarly_api.cli.common import (
    Admin,
    JsonFlag,
    err,
    fail,
    load_settings,
    maybe_iso,
    out,
    print_json,
    run_with_database,
)
from sonarly_api.credits import cli as credits_cli
from sonarly_api.linkedin.cli import app as linkedin_app
from sonarly_api.prospecting import cli as worker_cli

# The feature sub-apps (credits, worker, linkedin) import the helpers above from this package
# when a command runs, as `from sonarly_api.cli import …`.
__all__ = [
    "Admin",
    "JsonFlag",
    "app",
    "err",
    "fail",
    "load_settings",
    "maybe_iso",
    "out",
    "print_json",
    "run_with_database",
]

# The help shows each line break of the docstring: one line per paragraph there.
app = typer.Typer(
    help=re.sub(r"(?<!\n)\n(?!\n)", " ", __doc__ or ""), no_args_is_help=True, add_completion=False
)
app.command()(server.serve)
app.add_typer(database.app, name="db")
app.add_typer(account_groups.app, name="account-groups")
app.add_typer(keys.app, name="keys")
app.add_typer(prospects.app, name="prospects")
app.add_typer(credits_cli.app, name="credits")
app.add_typer(worker_cli.app, name="worker")
app.add_typer(linkedin_app, name="linkedin")
