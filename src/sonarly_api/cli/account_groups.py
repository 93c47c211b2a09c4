"""`sonarly-api account-groups`: create and list account groups (tenants)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from sonarly_api.accounts import repository as account_groups
from sonarly_api.cli.common import Admin, JsonFlag, fail, out, print_json, run_with_database
from sonarly_api.credits import cli as credits_cli
from sonarly_api.credits.plans import DEFAULT_PLAN, PLANS, parse_plan
from sonarly_api.timestamps import iso_millis

app = typer.Typer(help="Account groups (tenants).", no_args_is_help=True)


def group_json(row: account_groups.AccountGroupRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "plan": row.plan,
        "createdAt": iso_millis(row.created_at),
    }


@app.command("create")
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


@app.command("list")
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
