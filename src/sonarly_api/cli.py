"""`sonarly-api`: serve the API and administer it (database, account groups, keys, imports).

Every command reads the same settings as the server (environment and `.env`) and reaches the
database through `runtime.open_database`, embedded or configured.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api.accounts import repository as account_groups
from sonarly_api.auth import keys as key_format
from sonarly_api.auth import repository as api_keys
from sonarly_api.auth.principal import PERMISSIONS
from sonarly_api.config import Settings, describe_settings_error, get_settings
from sonarly_api.credits import cli as credits_cli
from sonarly_api.credits.plans import DEFAULT_PLAN, PLANS, parse_plan
from sonarly_api.db import DatabaseRefused, create_admin_engine
from sonarly_api.demo import seed_demo
from sonarly_api.durations import EXAMPLES, format_duration, parse_duration
from sonarly_api.embedded_pg import EmbeddedPostgresError
from sonarly_api.ids import is_id
from sonarly_api.import_progress import ImportProgress
from sonarly_api.linkedin.cli import app as linkedin_app
from sonarly_api.prospecting import cli as worker_cli
from sonarly_api.runtime import ResolvedDatabase, open_database
from sonarly_api.timestamps import iso_millis, utcnow

T = TypeVar("T")

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
groups_app = typer.Typer(help="Account groups (tenants).", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
prospects_app = typer.Typer(help="Prospects.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(groups_app, name="account-groups")
app.add_typer(keys_app, name="keys")
app.add_typer(prospects_app, name="prospects")
app.add_typer(credits_cli.app, name="credits")
app.add_typer(worker_cli.app, name="worker")
app.add_typer(linkedin_app, name="linkedin")

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


# --- serve ----------------------------------------------------------------------------------

KEEP_ALIVE_SECONDS = 5  # an idle keep-alive connection is closed after this (uvicorn's default)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    migrate: Annotated[
        bool | None,
        typer.Option(
            "--migrate/--no-migrate",
            help="Apply migrations first (default: only for the embedded database).",
        ),
    ] = None,
    demo: Annotated[
        bool,
        typer.Option(help="On an empty database, create demo data and a key (see DEMO_DATA)."),
    ] = True,
    worker: Annotated[
        bool,
        typer.Option(
            "--worker/--no-worker",
            help="Also run prospecting jobs in each server process (with --workers N, N job "
            "workers). --no-worker leaves them to `sonarly-api worker` processes.",
        ),
    ] = True,
) -> None:
    """Serve the API (embedded PostgreSQL when DATABASE_URL is unset)."""
    import signal

    import uvicorn

    def exit_on_sigterm(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    # uvicorn re-raises SIGTERM after its graceful shutdown, under the handler it found. The
    # default one would kill the process on the spot, skipping the `with` blocks below, and
    # the embedded PostgreSQL would outlive the server; as SystemExit they unwind and stop it
    # (exit status 143, as for a process ended by SIGTERM). tests/faults/test_graceful_shutdown.
    signal.signal(signal.SIGTERM, exit_on_sigterm)

    from sonarly_api.observability.logs import configure_logging
    from sonarly_api.observability.serving import metrics_multiprocess_dir

    settings = load_settings()
    if settings.embedded and workers > 1:
        fail(
            "the embedded PostgreSQL serves a single worker process; "
            "set DATABASE_URL (and RATE_LIMIT_STORAGE_URI=redis://…) to run several",
            code=2,
        )
    if workers > 1 and settings.rate_limit_storage_uri.startswith("memory://"):
        # Each process would count alone: every budget N times what RATE_LIMIT says.
        fail(
            "invalid setting RATE_LIMIT_STORAGE_URI: memory:// counts per process; "
            f"--workers {workers} needs redis://host:port/db",
            code=2,
        )
    configure_logging(settings.log_level, settings.log_format)
    try:
        with open_database(settings, migrate=migrate) as database:
            # Workers build their app from the environment: hand them the resolved database.
            os.environ["DATABASE_URL"] = database.url
            os.environ["API_KEY_PEPPER"] = database.pepper
            os.environ["JOB_WORKER"] = "true" if worker else "false"
            get_settings.cache_clear()
            seed_demo(database, host=host, port=port, enabled=demo and settings.demo_data)
            where = (
                f"embedded ({settings.embedded_pg_dir})" if database.embedded else "DATABASE_URL"
            )
            # A log line, not a print: with LOG_FORMAT=json every line on stderr is JSON.
            logging.getLogger("sonarly_api.serve").info(
                "Sonarly API on http://%s:%s  docs: http://%s:%s/docs  database: %s",
                host,
                port,
                host,
                port,
                where,
            )
            # The HTTP edge (sonarly_api/edge): bounded request heads, a header timeout, a
            # connection cap, refusals in the envelope; X-Forwarded-For only from TRUSTED_PROXIES.
            from sonarly_api.edge.protocol import describe_limits, ensure_descriptors

            if (too_few := ensure_descriptors()) is not None:
                logging.getLogger("sonarly_api.serve").warning(too_few)
            logging.getLogger("sonarly_api.serve").info(
                "HTTP limits: %s; keep-alive %d s; X-Forwarded-For trusted from: %s",
                describe_limits(),
                KEEP_ALIVE_SECONDS,
                settings.trusted_proxies or "no one (TRUSTED_PROXIES is empty)",
            )
            with metrics_multiprocess_dir(workers):
                # Each worker configures its logging in create_served_app; uvicorn's access
                # log is off because the app writes its own line per request.
                uvicorn.run(
                    "sonarly_api.observability.serving:create_served_app",
                    factory=True,
                    host=host,
                    port=port,
                    workers=workers,
                    server_header=False,
                    timeout_graceful_shutdown=settings.shutdown_grace_seconds,
                    # uvicorn's default 5 s let it kill workers still importing on a busy host
                    # (seen in the benchmark), restarting them in a loop.
                    timeout_worker_healthcheck=30,
                    log_level=settings.log_level,
                    log_config=None,
                    access_log=False,
                    http="sonarly_api.edge.protocol:EdgeProtocol",
                    timeout_keep_alive=KEEP_ALIVE_SECONDS,
                    proxy_headers=bool(settings.trusted_proxies),
                    forwarded_allow_ips=settings.trusted_proxies or None,
                )
    except EmbeddedPostgresError as exc:
        fail(f"embedded PostgreSQL: {exc}")


# --- db -------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    settings = load_settings()
    try:
        with open_database(settings, migrate=True):
            pass
    except EmbeddedPostgresError as exc:
        fail(f"embedded PostgreSQL: {exc}")
    err.print("database is at the latest schema revision")


# --- account groups -------------------------------------------------------------------------


def group_json(row: account_groups.AccountGroupRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "plan": row.plan,
        "createdAt": iso_millis(row.created_at),
    }


@groups_app.command("create")
def groups_create(
    name: Annotated[str, typer.Option(help="Display name (1–200 characters).")],
    plan: Annotated[str, typer.Option(help=f"One of {', '.join(PLANS)}.")] = DEFAULT_PLAN,
    credits: Annotated[
        int, typer.Option(help=f"Credits granted at creation (0 to {credits_cli.MAX_GRANT:,}).")
    ] = 0,
    as_json: JsonFlag = False,
) -> None:
    """Create an account group."""
    from sonarly_api.accounts import service as accounts

    name = name.strip()
    if not 1 <= len(name) <= 200:
        fail("--name must be 1 to 200 characters", code=2)
    try:
        chosen = parse_plan(plan)
    except ValueError:
        fail(f"--plan must be one of {', '.join(PLANS)}, not {plan!r}", code=2)
    if not 0 <= credits <= credits_cli.MAX_GRANT:
        fail(f"--credits must be 0 to {credits_cli.MAX_GRANT:,}", code=2)

    async def work(admin: Admin) -> account_groups.AccountGroupRow:
        async with admin.engine.begin() as conn:
            return await accounts.create(conn, name, chosen, credits)

    row = run_with_database(work)
    if as_json:
        print_json(group_json(row))
    else:
        out.print(
            f"created account group [bold]{row.id}[/] ({escape(row.name)}), "
            f"plan {row.plan}, {credits:,} credits",
            highlight=False,
        )


@groups_app.command("list")
def groups_list(as_json: JsonFlag = False) -> None:
    """List every account group."""

    async def work(admin: Admin) -> list[account_groups.AccountGroupRow]:
        async with admin.engine.connect() as conn:
            return await account_groups.list_all(conn)

    rows = run_with_database(work)
    if as_json:
        print_json([group_json(r) for r in rows])
        return
    table = Table("id", "name", "plan", "created")
    for r in rows:
        table.add_row(r.id, escape(r.name), r.plan, iso_millis(r.created_at))
    out.print(table)


# --- keys -----------------------------------------------------------------------------------


ExpiresIn = Annotated[
    str | None,
    typer.Option("--expires-in", help=f"Lifetime of the key ({EXAMPLES}); default: none."),
]


def _duration_option(
    value: str | None, option: str, *, allow_zero: bool = False
) -> timedelta | None:
    if value is None:
        return None
    try:
        return parse_duration(value, allow_zero=allow_zero)
    except ValueError as exc:
        fail(f"{option}: {exc}", code=2)


def _check_ids(ids: Sequence[str], option: str) -> list[str]:
    normalised = [i.strip().lower() for i in ids]
    bad = [i for i in normalised if not is_id(i)]
    if bad:
        fail(f"{option}: not an id (24 hex characters): {', '.join(bad)}", code=2)
    return normalised


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="What the key is for.")],
    account_group: Annotated[
        list[str], typer.Option("--account-group", help="Account group id (repeatable).")
    ],
    permission: Annotated[
        list[str],
        typer.Option("--permission", help=f"One of {', '.join(PERMISSIONS)} (repeatable)."),
    ],
    expires_in: ExpiresIn = None,
    as_json: JsonFlag = False,
) -> None:
    """Issue an API key. The key is printed once and never stored."""
    name = name.strip()
    if not name:
        fail("--name must not be empty", code=2)
    lifetime = _duration_option(expires_in, "--expires-in")
    group_ids = _check_ids(account_group, "--account-group")
    unknown_permissions = sorted(set(permission) - set(PERMISSIONS))
    if unknown_permissions:
        fail(
            f"--permission: unknown {', '.join(unknown_permissions)} "
            f"(known: {', '.join(PERMISSIONS)})",
            code=2,
        )
    secret = key_format.generate_key()

    async def work(admin: Admin) -> str | list[str]:
        async with admin.engine.begin() as conn:
            missing = sorted(set(group_ids) - await account_groups.existing_ids(conn, group_ids))
            if missing:
                return missing
            return await api_keys.create_key(
                conn,
                name=name,
                key_hash=key_format.hash_key(secret, admin.pepper),
                permissions=permission,
                account_group_ids=group_ids,
                expires_at=None if lifetime is None else utcnow() + lifetime,
            )

    result = run_with_database(work)
    if isinstance(result, list):
        fail(f"--account-group: no such account group: {', '.join(result)}")
    document: dict[str, Any] = {
        "id": result,
        "key": secret,
        "name": name,
        "permissions": sorted(set(permission)),
        "accountGroupIds": sorted(set(group_ids)),
    }
    if as_json:
        print_json(document)
        return
    out.print(f"created key [bold]{result}[/] ({escape(name)})", highlight=False)
    out.print(f"  permissions:    {', '.join(document['permissions'])}", highlight=False)
    out.print(f"  account groups: {', '.join(document['accountGroupIds'])}", highlight=False)
    if lifetime is not None:
        out.print(f"  expires in:     {format_duration(lifetime)}", highlight=False)
    _print_secret(secret)


def _print_secret(secret: str) -> None:
    out.print(f"\n  {secret}\n", style="bold green", highlight=False)
    out.print("Store it now: it is shown only this once.", style="yellow")


def key_json(key: api_keys.KeySummary) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "permissions": key.permissions,
        "accountGroupIds": key.account_group_ids,
        "createdAt": iso_millis(key.created_at),
        "lastUsedAt": maybe_iso(key.last_used_at),
        "revokedAt": maybe_iso(key.revoked_at),
        "expiresAt": maybe_iso(key.expires_at),
    }


@keys_app.command("list")
def keys_list(as_json: JsonFlag = False) -> None:
    """List API keys (never their secrets)."""

    async def work(admin: Admin) -> list[api_keys.KeySummary]:
        async with admin.engine.connect() as conn:
            return await api_keys.list_keys(conn)

    rows = run_with_database(work)
    if as_json:
        print_json([key_json(k) for k in rows])
        return
    table = Table(
        "id", "name", "permissions", "account groups", "created", "last used", "expires", "revoked"
    )
    for k in rows:
        table.add_row(
            k.id,
            escape(k.name),
            ", ".join(k.permissions),
            ", ".join(k.account_group_ids),
            iso_millis(k.created_at),
            maybe_iso(k.last_used_at) or "",
            maybe_iso(k.expires_at) or "",
            maybe_iso(k.revoked_at) or "",
        )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (not the key).")]) -> None:
    """Revoke a key. Running servers stop accepting it within KEY_CACHE_TTL_SECONDS."""
    (key_id,) = _check_ids([key_id], "KEY_ID")

    async def work(admin: Admin) -> bool:
        async with admin.engine.begin() as conn:
            return await api_keys.revoke_key(conn, key_id)

    if not run_with_database(work):
        fail(f"no API key with id {key_id}")
    ttl = load_settings().key_cache_ttl_seconds
    out.print(f"revoked key {key_id} (running servers refuse it within {ttl:g} s)", highlight=False)


@keys_app.command("rotate")
def keys_rotate(
    key_id: Annotated[str, typer.Argument(help="The key's id (not the key).")],
    grace: Annotated[
        str,
        typer.Option(help=f"How long the old key keeps working ({EXAMPLES}, or 0)."),
    ] = "24h",
    expires_in: ExpiresIn = None,
    as_json: JsonFlag = False,
) -> None:
    """Replace a key: a new secret with the same name, permissions and account groups. The
    old key keeps working for --grace, so clients can switch without an outage."""
    (key_id,) = _check_ids([key_id], "KEY_ID")
    grace_period = _duration_option(grace, "--grace", allow_zero=True)
    assert grace_period is not None
    lifetime = _duration_option(expires_in, "--expires-in")
    secret = key_format.generate_key()

    async def work(admin: Admin) -> api_keys.Rotation | str:
        now = utcnow()
        try:
            async with admin.engine.begin() as conn:
                rotation = await api_keys.rotate_key(
                    conn,
                    key_id,
                    key_hash=key_format.hash_key(secret, admin.pepper),
                    grace=grace_period,
                    now=now,
                    expires_at=None if lifetime is None else now + lifetime,
                )
        except api_keys.KeyNotRotatable as exc:
            return str(exc)
        return f"no API key with id {key_id}" if rotation is None else rotation

    result = run_with_database(work)
    if isinstance(result, str):
        fail(result)
    old_expiry = iso_millis(result.old_key_expires_at)
    if as_json:
        print_json(
            {
                "id": result.key_id,
                "key": secret,
                "name": result.name,
                "permissions": result.permissions,
                "accountGroupIds": result.account_group_ids,
                "replaces": key_id,
                "oldKeyExpiresAt": old_expiry,
            }
        )
        return
    out.print(
        f"rotated key {key_id}: new key [bold]{result.key_id}[/] ({escape(result.name)})",
        highlight=False,
    )
    out.print(f"  permissions:    {', '.join(result.permissions)}", highlight=False)
    out.print(f"  account groups: {', '.join(result.account_group_ids)}", highlight=False)
    if lifetime is not None:
        out.print(f"  expires in:     {format_duration(lifetime)}", highlight=False)
    # A server that cached the old key before the rotation learns its expiry within the TTL.
    ttl = load_settings().key_cache_ttl_seconds
    out.print(
        f"  old key {key_id} stops working at {old_expiry} (running servers: within {ttl:g} s)",
        highlight=False,
    )
    _print_secret(secret)


# --- prospects ------------------------------------------------------------------------------


@prospects_app.command("import")
def prospects_import(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="CSV or JSON Lines.")
    ],
    account_group: Annotated[str, typer.Option("--account-group", help="Target account group.")],
    skip_invalid: Annotated[
        bool, typer.Option(help="Import the valid rows; write the rejected ones to --rejects.")
    ] = False,
    rejects: Annotated[
        Path | None, typer.Option(help="Where --skip-invalid writes rejected rows.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Import prospects into an account group, all or nothing (re-importing changes nothing)."""
    from sonarly_api.prospects.import_rejects import RejectsFileError, check_rejects_path
    from sonarly_api.prospects.importer import ImportFailed, ImportSummary, import_prospects

    (group_id,) = _check_ids([account_group], "--account-group")
    if rejects is not None and not skip_invalid:
        fail("--rejects goes with --skip-invalid", code=2)
    if skip_invalid and rejects is None:
        rejects = file.with_name(file.name + ".rejects.csv")
    if rejects is not None:
        try:
            check_rejects_path(rejects, file)  # before anything is opened or written
        except RejectsFileError as exc:
            fail(f"--rejects: {exc}", code=2)
    committed: list[ImportSummary] = []

    async def work(admin: Admin) -> ImportSummary:
        # On stderr: stdout carries only the result (the --json document).
        with ImportProgress(err, file.stat().st_size) as progress:
            summary = await import_prospects(
                admin.engine,
                group_id,
                file,
                skip_invalid=skip_invalid,
                rejects_path=rejects,
                on_progress=progress.rows,
                on_bytes_read=progress.bytes_read,
            )
        committed.append(summary)
        return summary

    try:
        summary = run_with_database(work)
    except typer.Exit:
        if not committed:
            raise
        # Whatever failed after the commit (closing the database) did not undo the import.
        summary = committed[0]
        err.print("the import was committed: the error above came after it", highlight=False)
    except ImportFailed as exc:
        if as_json:
            print_json(
                {
                    "imported": False,
                    "errors": [{"line": e.line, "reason": e.reason} for e in exc.errors],
                }
            )
        err.print(
            f"[bold red]import failed, nothing was written:[/] {escape(str(exc))}", highlight=False
        )
        for e in exc.errors:
            err.print(f"  line {e.line}: {escape(e.reason)}", highlight=False)
        raise typer.Exit(1) from None
    document: dict[str, Any] = {
        "imported": True,
        "rowsRead": summary.rows_read,
        "created": summary.created,
        "updated": summary.updated,
        "unchanged": summary.unchanged,
        "rejected": summary.rejected,
    }
    if summary.rejects_warning is not None:
        document["warning"] = summary.rejects_warning
        err.print(f"[bold yellow]warning:[/] {escape(summary.rejects_warning)}", highlight=False)
    if as_json:
        print_json(document)
        return
    out.print(
        f"imported {escape(file.name)}: {summary.rows_read} rows read, {summary.created} created, "
        f"{summary.updated} updated, {summary.unchanged} unchanged, {summary.rejected} rejected",
        highlight=False,
    )
    if summary.rejected and rejects is not None and summary.rejects_warning is None:
        out.print(f"rejected rows and reasons: {escape(str(rejects))}", highlight=False)
