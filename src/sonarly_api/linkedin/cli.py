"""`sonarly-api linkedin connect | disconnect | status`: which provider account each account
group reads LinkedIn through (PROVIDER=http; the sandbox counts every group as connected)."""

from __future__ import annotations

import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy.exc import IntegrityError

from sonarly_api.accounts import repository as account_groups
from sonarly_api.ids import is_id
from sonarly_api.linkedin import repository
from sonarly_api.timestamps import iso_millis

if TYPE_CHECKING:
    from sonarly_api.cli import Admin

T = TypeVar("T")

app = typer.Typer(
    help="LinkedIn accounts of account groups (through the data provider, PROVIDER).",
    no_args_is_help=True,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
GroupOption = Annotated[str, typer.Option("--account-group", help="Account group id.")]


# The main CLI's plumbing (database, output, errors), imported when a command runs: the main
# CLI imports this module to register it.
def _run(work: Callable[[Admin], Awaitable[T]]) -> T:
    from sonarly_api.cli import run_with_database

    return run_with_database(work)


def _fail(message: str, code: int = 1) -> Any:
    from sonarly_api.cli import fail

    fail(message, code)


def _out(text: str) -> None:
    from sonarly_api.cli import out

    out.print(text, highlight=False)


def _print_json(value: Any) -> None:
    from sonarly_api.cli import print_json

    print_json(value)


def _group_id(raw: str) -> str:
    value = raw.strip().lower()
    if not is_id(value):
        _fail(f"--account-group: not an id (24 hex characters): {raw}", code=2)
    return value


def _provider_account(raw: str) -> str:
    value = raw.strip()
    if not 1 <= len(value) <= 256 or any(
        c.isspace() or unicodedata.category(c).startswith("C") for c in value
    ):
        _fail(
            "--provider-account: must be 1 to 256 characters without spaces or control characters",
            code=2,
        )
    return value


@dataclass(frozen=True)
class _Outcome:
    error: str | None = None
    connected_at: datetime | None = None
    previous: str | None = None


@app.command("connect")
def connect(
    account_group: GroupOption,
    provider_account: Annotated[
        str,
        typer.Option(
            "--provider-account",
            help="The provider's id of the LinkedIn account (see docs/provider-api.md).",
        ),
    ],
    as_json: JsonFlag = False,
) -> None:
    """Connect an account group to a provider account (replaces its current one)."""
    group = _group_id(account_group)
    account = _provider_account(provider_account)

    async def work(admin: Admin) -> _Outcome:
        async with admin.engine.begin() as conn:
            if not await account_groups.existing_ids(conn, [group]):
                return _Outcome(error=f"--account-group: no such account group: {group}")
            owner = await repository.group_of(conn, account)
            if owner is not None and owner != group:
                return _Outcome(
                    error=f"--provider-account: {account} is connected to account group "
                    f"{owner}; disconnect it there first"
                )
            previous = await repository.provider_account_of(conn, group)
            try:
                connected_at = await repository.connect(conn, group, account)
            except IntegrityError:
                # Another connect of the same provider account committed in between.
                return _Outcome(error=f"--provider-account: {account} was just connected elsewhere")
            return _Outcome(connected_at=connected_at, previous=previous)

    outcome = _run(work)
    if outcome.error is not None:
        _fail(outcome.error)
    assert outcome.connected_at is not None
    if as_json:
        _print_json(
            {
                "accountGroupId": group,
                "providerAccountId": account,
                "connectedAt": iso_millis(outcome.connected_at),
                "replaced": outcome.previous if outcome.previous != account else None,
            }
        )
        return
    _out(f"account group {group} reads LinkedIn through provider account {escape(account)}")
    if outcome.previous is not None and outcome.previous != account:
        _out(f"  (was {escape(outcome.previous)})")


@app.command("disconnect")
def disconnect(account_group: GroupOption, as_json: JsonFlag = False) -> None:
    """Disconnect an account group (its LinkedIn listings and jobs then answer 409)."""
    group = _group_id(account_group)

    async def work(admin: Admin) -> tuple[bool, str | None]:
        async with admin.engine.begin() as conn:
            if not await account_groups.existing_ids(conn, [group]):
                return False, None
            return True, await repository.disconnect(conn, group)

    exists, previous = _run(work)
    if not exists:
        _fail(f"--account-group: no such account group: {group}")
    if as_json:
        _print_json(
            {
                "accountGroupId": group,
                "disconnected": previous is not None,
                "providerAccountId": previous,
            }
        )
    elif previous is None:
        _out(f"account group {group} was not connected")
    else:
        _out(f"account group {group} disconnected from provider account {escape(previous)}")


@app.command("status")
def status(
    account_group: Annotated[
        str | None, typer.Option("--account-group", help="Only this account group.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Which account groups are connected, and to which provider account."""
    from sonarly_api.cli import load_settings

    group = None if account_group is None else _group_id(account_group)
    provider = load_settings().provider

    async def work(admin: Admin) -> list[repository.ConnectionStatus]:
        async with admin.engine.connect() as conn:
            return await repository.statuses(conn, group)

    rows = _run(work)
    if group is not None and not rows:
        _fail(f"--account-group: no such account group: {group}")
    if as_json:
        _print_json(
            {
                "provider": provider,
                "items": [
                    {
                        "accountGroupId": r.account_group_id,
                        "name": r.account_group_name,
                        "connected": r.provider_account_id is not None,
                        "providerAccountId": r.provider_account_id,
                        "connectedAt": None
                        if r.connected_at is None
                        else iso_millis(r.connected_at),
                    }
                    for r in rows
                ],
            }
        )
        return
    # Ids and dates whole; a long name or provider account folds instead (80 columns).
    table = Table()
    table.add_column("account group", no_wrap=True)
    table.add_column("name", overflow="fold")
    table.add_column("provider account", overflow="fold")
    table.add_column("since", no_wrap=True)
    for r in rows:
        table.add_row(
            r.account_group_id,
            escape(r.account_group_name),
            "-" if r.provider_account_id is None else escape(r.provider_account_id),
            "-" if r.connected_at is None else iso_millis(r.connected_at)[:10],
        )
    from sonarly_api.cli import out

    out.print(table)
    if provider == "sandbox":
        _out("PROVIDER=sandbox: every account group counts as connected (synthetic data).")
