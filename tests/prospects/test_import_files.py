"""What an import file can hold that is not a plain row (issue 17): every case an answer in
plain words, a rejected row where a row is at fault, and no file ever overwritten or held
whole in memory. Against a real PostgreSQL (tests/conftest.py)."""

from __future__ import annotations

import csv
import gzip
import json
import os
import secrets
import tracemalloc
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api.ids import new_id
from sonarly_api.prospects.import_rows import MAX_LINE_BYTES, Rejected, read_rows
from sonarly_api.prospects.importer import ImportFailed, RowError, import_prospects

TOO_LONG = f"line longer than {MAX_LINE_BYTES} bytes."


async def make_group(engine: AsyncEngine) -> str:
    group = new_id()
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO account_groups (id, name) VALUES (:id, 'import files')"),
            {"id": group},
        )
    return group


async def provider_ids(engine: AsyncEngine, group: str) -> list[str]:
    async with engine.connect() as conn:
        result = await conn.execute(
            text("SELECT provider_id FROM prospects WHERE account_group_id = :g ORDER BY 1"),
            {"g": group},
        )
        return [str(value) for value in result.scalars()]


def rejects_of(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.reader(file))[1:]


@pytest.fixture
def uid() -> str:
    return secrets.token_hex(4)


# --- JSON Lines -----------------------------------------------------------------------------


def nested(depth: int) -> str:
    return '{"providerId": "deep", "name": ' + "[" * depth + "]" * depth + "}"


@pytest.mark.parametrize("skip_invalid", [False, True], ids=["strict", "skip-invalid"])
async def test_a_deeply_nested_json_row_is_an_invalid_row(
    engine: AsyncEngine, tmp_path: Path, uid: str, skip_invalid: bool
) -> None:
    group = await make_group(engine)
    path = tmp_path / "rows.jsonl"
    path.write_text(
        "\n".join([json.dumps({"providerId": f"a-{uid}"}), nested(100_000),
                   json.dumps({"providerId": f"b-{uid}"})]) + "\n",
        encoding="utf-8",
    )  # fmt: skip
    assert len(nested(100_000)) < MAX_LINE_BYTES  # refused for its depth, not its length
    reason = "not valid JSON for a row: nested too deeply."
    if not skip_invalid:
        with pytest.raises(ImportFailed) as failed:
            await import_prospects(engine, group, path)
        assert failed.value.errors == [RowError(2, reason)]
        assert await provider_ids(engine, group) == []
        return
    rejects = tmp_path / "rejects.csv"
    summary = await import_prospects(engine, group, path, skip_invalid=True, rejects_path=rejects)
    assert (summary.created, summary.rejected, summary.errors) == (2, 1, [RowError(2, reason)])
    assert await provider_ids(engine, group) == [f"a-{uid}", f"b-{uid}"]
    # (Not read back with the csv module: the raw line is over its default field limit.)
    header, rejected = rejects.read_text(encoding="utf-8").splitlines()
    assert (header, rejected[: len(reason) + 3]) == ("line,reason,raw", f"2,{reason},")


async def test_duplicate_json_keys_are_refused_like_duplicate_columns(
    engine: AsyncEngine, tmp_path: Path, uid: str
) -> None:
    group = await make_group(engine)
    path = tmp_path / "rows.jsonl"
    path.write_text(
        f'{{"providerId": "a-{uid}", "name": "First", "name": "Second"}}\n'
        f'{{"providerId": "b-{uid}", "title": "x", "providerId": "c-{uid}", "title": "y"}}\n'
        f'{{"providerId": "d-{uid}", "name": "Fine"}}\n',
        encoding="utf-8",
    )
    summary = await import_prospects(engine, group, path, skip_invalid=True)
    assert summary.errors == [
        RowError(1, "duplicated key(s) 'name'."),
        RowError(2, "duplicated key(s) 'providerId', 'title'."),
    ]
    assert await provider_ids(engine, group) == [f"d-{uid}"]


# --- CSV line cap ---------------------------------------------------------------------------


async def test_a_csv_line_over_the_cap_is_a_rejected_row(
    engine: AsyncEngine, tmp_path: Path, uid: str
) -> None:
    """Like a JSON Lines line over the cap; the lines after it are read as before, also
    when the long line opens a quoted value that a later line closes."""
    group = await make_group(engine)
    long = "x" * (MAX_LINE_BYTES + 10)
    path = tmp_path / "rows.csv"
    path.write_text(
        "providerId,name\n"
        f"a-{uid},One\n"
        f"b-{uid},{long}\n"  # 3
        f"c-{uid},Two\n"
        f'd-{uid},"{long}\n'  # 5: a quoted value over two lines
        'still the same value"\n'
        f"e-{uid},Three\n",  # 7
        encoding="utf-8",
    )
    summary = await import_prospects(engine, group, path, skip_invalid=True)
    assert summary.errors == [RowError(3, TOO_LONG), RowError(5, TOO_LONG)]
    assert (summary.rows_read, summary.created) == (5, 3)
    assert await provider_ids(engine, group) == [f"a-{uid}", f"c-{uid}", f"e-{uid}"]


