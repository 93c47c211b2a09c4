"""`make bench-import`'s report: the targets, the Markdown section of docs/performance.md
(between its own markers; the rest of the document belongs to the lookup bench)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "performance.md"
START, END = "<!-- import:start -->", "<!-- import:end -->"
# The same figures on a PostgreSQL server over TCP (BENCH_DATABASE_URL), and both side by side.
TCP_START, TCP_END = "<!-- import-tcp:start -->", "<!-- import-tcp:end -->"
PATHS_START, PATHS_END = "<!-- import-paths:start -->", "<!-- import-paths:end -->"
TCP_HEADING = "## Bulk import on a PostgreSQL server over TCP"
# Issue 16: 1M rows into 1M on either path.
TARGET_PATH_SECONDS = 30.0
ROWS_10M = 10_000_000
TARGET_SECONDS = 60.0
TARGET_COPY_RATIO = 3.0
TARGET_RSS_MIB = 300.0

Json = dict[str, Any]

# Not measured by this script: a profile of the import step (auto_explain with ANALYZE of
# every statement on the embedded server, so every figure is inflated by the
# instrumentation, ~50% in all), kept here so that it is published with the figures it
# explains. Re-profile when the importer changes.
_PROFILE = [
    ("reading, validating, preparing a chunk", "Python, ~9 µs per row",
     "csv and checks, then `_prepare`: the chunk sorted by public identifier or URL, ids"
     " numbered, rows flagged; overlapped with the server's work on the previous chunk"),
    ("COPY of the chunk", "~40 ms",
     "into a temporary table emptied in place per chunk; ~35 ms of it Python encoding the rows"),
    ("persons: which rows create one", "~40 ms",
     "two index scans of persons with `= ANY (array)`: which public identifiers and URLs of"
     " the rows that may create a person (flagged by Python) a person already has"),
    ("persons: inserting", "~180 ms", "20,000 rows into three unique B-trees"),
    ("prospects: which rows the chunk imports", "~45 ms",
     "rows whose person the chunk created (a hash join), last row per provider id and person"
     " (a sort of the rows whose provider id recurs only), index order (an integer sort)"),
    ("prospects: inserting", "~130 ms", "20,000 rows, two B-trees"),
    ("reference check", "~20 ms",
     "the statement-level trigger (revisions 0002, 0003): the distinct persons and groups,"
     " sorted, then one index scan of each table"),
    ("the other rows, for the final upsert", "~10 ms", "none in this file"),
]  # fmt: skip
ANALYSIS = "\n".join(
    [
        "### Where the import's time goes",
        "",
        "Profile of one chunk (20,000 rows, 50 in all) of the import of 1,000,000 new rows into",
        "1,000,000 (2026-12-02, the importer of revision 0003, auto_explain with ANALYZE on the",
        "embedded server of an AMD EPYC machine: 478 ms per chunk (median), ~440 ms without it;",
        "the reference check from `pg_stat_user_functions`). The final upsert then has nothing",
        "left to do: the server is busy from the first chunk to the last, and the two inserts",
        "are most of it. (Before the fourth pass below, which made the COPY and the lookup of",
        "public identifiers cheaper.)",
        "",
        "| Part | Time | What it is |",
        "|---|---|---|",
        *(f"| {part} | {time} | {what} |" for part, time, what in _PROFILE),
        "",
        "How the importer works since 2026-11-27 (second pass): each chunk's statement creates",
        "the chunk's new persons and also the prospects of the rows whose person it has just",
        "created, which cannot have a prospect yet (dd0e84e); the rows it does not import go",
        "to the final upsert (a later row for a person an earlier chunk created, rows for",
        "existing persons, personId and anonymous rows). Python, which has a core to spare",
        "while the server runs the previous chunk, sorts each chunk in the persons' insert",
        "order, numbers the new ids in index order and flags the rows that need a sort on the",
        "server (dcee440, 6e79979). Measured alternately against the importer of c9f1043",
        "(the same as bdf81aa's) on a 1M-row database cloned from one template, on a machine",
        "shared with other benchmarks (load 1.3-2), in the same minutes: import 33.5 / 33.0 s",
        "before, 30.1 / 27.3 s after (6e79979 not yet); re-import 17.4 / 15.6 s before,",
        "22.8 / 20.3 s after (every row now goes through a chunk statement before the final",
        "upsert, and Python's preparing of the chunks is on the critical path when the",
        "server has little to do; 6e79979 made that preparing ~30% cheaper); COPY 7.0-9.3 s.",
        "",
        "Third pass (2026-12-02): what persons already have, and what the reference check",
        "looks up, is read with `= ANY (array)`, one index scan per index for a whole chunk,",
        "instead of a subquery probing an index for every row (a million probes of persons'",
        "primary key in the check alone, one per public identifier and one per URL in the",
        "chunk statement). PostgreSQL 17 and later move such a scan forward through the",
        "index, reading each leaf page once. Importing the new rows into a copy of one 1M-row",
        "template database, new and old code alternately, in two series (the host's speed",
        "changed between them): the server's CPU 21.9-22.5 s against 23.3-26.9 s, then",
        "16.0-16.5 s (one run: 22.5 s) against 18.1-20.5 s; the trigger alone 1.0 s against",
        "2.55 s.",
        "",
        "Fourth pass (2026-12-02, later; b7e84ec, 60137ba, f988cb0), each measured by",
        "alternating old and new code on copies of one 1M-row template, 3-4 pairs:",
        "",
        "- Each chunk's persons in (public identifier, else URL) order, the rows that create",
        "  no person last. Rows without a URL (10% of this file) used to go last in file",
        "  order: their public identifiers went into the index at random places, and the list",
        "  of public identifiers the chunk looks up was no longer sorted, so its index scan",
        "  sorted it again (~20 ms a chunk against ~5 ms for a sorted list). Import",
        "  21.6-22.7 s against 23.6-25.9 s; the server's CPU 18.3-19.6 s against",
        "  20.7-21.8 s.",
        "- Each chunk reaches COPY as CSV that Python encoded (csv module) while it waited for",
        "  the server's statement on the previous chunk: the COPY then takes the server ~29 ms",
        "  a chunk, where it used to wait on the driver encoding the rows as it sent them",
        "  (~46 ms). Import 22.2-24.3 s against 24.3-24.8 s. Encoding ahead costs Python",
        "  ~3 µs a row against ~2, so it is done only while Python would otherwise wait: done",
        "  always, it made the re-import (whose chunks leave the server little to do, so",
        "  Python is the slower side) slower than the import, 21.6-22.7 s against",
        "  19.2-20.3 s (bench-import at 60137ba, whose rounds measured 3.84×, 2.92× and",
        "  2.75×: the one run of the day whose median round was within 3×, its COPY taking",
        "  5.3-7.0 s).",
        "",
        "Tried, not kept:",
        "",
        "- Binary COPY (asyncpg `copy_records_to_table`, heap multi-insert) straight into",
        "  persons and prospects instead of INSERT … SELECT: 1M persons 11.0-12.6 s against",
        "  12.2-12.9 s, 1M prospects 14.0-16.3 s against 12.6-13.0 s (with Python's encoding of",
        "  the records): index maintenance, not the heap, is the cost. (The floor series",
        "  below, with persons and ids decided in advance, found it cheaper: 1.8-2.7× the plain",
        "  COPY against 2.4-3.0× staged; it gives up the staging table the issue asks for.)",
        '- "The first candidate with this URL" as `(url, line) IN (SELECT url, min(line) …)`:',
        "  estimating ~16 rows for the chunk, the planner evaluated it as a linear subplan,",
        "  1.7 s per chunk (a 97 s import); replaced by a Python flag and a window over the",
        "  few rows whose URL recurs.",
        "- Chunks of 40,000 rows: 30.9 s (COPY 9.5 s) against 29.5 s (COPY 7.3 s) at 20,000 in",
        "  the same minutes; again after the fourth pass, 24.3-24.4 s against 23.2-23.6 s;",
        "  kept 20,000.",
        "- A larger shared_buffers: 2GB (with temp_buffers 512MB) did not pay; 1GB after the",
        "  fourth pass (against the default 128MB; 3 pairs, a restart before each): import",
        "  20.3-23.1 s against 18.0-21.5 s, COPY 5.2-6.1 s against 4.6-5.3 s.",
        "",
        "Checked: the import writes 1.07 GB of WAL (7.05M records, ~800 full-page images),",
        "the COPY 0.49 GB (2.1M records): full-page images are not the cost. A CPU profile of",
        "the server (perf with call graphs, 2026-12-02, revision 0003) splits the backend's",
        "time into: inserting index entries 30%, the `id ~ '^[0-9a-f]{24}$'` checks 17% (two",
        "per imported row, ~1.8 µs each: the regex engine builds its automaton's states anew",
        "for every value), materializing the statement's intermediate rows 7-10%, inserting",
        "heap rows 7% plus 6% extending the tables, the reference check 6%, the COPY of the",
        "chunks 5%. Making the id checks cheaper (e.g. `length(id) = 24 AND id ~ '^[0-9a-f]*$'`",
        "has a two-state automaton) is a schema change that would speed the import (2M ids)",
        "and the baseline COPY (1M ids, ~24% of its time) alike, and make the ratio worse:",
        "left for a decision of its own, with every table's id check.",
        "",
        "Why the ≤ 3× target is out of reach for this design here: the import writes two",
        "tables with five B-trees where the COPY writes one with two, resolves every row's",
        "person against persons and checks every prospect's references, and a single server",
        "process does all of it in one transaction, while the COPY parses its file on the",
        "server with no client work at all. The writes alone set a floor. Writing the same",
        "1M persons and 1M prospects, ids and persons decided in advance, with nothing of",
        "the import's own work (no reading or validating, no identity lookups, no process",
        "start), 3 rounds on copies of the template, each beside a plain COPY in the same",
        "minutes (2026-12-02 17:13-17:20, AMD EPYC): staged by COPY and inserted by",
        "INSERT … SELECT in chunks of 20,000, as the import does, 15.9 / 15.9 / 16.7 s;",
        "by binary COPY straight into the two tables, 12.2 / 12.3 / 15.5 s; the plain COPY",
        "5.4 / 6.8 / 5.7 s. That is 2.4× to 3.0× for the design the issue asks for (COPY",
        "into a staging table, set-based statements) and 1.8× to 2.7× for straight COPY,",
        "before any of the import's own work. A second series (17:43-17:47, a slower host: the",
        "plain COPY 8.1 / 7.2 / 6.6 s) timed the INSERT … SELECT statements alone, without",
        "their staging: 18.7 / 18.1 / 20.2 s, 2.3× to 3.1×. The full import's rounds: 2.75×",
        "to 3.9× in the two runs after the fourth pass.",
        "Meeting ≤ 3× reliably would take a different design, or a machine whose COPY does",
        "not swing between 4.9 s and 7.0 s from one minute to the next. The host's speed",
        "drifts by tens of percent over minutes here (one code's import of an A/B series",
        "took 17.7 s to 29.7 s within an hour), hence the rounds.",
    ]
)


def targets(results: Json) -> list[Json]:
    new, again, copy = results["import"], results["reimport"], results["copy"]
    ratio, size = results["import_vs_copy"], f"{results['rows']:,}"
    # The highest of every round's import (the reported round's is one of them).
    rss = max(r["import"]["peak_rss_mib"] for r in results.get("rounds", [results]))
    found = [
        (f"import of {size} rows into {size}", f"< {TARGET_SECONDS:g} s", f"{new['seconds']} s",
         new["seconds"] < TARGET_SECONDS),
        (f"import of {size} rows into {size} (issue 16, either path)",
         f"≤ {TARGET_PATH_SECONDS:g} s", f"{new['seconds']} s",
         new["seconds"] <= TARGET_PATH_SECONDS),
        ("import vs plain COPY", f"≤ {TARGET_COPY_RATIO:g}×", f"{ratio}× ({copy['seconds']} s)",
         ratio <= TARGET_COPY_RATIO),
        ("re-import changes nothing", "0 created, 0 updated",
         f"{again['summary']['created']} created, {again['summary']['updated']} updated",
         again["summary"]["created"] == again["summary"]["updated"] == 0),
        ("re-import at least as fast", f"≤ {new['seconds']} s", f"{again['seconds']} s",
         again["seconds"] <= new["seconds"]),
        (f"peak RSS, {size} rows", f"< {TARGET_RSS_MIB:g} MiB", f"{rss} MiB",
         rss < TARGET_RSS_MIB),
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


def markdown(results: Json, heading: str = "## Bulk import", analysis: bool = True) -> str:
    m, new, again = results["machine"], results["import"], results["reimport"]
    size = f"{results['rows']:,}"
    lines = [
        heading,
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
    rounds = results.get("rounds", [])
    if "import_10m" in results:
        lines.append(_row(f"{ROWS_10M:,} rows into a new group", results["import_10m"]))
    lines += [
        "",
        "Times are wall time of the whole `sonarly-api prospects import` process: start-up,"
        " reading, validating and staging the file chunk by chunk, each chunk's statement"
        " creating its new persons and their prospects (until its progress line"
        ' "read all …"), then writing (the upsert of the other rows, and commit). Peak RSS is'
        " the kernel's high-water mark for that process. The re-import finds every row"
        f" unchanged ({again['summary']['unchanged']:,}) and writes nothing.",
        "",
        f"Each of the {len(rounds)} rounds ran the import, the re-import and the COPY, in that"
        " order, on a fresh copy of the pre-loaded database; the table shows the round with"
        " the median import/COPY ratio. Every round (import / re-import / COPY):"
        + "".join(
            f" {n}: {r['import']['seconds']} / {r['reimport']['seconds']} /"
            f" {r['copy']['seconds']} s, {r['import_vs_copy']}×;"
            for n, r in enumerate(rounds, 1)
        ).rstrip(";")
        + ".",
        "",
        "| Target | Wanted | Measured | |",
        "|---|---|---|---|",
    ]
    for t in results["targets"]:
        verdict = "PASS" if t["pass"] else "FAIL"
        lines.append(f"| {t['name']} | {t['target']} | {t['value']} | {verdict} |")
    if analysis:  # the embedded section's: the same code, its profile taken there
        lines += ["", ANALYSIS]
    return "\n".join(lines)


def paths_table(by_path: dict[str, Json]) -> str:
    """The embedded server (Unix socket) and the TCP server side by side (issue 16)."""
    names = {"embedded": "Embedded, Unix socket", "tcp": "Server over TCP"}
    shown = [name for name in ("embedded", "tcp") if name in by_path]
    runs = [by_path[name] for name in shown]

    def row(label: str, cell: Any) -> str:
        return f"| {label} | " + " | ".join(cell(r) for r in runs) + " |"

    size = f"{runs[0]['rows']:,}"
    lines = [
        "## Bulk import: embedded and TCP side by side",
        "",
        "`make bench-import` measures the embedded PostgreSQL, and with `BENCH_DATABASE_URL` the"
        " same steps on that server over TCP, in the same run (median round of each; the"
        " sections below give every figure). The CLI's connections run with `jit` off whatever"
        ' the server\'s setting (README, "Connections to PostgreSQL").',
        "",
        "| | " + " | ".join(names[n] for n in shown) + " |",
        "|---|" + "---:|" * len(shown),
        row("PostgreSQL", lambda r: str(r["postgres"])),
        row(f"import of {size} new rows into {size}", lambda r: f"{r['import']['seconds']} s"),
        row("re-import of the same file", lambda r: f"{r['reimport']['seconds']} s"),
        row("plain COPY of the same file", lambda r: f"{r['copy']['seconds']} s"),
        row("import / COPY", lambda r: f"{r['import_vs_copy']}×"),
        row("peak RSS of the import", lambda r: f"{r['import']['peak_rss_mib']} MiB"),
        row(
            f"1M into 1M ≤ {TARGET_PATH_SECONDS:g} s (issue 16)",
            lambda r: "PASS" if r["import"]["seconds"] <= TARGET_PATH_SECONDS else "FAIL",
        ),
    ]
    if "tcp" not in by_path:
        lines += ["", "TCP path not measured in this run (BENCH_DATABASE_URL unset)."]
    return "\n".join(lines)


def update_doc(block: str, path: Path = DOC, start: str = START, end: str = END) -> None:
    """Rewrite what lies between the markers (appended if absent); nothing else."""
    text = path.read_text() if path.exists() else "# Performance\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text) is None:
        text = text.rstrip("\n") + f"\n\n{start}\n{end}\n"
    path.write_text(pattern.sub(lambda _: f"{start}\n{block}\n{end}", text, count=1))
