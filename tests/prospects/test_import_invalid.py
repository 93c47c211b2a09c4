"""The prospect importer: invalid rows and files, all or nothing or --skip-invalid."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api.ids import new_id
from sonarly_api.prospects.importer import ImportFailed, RowError, import_prospects
from tests.prospects.import_helpers import (
    count_persons,
    csv_file,
    jsonl,
    make_group,
    prospects,
    write,
)


async def test_invalid_rows_fail_the_import_with_line_numbers(
    import_engine: AsyncEngine, tmp_path: Path, uid: str
) -> None:
    group = await make_group(import_engine)
    await import_prospects(
        import_engine, group, csv_file(tmp_path / "base.csv", f"ok-{uid},,,,Before,,")
    )
    before, persons = await prospects(import_engine, group), await count_persons(import_engine)
    path = csv_file(
        tmp_path / "rows.csv",
        f"ok-{uid},,,,After,,",  # line 2: valid, but nothing may be written
        f"a/b-{uid},,,,,,",  # 3
        "",  # 4: blank, skipped
        f",,x-{uid},,,,",  # 5
        f'"multi{uid}",,,,"two',  # 6-7: one record over two lines
        'lines",,',
        f"c-{uid},nothex,,,,,",  # 8
        f"d-{uid},,,,{'x' * 2001},,",  # 9
        f"e-{uid},,,,,,,",  # 10: one field too many
        f"f g-{uid},,,,,,",  # 11
        f"h-{uid},,,,a\x00b,,",  # 12
        ",,,,,,",  # 13: empty cells only, skipped like a blank line
    )
    with pytest.raises(ImportFailed) as failed:
        await import_prospects(import_engine, group, path)

    assert failed.value.errors == [
        RowError(3, "providerId: must not contain '/' (also not as %2F)."),
        RowError(5, "providerId: is required."),
        RowError(8, "personId: must be 24 hexadecimal characters."),
        RowError(9, "name: must be at most 2000 characters, got 2001."),
        RowError(10, "expected 7 fields as in the header, got 8."),
        RowError(11, "providerId: must not contain whitespace or control characters."),
        RowError(12, "name: must not contain NUL characters or unpaired surrogates."),
    ]
    assert (failed.value.rows_read, failed.value.rejected) == (9, 7)
    assert "7 invalid row(s)" in str(failed.value)
    assert await prospects(import_engine, group) == before
    assert await count_persons(import_engine) == persons


async def test_invalid_json_lines(import_engine: AsyncEngine, tmp_path: Path, uid: str) -> None:
    group = await make_group(import_engine)
    path = write(
        tmp_path / "rows.jsonl",
        "\n".join(
            [
                json.dumps({"providerId": f"ok-{uid}"}),
                "[1, 2]",
                "{not json",
                json.dumps({"providerId": f"a-{uid}", "name": 5}),
                json.dumps({"providerId": f"b-{uid}", "title": ["x"]}),
                json.dumps({"providerId": f"c-{uid}", "nickname": "x"}),
                "",
                json.dumps({"name": "no provider"}),
                json.dumps({"providerId": f"d-{uid}", "name": "\ud800"}),
                json.dumps({"providerId": None}),
            ]
        ),
    )
    with pytest.raises(ImportFailed) as failed:
        await import_prospects(import_engine, group, path)
    reasons = {e.line: e.reason for e in failed.value.errors}
    assert reasons[2] == "must be a JSON object, got array."
    assert reasons[3].startswith("not valid JSON: ")
    assert reasons[4] == "name: must be a string or null, got number."
    assert reasons[5] == "title: must be a string or null, got array."
    assert reasons[6].startswith("unknown key 'nickname'; allowed: providerId, personId")
    assert reasons[8] == "providerId: is required."
    assert reasons[9] == "name: must not contain NUL characters or unpaired surrogates."
    assert reasons[10] == "providerId: is required."
    assert sorted(reasons) == [2, 3, 4, 5, 6, 8, 9, 10]
    assert await prospects(import_engine, group) == []


async def test_at_most_20_errors_are_listed(import_engine: AsyncEngine, tmp_path: Path) -> None:
    group = await make_group(import_engine)
    path = csv_file(tmp_path / "rows.csv", *(["bad/id,,,,,,"] * 25), "fine,,,,,,")
    with pytest.raises(ImportFailed) as failed:
        await import_prospects(import_engine, group, path)
    assert [e.line for e in failed.value.errors] == list(range(2, 22))
    assert (failed.value.rejected, failed.value.rows_read) == (25, 26)


async def test_skip_invalid_imports_the_rest_and_writes_rejects(
    import_engine: AsyncEngine, tmp_path: Path, uid: str
) -> None:
    group = await make_group(import_engine)
    rejects = tmp_path / "rejects.csv"
    path = csv_file(
        tmp_path / "rows.csv",
        f"ok1-{uid},,,,One,,",
        f'a/b-{uid},,,,"Quoted, name",,',
        f"ok2-{uid},,,,Two,,",
        f"c-{uid},xyz,,,,,",
    )
    summary = await import_prospects(
        import_engine, group, path, skip_invalid=True, rejects_path=rejects
    )

    assert (summary.rows_read, summary.created, summary.rejected) == (4, 2, 2)
    assert [e.line for e in summary.errors] == [3, 5]
    assert {r["name"] for r in await prospects(import_engine, group)} == {"One", "Two"}
    with rejects.open(newline="", encoding="utf-8") as file:
        written = list(csv.reader(file))
    slash = "providerId: must not contain '/' (also not as %2F)."
    assert written == [
        ["line", "reason", "raw"],
        ["3", slash, f'a/b-{uid},,,,"Quoted, name",,'],
        ["5", "personId: must be 24 hexadecimal characters.", f"c-{uid},xyz,,,,,"],
    ]
    assert not (tmp_path / "rejects.csv.partial").exists()

    # JSON Lines: raw is the line itself.
    path = write(tmp_path / "rows.jsonl", jsonl({"providerId": f"ok3-{uid}"}, {"providerId": 1}))
    summary = await import_prospects(
        import_engine, group, path, skip_invalid=True, rejects_path=rejects
    )
    assert (summary.created, summary.rejected) == (1, 1)
    with rejects.open(newline="", encoding="utf-8") as file:
        assert list(csv.reader(file))[1] == [
            "2",
            "providerId: must be a string or null, got number.",
            '{"providerId": 1}',
        ]


async def test_rejects_path_needs_skip_invalid(import_engine: AsyncEngine, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="skip_invalid"):
        await import_prospects(
            import_engine, new_id(), tmp_path / "x.csv", rejects_path=tmp_path / "r.csv"
        )


@pytest.mark.parametrize(
    ("content", "line", "reason"),
    [
        (
            "providerId,nickname,Title\nx,y,z\n",
            1,
            "unknown column(s) 'nickname', 'Title'; allowed: providerId, personId,"
            " publicIdentifier, linkedinUrl, name, companyName, title.",
        ),
        ("name,title\nx,y\n", 1, "missing required column providerId."),
        ("providerId,name,name\nx,y,z\n", 1, "duplicated column(s): name."),
    ],
)
async def test_bad_header_fails_the_whole_import(
    import_engine: AsyncEngine, tmp_path: Path, content: str, line: int, reason: str
) -> None:
    group = await make_group(import_engine)
    with pytest.raises(ImportFailed) as failed:
        await import_prospects(import_engine, group, write(tmp_path / "rows.csv", content))
    assert failed.value.errors == [RowError(line, reason)]
    assert await prospects(import_engine, group) == []


async def test_lines_that_are_not_utf8_are_invalid_rows(
    import_engine: AsyncEngine, tmp_path: Path
) -> None:
    group = await make_group(import_engine)
    csv_path = tmp_path / "rows.csv"
    csv_path.write_bytes(b"providerId,name\nok,fine\nx,caf\xe9\n")
    with pytest.raises(ImportFailed) as failed:
        await import_prospects(import_engine, group, csv_path)
    assert failed.value.errors == [RowError(3, "not valid UTF-8.")]

    jsonl_path = tmp_path / "rows.jsonl"
    jsonl_path.write_bytes(b'{"providerId": "ok"}\n{"providerId": "caf\xe9"}\n')
    summary = await import_prospects(import_engine, group, jsonl_path, skip_invalid=True)
    assert (summary.created, summary.errors) == (1, [RowError(2, "not valid UTF-8.")])

    header_path = tmp_path / "header.csv"
    header_path.write_bytes(b"providerId,n\xe9\nx,y\n")
    with pytest.raises(ImportFailed) as failed:
        await import_prospects(import_engine, group, header_path)
    assert failed.value.errors == [RowError(1, "not valid UTF-8.")]


async def test_missing_account_group(import_engine: AsyncEngine, tmp_path: Path) -> None:
    path = csv_file(tmp_path / "rows.csv", "p,,,,,,")
    group = new_id()
    with pytest.raises(ImportFailed) as failed:
        await import_prospects(import_engine, group, path)
    assert str(failed.value) == f"account group {group} does not exist."
    assert failed.value.errors == []
    with pytest.raises(ImportFailed, match="accountGroupId: must be 24 hexadecimal"):
        await import_prospects(import_engine, "nope", path)


async def test_provider_ids_follow_the_lookup_rules(
    import_engine: AsyncEngine, tmp_path: Path, uid: str
) -> None:
    group = await make_group(import_engine)
    path = write(
        tmp_path / "rows.jsonl",
        jsonl(
            {"providerId": f"café-{uid}"},  # non-ASCII letters are fine
            {"providerId": "x" * 256},
            {"providerId": "y" * 257},
            {"providerId": "tab\there"},
            {"providerId": "nbsp\u00a0inside"},
        ),
    )
    summary = await import_prospects(import_engine, group, path, skip_invalid=True)
    assert summary.created == 2
    assert {e.line: e.reason for e in summary.errors} == {
        3: "providerId: must be 1 to 256 characters long, got 257.",
        4: "providerId: must not contain whitespace or control characters.",
        5: "providerId: must not contain whitespace or control characters.",
    }
