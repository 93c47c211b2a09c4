"""`sonarly-api credits`: grant credits to an account group and show its balance and ledger.

The main CLI module registers this sub-app, so its helpers (database, output, errors) are
imported inside the commands, once both modules are loaded.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from sonarly_api.credits import service
from sonarly_api.credits.schemas import CreditsView
from sonarly_api.ids import is_id

app = typer.Typer(help="Credits of account groups (balance and ledger).", no_args_is_help=True)

AccountGroupOption = Annotated[
    str, typer.Option("--account-group", help="The account group's id.", show_default=False)
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
# Far above any real grant, far below what the bigint balance holds.
MAX_GRANT = 1_000_000_000


def _group_id(value: str) -> str:
    from sonarly_api.cli import fail

    group_id = value.strip().lower()
    if not is_id(group_id):
        fail(f"--account-group: not an id (24 hex characters): {value}", code=2)
    return group_id


def _unknown_group(group_id: str) -> str:
    return f"--account-group: no such account group: {group_id}"


def _totals(view: CreditsView) -> dict[str, Any]:
    return {"balance": view.balance, "reserved": view.reserved, "available": view.available}


@app.command("grant")
def grant(
    account_group: AccountGroupOption,
    amount: Annotated[
        int, typer.Option(help=f"Credits to add (1 to {MAX_GRANT:,}).", show_default=False)
    ],
    note: Annotated[
        str | None, typer.Option(help="Why, kept in the ledger (e.g. an invoice number).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Add credits to an account group's balance."""
    from sonarly_api.cli import Admin, fail, out, print_json, run_with_database

    group_id = _group_id(account_group)
    if not 1 <= amount <= MAX_GRANT:
        fail(f"--amount must be 1 to {MAX_GRANT:,}", code=2)
    note = note.strip() if note is not None else None

    async def work(admin: Admin) -> CreditsView | None:
        try:
            async with admin.engine.begin() as conn:
                await service.grant(conn, group_id, amount, note or None)
                return await service.show(conn, group_id, limit=0)
        except service.UnknownAccountGroup:
            return None

    view = run_with_database(work)
    if view is None:
        fail(_unknown_group(group_id))
    if as_json:
        print_json({"accountGroupId": group_id, "granted": amount, **_totals(view)})
        return
    out.print(
        f"granted {amount:,} credits to {group_id}: balance {view.balance:,}, "
        f"reserved {view.reserved:,}, available {view.available:,}",
        highlight=False,
    )


@app.command("show")
def show(
    account_group: AccountGroupOption,
    limit: Annotated[int, typer.Option(help="How many ledger entries (newest first).")] = 20,
    as_json: JsonFlag = False,
) -> None:
    """Show an account group's credits and its last ledger entries.

    Available credits are the balance less what running jobs have reserved."""
    from sonarly_api.cli import Admin, fail, out, print_json, run_with_database

    group_id = _group_id(account_group)
    if not 0 <= limit <= 1000:
        fail("--limit must be 0 to 1000", code=2)

    async def work(admin: Admin) -> CreditsView | None:
        try:
            async with admin.engine.connect() as conn:
                return await service.show(conn, group_id, limit=limit)
        except service.UnknownAccountGroup:
            return None

    view = run_with_database(work)
    if view is None:
        fail(_unknown_group(group_id))
    if as_json:
        print_json(view.model_dump(mode="json", by_alias=True))
        return
    out.print(
        f"balance {view.balance:,}  reserved {view.reserved:,}  available {view.available:,}",
        highlight=False,
    )
    if not view.entries:
        out.print("no ledger entries", highlight=False)
        return
    # Fits 80 columns: the date without its milliseconds and zone (always UTC, said in the
    # heading), the note folded into what is left.
    table = Table(box=box.SIMPLE, pad_edge=False)
    table.add_column("when (UTC)", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("amount", justify="right", no_wrap=True)
    table.add_column("job", no_wrap=True)
    table.add_column("note", overflow="fold")
    for e in view.entries:
        table.add_row(
            e.created_at[:16].replace("T", " "),
            e.kind,
            f"{e.amount:,}",
            e.job_id or "",
            escape(e.note or ""),
        )
    out.print(table)
