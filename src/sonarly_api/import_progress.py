"""Progress of `sonarly-api prospects import`, on stderr so that stdout keeps only the result
(the `--json` document). On a terminal: a Rich bar with rows, rows/s and an ETA; otherwise
(a log, CI) a plain line every few seconds, which a bar would turn into a flood.

The ETA comes from bytes: the bar's total is the file's size (compressed size for a gzipped
file) and its progress the bytes the importer has read, so it is right whatever the row
length. Once the file is read, the importer writes everything in one set-based step that
reports nothing until it ends: the bar then says "writing" and counts the time spent, rather
than show a frozen estimate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

LINE_EVERY_SECONDS = 5.0


class _TimeColumn(ProgressColumn):
    """Time left while reading; time spent writing afterwards, since the set-based write
    reports nothing until it ends and so cannot be estimated (a frozen 0:00:00 would lie)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__()
        self._clock = clock
        self._left = TimeRemainingColumn()

    def render(self, task: Task) -> Text:
        since: float | None = task.fields.get("writing_since")
        if since is None:
            return self._left.render(task)
        seconds = int(self._clock() - since)
        return Text(f"{seconds // 60}:{seconds % 60:02d} elapsed", style="progress.elapsed")


class ImportProgress:
    """`import_prospects`'s `on_progress` (`rows`) and `on_bytes_read` (`bytes_read`), used
    as a context manager around the import. The importer reports the bytes right after the
    rows, and once more at the end of the file: that is when the progress is shown."""

    def __init__(
        self,
        console: Console,
        total_bytes: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._console = console
        self._total = max(total_bytes, 1)
        self._clock = clock
        self._started = clock()
        self._last_line = self._started
        self._lines = 0
        self._rows = 0
        self._writing = False
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        if console.is_terminal:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(bar_width=24),  # the line fits 80 columns
                TextColumn("{task.fields[rows]:>12,} rows"),
                TextColumn("{task.fields[rate]:>9,.0f} rows/s"),
                _TimeColumn(clock),
                console=console,
                transient=True,
                get_time=clock,
            )
            self._task = self._bar.add_task(
                "reading", total=self._total, rows=0, rate=0.0, writing_since=None
            )

    def __enter__(self) -> ImportProgress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()

    def rows(self, count: int) -> None:
        self._rows = count

    def bytes_read(self, count: int) -> None:
        now = self._clock()
        rate = self._rows / max(now - self._started, 1e-9)
        done_reading = count >= self._total
        if self._bar is not None and self._task is not None:
            if self._writing:
                return  # the end, reported again: nothing new to show
            self._writing = done_reading
            self._bar.update(
                self._task,
                completed=min(count, self._total),
                rows=self._rows,
                rate=rate,
                description="writing" if done_reading else "reading",
                writing_since=now if done_reading else None,
                refresh=True,  # reports are seconds apart: show each at once
            )
            return
        if self._writing:
            return  # the end, reported again: nothing new to say
        if now - self._last_line >= LINE_EVERY_SECONDS:
            self._print(f"imported {self._rows} rows ({rate:.0f} rows/s)")
            self._last_line = now
        # Said once, and only for an import long enough to have reported progress.
        if done_reading and self._lines and not self._writing:
            self._print(f"read all {self._rows} rows; writing them to the database")
            self._writing = True

    def _print(self, line: str) -> None:
        self._console.print(line, highlight=False, markup=False)
        self._lines += 1
