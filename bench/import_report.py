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

# Not measured by this script: a profile of the import step (auto_explain with ANALYZE on the
# embedded server, so every figure is inflated by the instrumentation, ~20% in all), kept here
# so that it is published with the figures it explains. Re-profile when the importer changes.
_PROFILE = [
    ("reading, validating, COPY", "~3.6 s of Python",
     "csv and checks, COPY to a temporary table in chunks of 20,000 rows; now overlapped"
     " with the persons statements below, which are the staging phase's bottleneck"),
    ("new persons: resolving (50 chunks)", "~5.4 s",
     "per chunk: first row per public identifier (a sort), index probes on existing public"
     " identifiers and URLs, one sort by (URL, line) for both windows and the insert order"),
    ("new persons: inserting (50 chunks)", "~6.1 s",
     "1,000,000 rows, three unique B-trees (id, public identifier, URL)"),
    ("prospects: resolving", "~3.3 s",
     "persons by public identifier (hash join, 1.8 s), last row per (provider id, person)"
     " (a sort, 0.5 s), existing prospects (probed only for persons the import did not"
     " create: none here), ids numbered in (provider id, line) order (an incremental sort)"),
    ("prospects: inserting", "~6.2 s", "1,000,000 rows, two B-trees"),
    ("reference check", "~1.9 s",
     "the statement-level trigger of revision 0002 (as per-row foreign keys: ~20 s)"),
]  # fmt: skip
ANALYSIS = "\n".join(
    [
        "### Where the import's time goes",
        "",
        "Profile of the import of 1,000,000 new rows into 1,000,000 (2026-11-27, commit c5bf067,",
        "EXPLAIN ANALYZE through auto_explain, so ~20% slower than the figures above):",
        "",
        "| Part | Time | What it is |",
        "|---|---|---|",
        *(f"| {part} | {time} | {what} |" for part, time, what in _PROFILE),
        "",
        "What changed today, each measured on this machine with a 1M-row database cloned from a",
        "template before every run (single runs vary by ±2 s here: other work shares the two",
        "cores). Before: 28.6-31.3 s for the import (staging 3.6 s, then persons 9.6 s and the",
        "prospects statement 14.1 s, one after the other), 13.1 s for the re-import, COPY",
        "5.1-5.4 s.",
        "",
        "1. Pipelined staging (9bd133b): the file is COPYed in chunks of 20,000 rows and each",
        "   chunk's new persons are created by one statement that runs on the server while",
        "   Python parses the next chunk, chunk after chunk in file order (which is exactly",
        '   "as if rows were processed in file order": earlier chunks\' persons are then simply',
        "   existing persons; the tests run the file-order cases in chunks of 1 and 2 rows too).",
        "   A chunk's rows are found by a TID range scan from the page where the previous chunk",
        "   ended. Hash joins would read all of persons per chunk, so these statements are",
        "   planned as index probes. 23.1-23.5 s (chunks of 10,000: 24.4 s; 50,000: 27.5 s);",
        "   peak RSS 78 -> 103 MiB (two chunks of parsed rows), still flat in the file size.",
        "2. The prospects statement numbers new ids where its rows are already in provider id",
        "   order (an incremental sort per provider id instead of a second full sort of the",
        "   materialized rows, ~0.7 s), and skips the existing-prospect index probe (a one-time",
        "   filter) for persons created by this transaction (`xmin`), which cannot have",
        "   prospects yet: 1M probes, ~0.9 s. With both: 22.1-22.4 s (and 25.2 s under load),",
        "   re-import 11.1 s.",
        "",
        "Tried, not kept: shared_buffers 2GB instead of 128MB (29.5 s import, COPY 5.36 s: no",
        "change, the working set is in the OS cache either way); temp_buffers 512MB (28.5 and",
        "31.0 s against 33.0 s in the same loaded minutes: inconclusive, and it cannot be set in",
        "a session that has used a temporary table). Not tried for lack of time: an UNLOGGED",
        "staging table so that the prospects' resolution (a hash join and a sort, ~3 s) can run",
        "as a parallel CREATE TABLE … AS.",
        "",
        "Single runs vary on this shared machine: two consecutive `make bench-import` runs of",
        "commit 5c9dde5 (same code as the figures above) measured the import at 29.92 s and",
        "23.70 s (staging 13.3 / 12.3 s, writing 16.6 / 11.4 s), COPY at 5.40 and 5.27 s.",
        "",
        "Why the ≤ 3× target is still not met: on this machine a plain COPY takes ~5.2 s (the",
        "last recorded run, on a slower or busier machine, measured 11.7 s for the same COPY",
        "against a 47.6 s import: 4.08×; the same code measured 5.5-6× here). The import writes",
        "two tables with five B-trees where the COPY writes one with two: the two inserts alone",
        "cost ~12 s, 2.3× the COPY, before any staging, resolving or reference check. The",
        "staging phase is now bound by the server (COPY plus the persons statements) and the",
        "write phase runs on one core.",
        "",
        "Noticed, left as is: each `id ~ '^[0-9a-f]{24}$'` check costs ~2.7 µs per row, ~2.7 s",
        "per million rows and table (PostgreSQL's regex engine builds its automaton anew for",
        "every row; 1M rows into a persons-like table: 8.0 s with it, 5.3 s without, 6.7 s with",
        "`length(id) = 24 AND ltrim(id, '0123456789abcdef') = ''`). Replacing it is a schema",
        "change that would speed up the import and the baseline COPY alike. On this machine it",
        "is cheaper: over persons' 2M ids the regex takes 1.38 s, the ltrim form 0.92 s, a",
        "bare length test 0.18 s, i.e. ~0.6 µs per row and ~0.25 s to gain per million rows and",
        "table: not worth a migration on two large tables.",
    ]
)


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
    lines += ["", ANALYSIS]
    return "\n".join(lines)


def update_doc(block: str, path: Path = DOC) -> None:
    """Rewrite what lies between our markers (appended if absent); nothing else."""
    text = path.read_text() if path.exists() else "# Performance\n"
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.DOTALL)
    if pattern.search(text) is None:
        text = text.rstrip("\n") + f"\n\n{START}\n{END}\n"
    path.write_text(pattern.sub(lambda _: f"{START}\n{block}\n{END}", text, count=1))
