"""`sonarly-api prospects import` and the files around it (issue 17): a rejects path that is
the input is refused before anything is written, a file's error is named as such (never
"database unreachable"), and a committed import is never reported as failed. Real CLI (in
process), real PostgreSQL."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from sonarly_api.db import async_url

# The CLI tests' database and environment (fixtures) and runner.
from tests.cli.helpers import clean_env, cli_database, cli_env, in_thread, in_thread_json

__all__ = ["clean_env", "cli_database", "cli_env"]


async def provider_ids(database_url: str, group: str) -> list[str]:
    engine = create_async_engine(async_url(database_url))
    try:
        async with engine.connect() as conn:
            result = await conn.execute(
                text("SELECT provider_id FROM prospects WHERE account_group_id = :g ORDER BY 1"),
                {"g": group},
            )
            return [str(value) for value in result.scalars()]
    finally:
        await engine.dispose()


async def new_group(name: str) -> str:
    return str((await in_thread_json("account-groups", "create", "--name", name))["id"])


def rows_file(path: Path) -> Path:
    tag = secrets.token_hex(4)
    path.write_text(f"providerId,name\nok-{tag},Fine\nbad/{tag},Slash\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("link", [False, True], ids=["same-name", "hard-link"])
async def test_rejects_that_is_the_input_is_refused_before_anything_is_written(
    cli_env: str, tmp_path: Path, link: bool
) -> None:
    group = await new_group("same file")
    source = rows_file(tmp_path / "same.csv")
    before = source.read_bytes()
    rejects = tmp_path / "other-name.csv" if link else source
    if link:
        os.link(source, rejects)

    result = await in_thread(
        "prospects", "import", str(source), "--account-group", group,
        "--skip-invalid", "--rejects", str(rejects),
    )  # fmt: skip

    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    assert result.stderr.strip() == (
        f"error: --rejects: the rejects file {rejects} is the file being imported; choose"
        " another path"
    )
    assert source.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == sorted({source.name, rejects.name})
    assert await provider_ids(cli_env, group) == []


async def test_an_unwritable_rejects_path_is_named_not_the_database(
    cli_env: str, tmp_path: Path
) -> None:
    group = await new_group("unwritable")
    rejects = tmp_path / "no-such-directory" / "rejects.csv"

    result = await in_thread(
        "prospects", "import", str(rows_file(tmp_path / "in.csv")), "--account-group", group,
        "--skip-invalid", "--rejects", str(rejects),
    )  # fmt: skip

    assert result.exit_code == 1, (result.stdout, result.stderr, result.exception)
    assert "database unreachable" not in result.stderr
    assert f"cannot write the rejects file {rejects}.partial: No such file or directory" in (
        " ".join(result.stderr.split())
    )
    assert await provider_ids(cli_env, group) == []


async def test_a_committed_import_is_reported_as_imported_when_the_rename_fails(
    cli_env: str, tmp_path: Path
) -> None:
    group = await new_group("rename")
    rejects = tmp_path / "rejects.csv"
    rejects.mkdir()  # a file cannot replace a directory

    result = await in_thread(
        "prospects", "import", str(rows_file(tmp_path / "in.csv")), "--account-group", group,
        "--skip-invalid", "--rejects", str(rejects), "--json",
    )  # fmt: skip

    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    document = json.loads(result.stdout)
    warning = (
        f"the rejected rows are in {rejects}.partial: it could not be renamed to {rejects}"
        " (Is a directory)."
    )
    assert document == {
        "imported": True, "rowsRead": 2, "created": 1, "updated": 0, "unchanged": 0,
        "rejected": 1, "warning": warning,
    }  # fmt: skip
    assert "warning:" in result.stderr
    assert len(await provider_ids(cli_env, group)) == 1
