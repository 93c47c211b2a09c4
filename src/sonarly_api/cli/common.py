"""What every command shares: settings, the database, output and errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api.config import Settings, describe_settings_error, get_settings
from sonarly_api.db import DatabaseRefused, create_admin_engine
from sonarly_api.embedded_pg import EmbeddedPostgresError
from sonarly_api.ids import is_id
from sonarly_api.runtime import ResolvedDatabase, open_database
from sonarly_api.timestamps import iso_millis

T = TypeVar("T")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def fail(message: str, code: int = 1) -> NoReturn:
    # Escaped: messages quote user input, which Rich would otherwise read as markup.
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def load_settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as exc:
        fail(describe_settings_error(exc), code=2)


@dataclass(frozen=True)
class Admin:
    engine: AsyncEngine
    pepper: bytes


def run_with_database(work: Callable[[Admin], Awaitable[T]], *, migrate: bool | None = None) -> T:
    """Open the database (embedded or configured), run `work(admin)`, close everything."""
    settings = load_settings()

    async def main(database: ResolvedDatabase) -> T:
        # The service's server settings (`jit` off for the importer's large statements).
        engine = create_admin_engine(database.url)
        try:
            return await work(Admin(engine, database.pepper.encode()))
        finally:
            await engine.dispose()

    try:
        with open_database(settings, migrate=migrate) as database:
            return asyncio.run(main(database))
    except EmbeddedPostgresError as exc:
        fail(f"embedded PostgreSQL: {exc}")
    except DatabaseRefused as exc:
        fail(f"database: {exc.reason()}")
    except OSError as exc:
        # A file the command reads or writes names itself; a socket's error does not.
        if exc.filename is not None:
            fail(f"{exc.filename}: {exc.strerror or exc}")
        fail(f"database unreachable: {exc.strerror or exc}")


def print_json(value: Any) -> None:
    out.print_json(json.dumps(value))


def maybe_iso(value: datetime | None) -> str | None:
    return None if value is None else iso_millis(value)


def check_ids(ids: Sequence[str], option: str) -> list[str]:
    normalised = [i.strip().lower() for i in ids]
    bad = [i for i in normalised if not is_id(i)]
    if bad:
        fail(f"{option}: not an id (24 hex characters): {', '.join(bad)}", code=2)
    return normalised
