"""`make bench-import`: how fast `sonarly-api prospects import` loads a million rows, against a
plain COPY of the same rows, and how much memory it needs.

1. Two deterministic 1M-row CSV files (cached under .data/bench-import/): the rows already in
   the database, and the new rows. 1% of provider ids are carried by two persons.
2. A fresh database (`import_bench` on the embedded PostgreSQL under .data/bench-import-pg,
   Unix socket), migrated; one account group, pre-loaded with the first file through the
   importer. With BENCH_DATABASE_URL set, everything is measured again on that server, over
   TCP (its databases named after the URL's: `<database>_import`, `<database>_import_round`),
   and docs/performance.md shows both paths side by side.
3. Rounds (3 by default), each on a fresh copy of that pre-loaded database (`CREATE DATABASE
   … TEMPLATE`), one after the other. Timed in each, each import as its own `sonarly-api
   prospects import` process (wall time from start to exit, peak RSS from the kernel's
   rusage of that process): the import of the new rows, the re-import of the same file,
   which must change nothing, then COPY of the same file into an empty copy of the prospects
   table (`CREATE TABLE … (LIKE prospects INCLUDING ALL)`, same indexes and checks, ids from
   column defaults), streamed from this process. The ratio import/COPY is taken within each
   round, so that both sides of it ran in the same minute: on a shared machine whose speed
   drifts by tens of percent over minutes, one pair of runs can land on either side of a
   target. The round with the median ratio is reported (every round is listed).
4. `--rows-10m`: also a 10M-row file into another group, for the peak RSS at that size.

A VACUUM ANALYZE and a CHECKPOINT precede each timed step, so that no step pays for the
previous one's writes: neither for writing its dirty pages out, nor for the autovacuum that
would otherwise start on the rows just loaded in the middle of the next step (a database
that "already holds" rows has long had them vacuumed and analyzed), nor for setting their
hint bits (each a full-page image in the WAL, data checksums being on).
Writes bench/results/import-latest.json and the part of docs/performance.md between
`<!-- import:start -->` and `<!-- import:end -->` (full-size runs only).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import asyncpg

from bench.databases import (
    DatabasePath,
    database_paths,
    database_server,
    drop,
    execute,
    fresh_database,
    new_group,
    plain,
    sql,
)
from bench.import_report import (
    DOC,
    PATHS_END,
    PATHS_START,
    ROWS_10M,
    TCP_END,
    TCP_HEADING,
    TCP_START,
    markdown,
    paths_table,
    targets,
    update_doc,
)
from bench.report import machine
from sonarly_api.migrations import upgrade

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / ".data" / "bench-import"
EMBEDDED_DIR = ROOT / ".data" / "bench-import-pg"
DATABASE = "import_bench"
ROUND_DATABASE = "import_bench_round"  # a copy of DATABASE, made anew for each round
ROUNDS = 3
PEPPER = "bench-import-pepper-not-a-secret"
RESULTS = ROOT / "bench" / "results" / "import-latest.json"
RESULTS_TCP = ROOT / "bench" / "results" / "import-latest-tcp.json"
ROWS = 1_000_000
# Bump when the generated rows change: cached files are then written again.
FILE_VERSION = 1
# The file's columns, as named in the table.
COPY_COLUMNS = ["provider_id", "public_identifier", "linkedin_url", "name", "company_name", "title"]
COLUMNS = ("providerId", "publicIdentifier", "linkedinUrl", "name", "companyName", "title")
_FIRST = ("Avery", "Blake", "Casey", "Dana", "Elliot", "Harper", "Jules", "Logan", "Noor")
_LAST = ("Stone", "Reed", "Lane", "Brooks", "Carter", "Diaz", "Hansen", "Patel", "Weber")
_COMPANIES = ("Northwind", "Bluefin", "Cedar", "Summit", "Lumen", "Vertex", "Orbit", "Atlas")
_TITLES = ("CEO", "CTO", "VP Sales", "Account Executive", "Head of Growth", "Product Manager")

Json = dict[str, Any]


def log(message: str) -> None:
    print(f"[import-bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def code_version() -> Json:
    """The commit measured, and whether src/ differs from it (then the figures are not it)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    return {"commit": git("rev-parse", "--short", "HEAD") or "unknown",
            "src_modified": bool(git("status", "--porcelain", "--", "src"))}  # fmt: skip


# --- files ------------------------------------------------------------------------------------


