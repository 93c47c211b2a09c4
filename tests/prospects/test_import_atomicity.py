"""The prospect importer: progress, and nothing written when an import fails midway."""

from __future__ import annotations

import asyncio
import gzip
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api.prospects import import_apply, import_staging, importer
from sonarly_api.prospects.importer import ImportFailed, import_prospects
from tests.prospects.import_helpers import HEADER, count_persons, csv_file, make_group, prospects


def big_file(path: Path, uid: str, rows: int) -> Path:
    """Rows long enough that COPY has sent data to the server before the end."""
    padding = "x" * 150
    return csv_file(
        path, *(f"big{i}-{uid},,big{i}-{uid},,Name {i},{padding},{padding}" for i in range(rows))
    )


async def test_progress_is_reported(
    import_engine: AsyncEngine, tmp_path: Path, uid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "_YIELD_EVERY", 100)
    monkeypatch.setattr(importer, "PROGRESS_EVERY", 1000)
    group = await make_group(import_engine)
    seen: list[int] = []
    summary = await import_prospects(
        import_engine, group, big_file(tmp_path / "rows.csv", uid, 2500), on_progress=seen.append
    )
    assert seen == [1000, 2000, 2500]
    assert summary.created == 2500


async def base_state(engine: AsyncEngine, tmp_path: Path, uid: str) -> tuple[str, Any, int]:
    group = await make_group(engine)
    await import_prospects(engine, group, big_file(tmp_path / "base.csv", uid, 100))
    return group, await prospects(engine, group), await count_persons(engine)


class Stop(Exception):
    pass


async def test_an_exception_mid_import_writes_nothing(
    import_engine: AsyncEngine, tmp_path: Path, uid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "_YIELD_EVERY", 1000)
    monkeypatch.setattr(importer, "PROGRESS_EVERY", 10_000)
    # Stopped with chunks' persons created and the next chunk's statement under way.
    monkeypatch.setattr(import_staging, "CHUNK_ROWS", 3_000)
    group, before, persons = await base_state(import_engine, tmp_path, uid)
    seen: list[int] = []

    def progress(rows: int) -> None:
        seen.append(rows)
        raise Stop

    path = big_file(tmp_path / "rows.csv", uid, 20_000)  # updates the 100, adds the rest
    with pytest.raises(Stop):
        await import_prospects(import_engine, group, path, on_progress=progress)

    assert seen == [10_000]
    assert await prospects(import_engine, group) == before
    assert await count_persons(import_engine) == persons


async def test_cancellation_mid_import_writes_nothing(
    import_engine: AsyncEngine, tmp_path: Path, uid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "_YIELD_EVERY", 1000)
    monkeypatch.setattr(importer, "PROGRESS_EVERY", 10_000)
    # Stopped with chunks' persons created and the next chunk's statement under way.
    monkeypatch.setattr(import_staging, "CHUNK_ROWS", 3_000)
    group, before, persons = await base_state(import_engine, tmp_path, uid)
    path = big_file(tmp_path / "rows.csv", uid, 20_000)

    def cancel(rows: int) -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # as Ctrl-C does to asyncio.run's main task

    task = asyncio.create_task(import_prospects(import_engine, group, path, on_progress=cancel))
    with pytest.raises(asyncio.CancelledError):
        await task

    assert await prospects(import_engine, group) == before
    assert await count_persons(import_engine) == persons
    # The pool is still usable afterwards.
    summary = await import_prospects(import_engine, group, path)
    assert (summary.created, summary.updated) == (19_900, 0)


async def test_a_failure_after_persons_were_created_writes_nothing(
    import_engine: AsyncEngine, tmp_path: Path, uid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    group, before, persons = await base_state(import_engine, tmp_path, uid)
    # The last statement fails (division by zero), after the persons were inserted.
    monkeypatch.setattr(import_apply, "UPSERT", "SELECT 1, 1 / (length(:group) - 24) -- {new_id}")
    path = big_file(tmp_path / "rows.csv", uid, 300)
    with pytest.raises(Exception, match="division by zero"):
        await import_prospects(import_engine, group, path)
    assert await prospects(import_engine, group) == before
    assert await count_persons(import_engine) == persons


async def test_a_failed_import_leaves_no_rejects_file(
    import_engine: AsyncEngine, tmp_path: Path, uid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    group = await make_group(import_engine)
    monkeypatch.setattr(import_apply, "UPSERT", "SELECT 1, 1 / (length(:group) - 24) -- {new_id}")
    rejects = tmp_path / "rejects.csv"
    path = csv_file(tmp_path / "rows.csv", f"ok-{uid},,,,,,", "bad/one,,,,,,")
    with pytest.raises(Exception, match="division by zero"):
        await import_prospects(import_engine, group, path, skip_invalid=True, rejects_path=rejects)
    assert [name for name in os.listdir(tmp_path) if name.startswith("rejects")] == []


async def test_a_truncated_gzip_file_fails(import_engine: AsyncEngine, tmp_path: Path) -> None:
    group = await make_group(import_engine)
    whole = gzip.compress(("\n".join([HEADER, *(f"p{i},,,,,," for i in range(5000))])).encode())
    path = tmp_path / "rows.csv.gz"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ImportFailed, match="the gzip data is corrupt or truncated"):
        await import_prospects(import_engine, group, path)
    assert await prospects(import_engine, group) == []


async def test_an_autocommit_engine_is_refused(
    import_engine: AsyncEngine, tmp_path: Path, uid: str
) -> None:
    group = await make_group(import_engine)
    autocommit = import_engine.execution_options(isolation_level="AUTOCOMMIT")
    with pytest.raises(RuntimeError, match="transactional"):
        await import_prospects(autocommit, group, csv_file(tmp_path / "a.csv", f"p-{uid},,,,,,"))
    assert await prospects(import_engine, group) == []
