"""Progress of `prospects import`: plain periodic lines when stderr is not a terminal (the
CLI's case in tests), a Rich bar on a terminal; stdout keeps only the result."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api import import_progress
from sonarly_api.import_progress import ImportProgress
from sonarly_api.migrations import upgrade
from sonarly_api.prospects import importer
from tests.cli.helpers import CLI_PEPPER, as_json, invoke, succeeded
from tests.conftest import Factory


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def plain_console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=False, width=200), buffer


def report(progress: ImportProgress, rows: int, bytes_read: int) -> None:
    """As the importer does: the rows, then the bytes."""
    progress.rows(rows)
    progress.bytes_read(bytes_read)


class TestPlainLines:
    def test_a_line_every_few_seconds_then_one_for_the_writing(self) -> None:
        console, buffer = plain_console()
        clock = Clock()
        progress = ImportProgress(console, total_bytes=1_000, clock=clock)

        with progress:
            for seconds, rows, read in [(1, 50_000, 100), (5, 250_000, 500), (7, 300_000, 600)]:
                clock.now = 100.0 + seconds
                report(progress, rows, read)
            clock.now = 111.0
            report(progress, 400_000, 1_000)
            progress.bytes_read(1_000)  # the end, reported again: nothing more to say

        assert buffer.getvalue().splitlines() == [
            "imported 250000 rows (50000 rows/s)",
            "imported 400000 rows (36364 rows/s)",
            "read all 400000 rows; writing them to the database",
        ]

    def test_a_quick_import_prints_nothing(self) -> None:
        console, buffer = plain_console()
        clock = Clock()

        with ImportProgress(console, total_bytes=10, clock=clock) as progress:
            clock.now += 0.3
            report(progress, 3, 10)

        assert buffer.getvalue() == ""


class TestTerminalBar:
    def test_bar_shows_rows_rate_and_time_left(self) -> None:
        buffer = io.StringIO()
        console = Console(file=buffer, force_terminal=True, width=140, color_system=None)
        clock = Clock()

        with ImportProgress(console, total_bytes=1_000, clock=clock) as progress:
            clock.now += 2
            report(progress, 100_000, 250)
            clock.now += 2
            report(progress, 200_000, 500)
            last = buffer.getvalue().split("\r")[-1]
            report(progress, 400_000, 1_000)
            writing = buffer.getvalue().split("\r")[-1]

        assert "reading" in last
        assert "200,000 rows" in last
        assert "50,000 rows/s" in last
        assert last.rstrip().endswith("0:00:04")  # half the bytes in 4 s: 4 s to go
        assert writing.removeprefix("\x1b[2K").startswith("writing ")
        assert writing.rstrip().endswith("0:00 elapsed")  # no estimate for the write
        assert len(last.removeprefix("\x1b[2K").rstrip()) <= 80
        assert "imported" not in buffer.getvalue()  # no plain lines on a terminal


@pytest.fixture
def import_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, create_database: Any
) -> Iterator[None]:
    from sonarly_api.config import Settings, get_settings

    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)
    url: str = create_database("sonarly_progress")
    upgrade(url)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("API_KEY_PEPPER", CLI_PEPPER)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_cli_prints_plain_lines_on_stderr(
    import_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A line at every report, and a report every 5,000 rows: 4 lines for 20,000 rows, then
    # one when the file has been read (the importer's last report, or the one before).
    monkeypatch.setattr(import_progress, "LINE_EVERY_SECONDS", 0.0)
    monkeypatch.setattr(importer, "PROGRESS_EVERY", 5_000)
    group = as_json("account-groups", "create", "--name", "progress")["id"]
    csv_file = tmp_path / "rows.csv"
    csv_file.write_text(
        "providerId,name\n" + "".join(f"crm-{i},Person {i}\n" for i in range(20_000)),
        encoding="utf-8",
    )

    result = succeeded(
        invoke("prospects", "import", str(csv_file), "--account-group", group, "--json")
    )

    lines = result.stderr.splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        "imported 5000 rows",
        "imported 10000 rows",
        "imported 15000 rows",
        "imported 20000 rows",
        "read all 20000 rows; writing them to the database",
    ]
    assert all(line.endswith(" rows/s)") for line in lines[:4])
    assert json.loads(result.stdout) == {
        "imported": True,
        "rowsRead": 20_000,
        "created": 20_000,
        "updated": 0,
        "unchanged": 0,
        "rejected": 0,
    }


@pytest.mark.parametrize("compressed", [False, True], ids=["csv", "csv.gz"])
async def test_importer_reports_bytes_up_to_the_stored_size(
    engine: AsyncEngine,
    factory: Factory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    compressed: bool,
) -> None:
    monkeypatch.setattr(importer, "PROGRESS_EVERY", 5_000)
    group = await factory.group()
    # Hashes, so that the gzipped file is not a few bytes long.
    text = "providerId,name\n" + "".join(
        f"crm-{i},{hashlib.sha256(str(i).encode()).hexdigest()}\n" for i in range(12_000)
    )
    path = tmp_path / ("rows.csv.gz" if compressed else "rows.csv")
    path.write_bytes(gzip.compress(text.encode()) if compressed else text.encode())
    rows: list[int] = []
    read: list[int] = []

    await importer.import_prospects(
        engine, group, path, on_progress=rows.append, on_bytes_read=read.append
    )

    assert rows == [5_000, 10_000, 12_000]
    assert len(read) == 3  # right after each row count
    assert 0 < read[0] < read[1] <= read[2] == path.stat().st_size