def test_a_long_csv_line_is_never_held_whole(tmp_path: Path) -> None:
    """A 50 MB line of a small gzipped file is read past in pieces (the issue's 400 MB line
    took the import to 1.1 GB)."""
    path = tmp_path / "rows.csv.gz"
    with gzip.open(path, "wb") as file:
        file.write(b"providerId,name\n")
        file.write(b"p1," + b"x" * 50_000_000 + b"\n")
        file.write(b"p2,fine\n")
    assert path.stat().st_size < 1_000_000
    tracemalloc.start()
    try:
        rows = list(read_rows(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * MAX_LINE_BYTES
    assert [type(row) for row in rows] == [Rejected, tuple]
    first = rows[0]
    assert isinstance(first, Rejected)
    assert (first.line, first.reason, len(first.raw)) == (2, TOO_LONG, 1000)


# --- one rule for every kind of file --------------------------------------------------------


@pytest.mark.parametrize("name", ["rows.csv", "rows.jsonl", "rows", "rows.txt", "rows.csv.gz"])
@pytest.mark.parametrize("content", ["", "\ufeff \n\n"], ids=["no-bytes", "blank"])
async def test_an_empty_file_is_refused_whatever_its_name(
    engine: AsyncEngine, tmp_path: Path, name: str, content: str
) -> None:
    group = await make_group(engine)
    path = tmp_path / name
    data = content.encode()
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    with pytest.raises(ImportFailed) as failed:
        await import_prospects(engine, group, path)
    assert str(failed.value) == "the file is empty; nothing was imported."
    assert failed.value.errors == []


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("rows.csv", "providerId,name\rp1,One\rp2,Two\r"),
        ("rows", "providerId,name\rp1,One\r"),
        ("rows.jsonl", '{"providerId": "p1"}\r{"providerId": "p2"}\r'),
    ],
)
async def test_cr_only_line_endings_are_refused_in_plain_words(
    engine: AsyncEngine, tmp_path: Path, name: str, content: str
) -> None:
    group = await make_group(engine)
    path = tmp_path / name
    path.write_bytes(content.encode())
    with pytest.raises(ImportFailed) as failed:
        await import_prospects(engine, group, path, skip_invalid=True)
    assert str(failed.value) == (
        "lines end with a carriage return alone (CR, as on old Macs); save the file with LF"
        " or CRLF line endings; nothing was imported."
    )


async def test_a_lone_cr_later_in_a_csv_file_is_told_in_plain_words(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    group = await make_group(engine)
    path = tmp_path / "rows.csv"
    path.write_bytes(b"providerId,name\r\np1,One\r\np2,Tw\ro\r\n")
    with pytest.raises(ImportFailed) as failed:
        await import_prospects(engine, group, path)
    assert failed.value.errors == [
        RowError(
            3,
            "a carriage return (CR) alone inside a line, outside quotes; save the file with LF"
            " or CRLF line endings.",
        )
    ]
    assert "new-line character" not in str(failed.value)


# --- the rejects file -----------------------------------------------------------------------


def rows_file(path: Path, uid: str) -> Path:
    path.write_text(f"providerId,name\nok-{uid},Fine\nbad/{uid},Slash\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("how", ["same-path", "hard-link", "symlink", "partial"])
async def test_a_rejects_path_that_is_the_input_is_refused(
    engine: AsyncEngine, tmp_path: Path, uid: str, how: str
) -> None:
    group = await make_group(engine)
    source = rows_file(tmp_path / ("in.csv.partial" if how == "partial" else "in.csv"), uid)
    before = source.read_bytes()
    rejects: Path = {
        "same-path": source,
        "partial": tmp_path / "in.csv",  # its partial file would be the input
        "hard-link": tmp_path / "link.csv",
        "symlink": tmp_path / "sym.csv",
    }[how]
    if how == "hard-link":
        os.link(source, rejects)
    elif how == "symlink":
        os.symlink(source, rejects)
    with pytest.raises(ImportFailed, match="is the file being imported; choose another path"):
        await import_prospects(engine, group, source, skip_invalid=True, rejects_path=rejects)
    assert source.read_bytes() == before
    assert await provider_ids(engine, group) == []


async def test_an_unwritable_rejects_path_fails_before_writing(
    engine: AsyncEngine, tmp_path: Path, uid: str
) -> None:
    group = await make_group(engine)
    rejects = tmp_path / "missing-directory" / "rejects.csv"
    with pytest.raises(ImportFailed) as failed:
        await import_prospects(
            engine, group, rows_file(tmp_path / "in.csv", uid), skip_invalid=True,
            rejects_path=rejects,
        )  # fmt: skip
    assert str(failed.value) == (
        f"cannot write the rejects file {rejects}.partial: No such file or directory;"
        " nothing was imported."
    )
    assert await provider_ids(engine, group) == []


async def test_a_rename_failing_after_the_commit_is_a_warning(
    engine: AsyncEngine, tmp_path: Path, uid: str
) -> None:
    """The import is written: it is reported as such, with where the rejects are."""
    group = await make_group(engine)
    rejects = tmp_path / "rejects.csv"
    rejects.mkdir()  # a file cannot replace a directory
    summary = await import_prospects(
        engine, group, rows_file(tmp_path / "in.csv", uid), skip_invalid=True, rejects_path=rejects
    )
    assert (summary.created, summary.rejected) == (1, 1)
    assert summary.rejects_warning == (
        f"the rejected rows are in {rejects}.partial: it could not be renamed to {rejects}"
        " (Is a directory)."
    )
    assert await provider_ids(engine, group) == [f"ok-{uid}"]
    assert [row[0] for row in rejects_of(Path(f"{rejects}.partial"))] == ["3"]
