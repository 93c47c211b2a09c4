"""`sonarly-api prospects import`: load a CSV or JSON Lines file into an account group."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from sonarly_api.cli.common import (
    Admin,
    JsonFlag,
    check_ids,
    err,
    fail,
    out,
    print_json,
    run_with_database,
)
from sonarly_api.import_progress import ImportProgress

app = typer.Typer(help="Prospects.", no_args_is_help=True)


@app.command("import")
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

    (group_id,) = check_ids([account_group], "--account-group")
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