def rows_file(rows: int, tag: str) -> Path:
    """A CSV of `rows` rows whose provider ids and persons carry `tag` (files with different
    tags share nothing). Written once; reused while its sidecar matches."""
    path = DATA_DIR / f"prospects-{tag}-{rows}.csv"
    meta = path.with_suffix(".json")
    wanted = {"rows": rows, "tag": tag, "version": FILE_VERSION}
    with contextlib.suppress(OSError, ValueError):
        if path.is_file() and json.loads(meta.read_text()) == {**wanted, "bytes": _size(path)}:
            return path
    log(f"writing {rows:,} rows to {path.relative_to(ROOT)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"{tag}:{rows}")
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(COLUMNS)
        writer.writerows(_rows(rows, tag, rng))
    os.replace(partial, path)
    meta.write_text(json.dumps({**wanted, "bytes": _size(path)}))
    return path


def _size(path: Path) -> int:
    return path.stat().st_size


def _rows(count: int, tag: str, rng: random.Random) -> Iterator[tuple[str, ...]]:
    for i in range(count):
        # Every 100th row takes the previous row's provider id with another person.
        provider = f"crm-{tag}-{i - 1 if i % 100 == 99 else i:08d}"
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        handle = f"{first}-{last}-{tag}{i:08x}".lower()
        url = "" if i % 10 == 3 else f"https://www.linkedin.com/in/{handle}"
        company = "" if i % 33 == 5 else f"{rng.choice(_COMPANIES)} {rng.randrange(1, 500)}"
        yield provider, handle, url, f"{first} {last}", company, rng.choice(_TITLES)


# --- database ---------------------------------------------------------------------------------


async def copy_baseline(url: str, path: Path) -> Json:
    """COPY the file into an empty table like prospects (its indexes and checks; no foreign
    keys, which LIKE does not copy), the columns the file lacks filled by defaults."""
    conn = await asyncpg.connect(plain(url))
    try:
        group = await conn.fetchval("SELECT id FROM account_groups LIMIT 1")
        await conn.execute("DROP TABLE IF EXISTS prospects_copy")
        await conn.execute("CREATE TABLE prospects_copy (LIKE prospects INCLUDING ALL)")
        await conn.execute("CREATE TEMP SEQUENCE copy_ids")
        hex_id = "lpad(to_hex(nextval('copy_ids')), 24, '0')"
        await conn.execute(
            f"ALTER TABLE prospects_copy ALTER id SET DEFAULT {hex_id},"
            f" ALTER person_id SET DEFAULT {hex_id},"
            f" ALTER account_group_id SET DEFAULT '{group}'"
        )
        await conn.execute("VACUUM ANALYZE")
        await conn.execute("CHECKPOINT")
        started = time.perf_counter()
        status = await conn.copy_to_table(
            "prospects_copy",
            source=path,
            columns=COPY_COLUMNS,
            format="csv",
            header=True,
        )
        seconds = time.perf_counter() - started
        rows = int(status.split()[-1])
        await conn.execute("DROP TABLE prospects_copy")
        return {"seconds": round(seconds, 2), "rows": rows}
    finally:
        await conn.close()


# --- the import, as a process -----------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    seconds: float
    # Until the importer said it had read (and staged) the whole file: the rest is the write.
    read_seconds: float | None
    peak_rss_mib: float
    summary: Json
    load_average_after: list[float]

    def as_json(self) -> Json:
        return {
            "seconds": round(self.seconds, 2),
            "read_seconds": None if self.read_seconds is None else round(self.read_seconds, 2),
            "rows_per_second": round(self.summary["rowsRead"] / self.seconds),
            "peak_rss_mib": round(self.peak_rss_mib, 1),
            "summary": self.summary,
            "load_average_after": self.load_average_after,
        }


def cli_import(url: str, group: str, path: Path, logs: Path) -> Run:
    """`sonarly-api prospects import` in a process of its own; its peak RSS comes from the
    kernel (`wait4`'s ru_maxrss, the high-water mark, not a sample)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "API_KEY_"))}
    env.update(DATABASE_URL=url, API_KEY_PEPPER=PEPPER, PYTHONUNBUFFERED="1")
    # This checkout's code, whether or not it is the installed one.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    argv = [sys.executable, "-c", "from sonarly_api.cli import app; app()"]
    argv += ["prospects", "import", str(path), "--account-group", group, "--json"]
    asyncio.run(sql(url, "VACUUM ANALYZE", "CHECKPOINT"))
    logs.parent.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory() as cwd,  # no .env of the repository
        tempfile.TemporaryFile() as out,
        logs.open("a") as log_file,
    ):
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.PIPE, text=True
        )
        read_at: list[float] = []
        # The progress lines (stderr), timed: "read all …" ends the reading phase.
        follower = threading.Thread(
            target=_follow, args=(proc, started, log_file, read_at), daemon=True
        )
        follower.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            raise
        seconds = time.perf_counter() - started
        follower.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        stdout = out.read().decode()
    if proc.returncode != 0:
        raise SystemExit(f"import failed ({proc.returncode}): {stdout}; see {logs}")
    # Linux reports ru_maxrss in KiB.
    read_seconds = read_at[0] if read_at else None
    return Run(seconds, read_seconds, usage.ru_maxrss / 1024, json.loads(stdout), load_average())


def _follow(
    proc: subprocess.Popen[str], started: float, log_file: TextIO, read_at: list[float]
) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        elapsed = time.perf_counter() - started
        log_file.write(f"[{elapsed:7.1f} s] {line}")
        log_file.flush()  # to follow a long import with tail -f
        if line.startswith("read all ") and not read_at:
            read_at.append(elapsed)


# --- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=ROWS, help="rows per file (default 1M)")
    parser.add_argument("--rows-10m", action="store_true", help="also 10M rows, for peak RSS")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="import/COPY rounds (3)")
    args = parser.parse_args(argv)
    full = args.rows == ROWS
    logs = DATA_DIR / "import.log"
    logs.unlink(missing_ok=True)
    measured = {path.name: measure(args, path, logs) for path in database_paths(DATABASE)}
    if not full:
        log("not the full size: results not written; they would read:")
        for results in measured.values():
            print(markdown(results))
        print(paths_table(measured))
        return
    for name, results in measured.items():
        result_file = RESULTS if name == "embedded" else RESULTS_TCP
        result_file.parent.mkdir(parents=True, exist_ok=True)
        result_file.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
        if name == "embedded":
            update_doc(markdown(results))
        else:
            block = markdown(results, heading=TCP_HEADING, analysis=False)
            update_doc(block, start=TCP_START, end=TCP_END)
        log(f"wrote {result_file.relative_to(ROOT)}")
    update_doc(paths_table(measured), start=PATHS_START, end=PATHS_END)
    log(f"wrote {DOC.relative_to(ROOT)}")


def measure(args: argparse.Namespace, path: DatabasePath, logs: Path) -> Json:
    """Every figure on one path (embedded or TCP)."""
    log(f"--- {path.name} path ---")
    results: Json = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "machine": machine()}
    results["path"] = path.name
    results["code"] = code_version()
    results["rows"] = args.rows
    results["load_average_start"] = load_average()
    existing, new = rows_file(args.rows, "a"), rows_file(args.rows, "b")
    with database_server(path, EMBEDDED_DIR) as (maintenance, where):
        url = asyncio.run(fresh_database(maintenance, path.database))
        upgrade(url)
        results["database"] = where
        # The server settings a bulk load depends on (the embedded server's are in
        # embedded_pg/server.py; docker-compose.yml sets the same on its postgres service).
        version, wal, buffers = asyncio.run(
            sql(url, "SHOW server_version", "SHOW max_wal_size", "SHOW wal_buffers")
        )
        results["postgres"] = f"{version}; max_wal_size {wal}, wal_buffers {buffers}"
        group = asyncio.run(new_group(url, "import bench"))
        log(f"pre-loading {args.rows:,} rows ({where})")
        results["preload"] = cli_import(url, group, existing, logs).as_json()
        asyncio.run(sql(url, "VACUUM ANALYZE", "CHECKPOINT"))  # what each round starts from
        rounds = [
            one_round(n, args, path, maintenance, group, new, logs)
            for n in range(1, args.rounds + 1)
        ]
        asyncio.run(execute(maintenance, drop(path.round_database)))
        results["rounds"] = rounds
        median = sorted(rounds, key=lambda r: r["import_vs_copy"])[(len(rounds) - 1) // 2]
        for key in ("import", "reimport", "copy", "import_vs_copy"):
            results[key] = median[key]
        if args.rows_10m:
            big = rows_file(ROWS_10M, "c")
            log(f"importing {ROWS_10M:,} rows into a new group")
            other = asyncio.run(new_group(url, "import bench 10M"))
            results["import_10m"] = cli_import(url, other, big, logs).as_json()
        if path.url is not None:
            # The server's own databases, not the embedded one's files: leave nothing behind.
            asyncio.run(execute(maintenance, drop(path.database)))
    results["load_average_end"] = load_average()
    results["targets"] = targets(results)
    for t in results["targets"]:
        log(f"{'PASS' if t['pass'] else 'FAIL'}  {t['name']}: {t['value']} (target {t['target']})")
    return results


def one_round(
    number: int,
    args: argparse.Namespace,
    where: DatabasePath,
    maintenance: str,
    group: str,
    path: Path,
    logs: Path,
) -> Json:
    """Import, re-import, then COPY, on a fresh copy of the pre-loaded database."""
    url = asyncio.run(fresh_database(maintenance, where.round_database, template=where.database))
    prefix = f"round {number}/{args.rounds}:"
    log(f"{prefix} importing {args.rows:,} new rows into {args.rows:,}")
    imported = cli_import(url, group, path, logs).as_json()
    log(f"{prefix} re-importing the same file")
    again = cli_import(url, group, path, logs).as_json()
    log(f"{prefix} COPY of the same file into an empty copy of the table")
    copy = asyncio.run(copy_baseline(url, path))
    ratio = round(imported["seconds"] / copy["seconds"], 2)
    log(
        f"{prefix} import {imported['seconds']} s, re-import {again['seconds']} s,"
        f" COPY {copy['seconds']} s: {ratio}x"
    )
    return {"import": imported, "reimport": again, "copy": copy, "import_vs_copy": ratio}


if __name__ == "__main__":
    main()
