"""`make bench-import`'s report: the targets, the Markdown section of docs/performance.md
(between its own markers; the rest of the document belongs to the lookup bench)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "performance.md"
START, END = "<!-- import:start -->", "<!-- import:end -->"
ROWS_10M = 10_000_000
TARGET_SECONDS = 60.0
TARGET_COPY_RATIO = 3.0
TARGET_RSS_MIB = 300.0

Json = dict[str, Any]


def targets(results: Json) -> list[Json]:
    new, again, copy = results["import"], results["reimport"], results["copy"]
    ratio, size = results["import_vs_copy"], f"{results['rows']:,}"
    found = [
        (f"import of {size} rows into {size}", f"< {TARGET_SECONDS:g} s", f"{new['seconds']} s",
         new["seconds"] < TARGET_SECONDS),
        ("import vs plain COPY", f"≤ {TARGET_COPY_RATIO:g}×", f"{ratio}× ({copy['seconds']} s)",
         ratio <= TARGET_COPY_RATIO),
        ("re-import changes nothing", "0 created, 0 updated",
         f"{again['summary']['created']} created, {again['summary']['updated']} updated",
         again["summary"]["created"] == again["summary"]["updated"] == 0),
        ("re-import at least as fast", f"≤ {new['seconds']} s", f"{again['seconds']} s",
         again["seconds"] <= new["seconds"]),
        (f"peak RSS, {size} rows", f"< {TARGET_RSS_MIB:g} MiB", f"{new['peak_rss_mib']} MiB",
         new["peak_rss_mib"] < TARGET_RSS_MIB),
    ]  # fmt: skip
    if "import_10m" in results:
        big = results["import_10m"]
        found.append(
            ("peak RSS, 10M rows", f"< {TARGET_RSS_MIB:g} MiB", f"{big['peak_rss_mib']} MiB",
             big["peak_rss_mib"] < TARGET_RSS_MIB)
        )  # fmt: skip
    return [{"name": n, "target": t, "value": v, "pass": p} for n, t, v, p in found]


def _row(step: str, run: Json) -> str:
    read = run["read_seconds"]
    phases = f"{read} s | {round(run['seconds'] - read, 2)} s" if read is not None else "– | –"
    return (
        f"| {step} | {run['summary']['rowsRead']:,} | {run['seconds']} s | {phases}"
        f" | {run['rows_per_second']:,} | {run['peak_rss_mib']} MiB |"
    )


def markdown(results: Json) -> str:
    m, new, again = results["machine"], results["import"], results["reimport"]
    size = f"{results['rows']:,}"
    lines = [
        "## Bulk import",
        "",
        f"`make bench-import` ({results['date']}, commit {results['code']['commit']}"
        + (" with local changes to src/" if results["code"]["src_modified"] else "")
        + f"; {m['nproc']} cores, {m['cpu_model']}, "
        f"{m['ram_gib']} GiB; {results['database']}, PostgreSQL {results['postgres']}). "
        f"Load average at start {results['load_average_start']}, at end "
        f"{results['load_average_end']}: other work on the machine slows every figure.",
        "",
        "| Step | Rows | Time | of which reading and staging | writing | Rows/s | Peak RSS |",
        "|---|---|---|---|---|---|---|",
        _row("pre-load (empty group, not a target)", results["preload"]),
        _row(f"import of {size} new rows into {size}", new),
        _row("re-import of the same file", again),
        f"| plain COPY into an empty copy of the table | {results['copy']['rows']:,}"
        f" | {results['copy']['seconds']} s | | | | |",
    ]
    if "import_10m" in results:
        lines.append(_row(f"{ROWS_10M:,} rows into a new group", results["import_10m"]))
    lines += [
        "",
        "Times are wall time of the whole `sonarly-api prospects import` process: start-up,"
        " reading, validating and COPYing the file to a staging table (until its progress"
        ' line "read all …"), then writing (the set-based upsert and commit). Peak RSS is'
        " the kernel's high-water mark for that process. The re-import finds every row"
        f" unchanged ({again['summary']['unchanged']:,}) and writes nothing.",
        "",
        "| Target | Wanted | Measured | |",
        "|---|---|---|---|",
    ]
    for t in results["targets"]:
        verdict = "PASS" if t["pass"] else "FAIL"
        lines.append(f"| {t['name']} | {t['target']} | {t['value']} | {verdict} |")
    return "\n".join(lines)


def update_doc(block: str, path: Path = DOC) -> None:
    """Rewrite what lies between our markers (appended if absent); nothing else."""
    text = path.read_text() if path.exists() else "# Performance\n"
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.DOTALL)
    if pattern.search(text) is None:
        text = text.rstrip("\n") + f"\n\n{START}\n{END}\n"
    path.write_text(pattern.sub(lambda _: f"{START}\n{block}\n{END}", text, count=1))
