"""`make bench-jobs`: prospecting jobs end to end, with the sandbox provider at zero delay.

A fresh database (`jobs_bench` on the embedded PostgreSQL under .data/bench-jobs-pg, or on the
server of BENCH_DATABASE_URL), migrated; account groups and one key made with the project's
own code; `sonarly-api serve --no-worker` (2 processes) and `sonarly-api worker` processes.
In order:

1. pick-up: small jobs POSTed at a fixed rate, one worker; for each, the worker's start
   (`startedAt`, the database clock at the claim) minus the moment the client began sending
   the POST (same machine, same clock), and the queue's own wait (`startedAt - createdAt`);
2. a 2,000-result job, a few times, each on a fresh group: `finishedAt - startedAt`
   (import and enrichment stages, 80 pages each);
3. the bulk importer on the rows the first of those jobs wrote, into an empty group: as
   `sonarly-api prospects import` (a process, start-up included), and as the importer
   alone (the call that command makes, timed in this process);
4. a second worker; many jobs over many groups POSTed at once; while they run, wrk on the
   lookup (the rows of step 3) against wrk with no jobs before; then the rows: every job
   completed once, its prospects, ledger entries and queue entries as they should be.

Writes bench/results/jobs-latest.json and the part of docs/performance.md between
`<!-- jobs:start -->` and `<!-- jobs:end -->` (full runs only; --smoke prints them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench import jobs_report
from bench.databases import database_paths, database_server, fresh_database
from bench.import_bench import cli_import, code_version
from bench.import_bench import load_average as load_now
from bench.jobs_data import (
    PEPPER,
    check_rows,
    export_job_rows,
    job_body,
    job_rows,
    make_groups,
    make_key,
    post_jobs,
    unfinished,
    wait_claimed,
    wait_final,
)
from bench.live import HarnessError, cli_argv, exit_cleanly_on_sigterm, serve, service_env, spawned
from bench.load import ensure_wrk, finish_wrk, start_wrk
from bench.openloop import percentile
from bench.procs import Children, free_port
from bench.report import machine
from bench.servers import rate_limit_storage
from sonarly_api.migrations import upgrade
from sonarly_api.prospects.importer import import_prospects

ROOT = Path(__file__).resolve().parents[1]
EMBEDDED_DIR = ROOT / ".data" / "bench-jobs-pg"
LOG_DIR = ROOT / ".data" / "bench-jobs-logs"
DATABASE = "jobs_bench"
UNLIMITED = "100000000/minute"
Json = dict[str, Any]


@dataclass(frozen=True)
class Sizes:
    pickup_jobs: int
    pickup_rate: float  # jobs POSTed per second
    big_results: int
    big_runs: int
    scale_jobs: int
    scale_groups: int
    scale_results: int  # maxResults of each of those jobs
    wrk_seconds: float


FULL = Sizes(300, 10.0, 2000, 3, 500, 50, 50, 10.0)
SMOKE = Sizes(20, 20.0, 200, 1, 20, 5, 25, 2.0)


def log(message: str) -> None:
    print(f"[jobs-bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


# --- the steps -------------------------------------------------------------------------------


def measure_pickup(base: str, url: str, key: str, groups: list[str], sizes: Sizes) -> Json:
    plan = [(groups[i % len(groups)], job_body(1, f"p{i}")) for i in range(sizes.pickup_jobs)]
    log(f"pick-up: {len(plan)} one-result jobs at {sizes.pickup_rate:g}/s, 1 worker")
    posted = asyncio.run(post_jobs(base, key, plan, sizes.pickup_rate))
    ids = [p.job_id for p in posted]
    asyncio.run(wait_final(url, ids, 120))
    rows = {r["id"]: r for r in asyncio.run(job_rows(url, ids))}
    from_post = [rows[p.job_id]["started_at"] - p.sent_at for p in posted]
    from_created = [r["started_at"] - r["created_at"] for r in rows.values()]
    return {
        "jobs": len(ids),
        "rate_per_s": sizes.pickup_rate,
        "from_post_p50_ms": ms(percentile(from_post, 0.5)),
        "from_post_p99_ms": ms(percentile(from_post, 0.99)),
        "from_post_max_ms": ms(max(from_post)),
        "queue_wait_p50_ms": ms(percentile(from_created, 0.5)),
        "queue_wait_p99_ms": ms(percentile(from_created, 0.99)),
        "problems": check_rows(list(rows.values()), len(ids)),
    }


def measure_big_job(base: str, url: str, key: str, groups: list[str], sizes: Sizes) -> Json:
    """Each run on a group of its own: every prospect is new."""
    runs = []
    for n, group in enumerate(groups):
        posted = asyncio.run(
            post_jobs(base, key, [(group, job_body(sizes.big_results, "big"))], None)
        )
        asyncio.run(wait_final(url, [posted[0].job_id], 120))
        row = asyncio.run(job_rows(url, [posted[0].job_id]))[0]
        seconds = row["finished_at"] - row["started_at"]
        log(f"{sizes.big_results}-result job {n + 1}/{len(groups)}: {seconds:.3f} s")
        runs.append({"job_id": row["id"], "group": group, "seconds": round(seconds, 3),
                     "created": row["created"], "problems": check_rows([row], 1)})  # fmt: skip
    median = statistics.median(r["seconds"] for r in runs)
    created = runs[0]["created"]
    return {"results": sizes.big_results, "runs": runs, "median_seconds": round(median, 3),
            "prospects_per_second": round(created / median)}  # fmt: skip


def measure_import(url: str, job_id: str, groups: list[str], work: Path) -> tuple[Json, list[str]]:
    """The importer on the same rows, each time into an empty group: as the command (a
    process, start-up included), and as the command's own call in this process (the
    importer alone); also the provider ids imported, for the lookups."""
    rows_file = work / "job-rows.csv"
    rows = asyncio.run(export_job_rows(url, job_id, rows_file))
    log(f"importer: {rows} rows through `sonarly-api prospects import`")
    command = cli_import(url, groups[0], rows_file, LOG_DIR / "import.log")
    alone = asyncio.run(import_in_process(url, groups[1], rows_file))
    with rows_file.open(encoding="utf-8") as file:
        provider_ids = [r["providerId"] for r in csv.DictReader(file)]
    figures = {
        "rows": rows,
        "command_seconds": round(command.seconds, 3),
        "command_rows_per_second": round(rows / command.seconds),
        "importer_seconds": round(alone, 3),
        "importer_rows_per_second": round(rows / alone),
        "created": command.summary.get("created"),
    }
    return figures, provider_ids


async def import_in_process(url: str, group: str, path: Path) -> float:
    """What `prospects import` calls, timed on a warm engine (connected beforehand)."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        started = time.perf_counter()
        await import_prospects(engine, group, path)
        return time.perf_counter() - started
    finally:
        await engine.dispose()


def write_mix(path: Path, group: str, provider_ids: list[str], key: str) -> None:
    lines = [
        f"/v1/accounts/{group}/prospects/by-provider-id/{quote(p, safe='')}\t{key}\n"
        for p in provider_ids
    ]
    path.write_text("".join(lines), encoding="ascii")


def start_lookups(children: Children, base: str, mix: Path, seconds: float) -> Any:
    return start_wrk(
        children, ensure_wrk(log), base, mix, duration=seconds, connections=16, threads=2,
        timeout=5,
    )  # fmt: skip


def lookups_result(children: Children, proc: Any, seconds: float) -> Json:
    result = finish_wrk(children, proc, seconds)
    return {
        "rps": result.rps,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "errors": result.errors,
        "timeouts": result.timeouts,
        "load_average": load_now(),
    }


def wrk_run(children: Children, base: str, mix: Path, seconds: float) -> Json:
    return lookups_result(children, start_lookups(children, base, mix, seconds), seconds)


def measure_scale(
    children: Children,
    base: str,
    url: str,
    key: str,
    groups: list[str],
    mix: Path,
    sizes: Sizes,
    start_workers: Callable[[], None],
) -> Json:
    """No worker runs when this starts: the jobs are all POSTed first (the lookups measure the
    workers' load, not the API's own POSTs), then two workers start, and the lookups with them,
    once the first job is claimed."""
    wrk_run(children, base, mix, min(3.0, sizes.wrk_seconds))  # warm-up, not kept
    idle = wrk_run(children, base, mix, sizes.wrk_seconds)
    log(f"lookups, no jobs: {idle['rps']:,.0f} req/s")
    plan = [
        (groups[i % len(groups)], job_body(sizes.scale_results, f"s{i}"))
        for i in range(sizes.scale_jobs)
    ]
    log(f"scale: {len(plan)} jobs of {sizes.scale_results} over {len(groups)} groups, 2 workers")
    posting_started = time.perf_counter()
    posted = asyncio.run(post_jobs(base, key, plan, None))
    posting = time.perf_counter() - posting_started
    ids = [p.job_id for p in posted]
    started = time.perf_counter()
    start_workers()
    asyncio.run(wait_claimed(url, ids, 60))
    window_opened = time.time()
    busy = wrk_run(children, base, mix, sizes.wrk_seconds)
    left = asyncio.run(unfinished(url, ids))
    asyncio.run(wait_final(url, ids, 600))
    all_done = time.perf_counter() - started
    rows = asyncio.run(job_rows(url, ids))
    # How much of the lookups' window had jobs running.
    last_final = max(r["finished_at"] for r in rows)
    coverage = min(1.0, max(0.0, (last_final - window_opened) / sizes.wrk_seconds))
    log(
        f"lookups, jobs running: {busy['rps']:,.0f} req/s (jobs during {coverage:.0%} of it;"
        f" {left} unfinished after)"
    )
    after = wrk_run(children, base, mix, sizes.wrk_seconds)
    log(f"lookups, no jobs again: {after['rps']:,.0f} req/s")
    # Idle before and after, averaged: the machine's speed drifts over minutes.
    idle_rps = (idle["rps"] + after["rps"]) / 2
    written = sum(r["created"] + r["updated"] + r["unchanged"] for r in rows)
    return {
        "jobs": len(ids),
        "groups": len(groups),
        "results_per_job": sizes.scale_results,
        "posting_seconds": round(posting, 2),
        "all_final_seconds": round(all_done, 2),  # from the workers' start
        "prospects_written": written,
        "prospects_per_second": round(written / all_done),
        "unfinished_after_wrk": left,
        "jobs_cover_window": round(coverage, 2),
        "problems": check_rows(rows, len(plan)),
        "lookups_idle": idle,
        "lookups_with_jobs": busy,
        "lookups_idle_after": after,
        "lookups_ratio": round(busy["rps"] / idle_rps, 2) if idle_rps else 0.0,
    }


# --- main ------------------------------------------------------------------------------------


@contextlib.contextmanager
def worker(env: dict[str, str], name: str) -> Iterator[None]:
    with spawned([*cli_argv(), "worker"], env, LOG_DIR / f"{name}.log"):
        yield


def run(sizes: Sizes, smoke: bool) -> Json:
    results: Json = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "machine": machine(),
                     "code": code_version(), "smoke": smoke, "sizes": sizes.__dict__,
                     "load_average_start": load_now()}  # fmt: skip
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with (
        database_server(database_paths(DATABASE)[-1], EMBEDDED_DIR) as (maintenance, where),
        tempfile.TemporaryDirectory() as tmp,
        Children(LOG_DIR) as children,
        contextlib.ExitStack() as stack,
    ):
        work = Path(tmp)
        url = asyncio.run(fresh_database(maintenance, DATABASE))
        upgrade(url)
        results["database"] = where
        pickup_groups = asyncio.run(make_groups(url, 10, "pickup"))
        scale_groups = asyncio.run(make_groups(url, sizes.scale_groups, "scale"))
        big_groups = asyncio.run(make_groups(url, sizes.big_runs, "big"))
        import_groups = asyncio.run(make_groups(url, 2, "import"))
        key = asyncio.run(make_key(url, pickup_groups + scale_groups + big_groups + import_groups))
        env = service_env(
            DATABASE_URL=url,
            API_KEY_PEPPER=PEPPER,
            SANDBOX_PAGE_DELAY_MS="0",
            RATE_LIMIT=UNLIMITED,
            AUTH_FAILURE_RATE_LIMIT=UNLIMITED,
            DB_POOL_SIZE="10",
            LOG_LEVEL="warning",
            # Two server processes: their counters must be shared (serve refuses memory://).
            RATE_LIMIT_STORAGE_URI=rate_limit_storage(),
        )
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        extra = ["--no-worker", "--workers", "2"]
        stack.enter_context(serve(env, port, LOG_DIR / "server.log", extra))
        first = stack.enter_context(contextlib.ExitStack())
        first.enter_context(worker(env, "worker-1"))
        # Warm-up: the worker is up and every process has its connections.
        warm = asyncio.run(post_jobs(base, key, [(pickup_groups[0], job_body(1, "w"))] * 4, 4))
        asyncio.run(wait_final(url, [p.job_id for p in warm], 90))
        results["pickup"] = measure_pickup(base, url, key, pickup_groups, sizes)
        results["big_job"] = measure_big_job(base, url, key, big_groups, sizes)
        first_job = results["big_job"]["runs"][0]["job_id"]
        results["import"], provider_ids = measure_import(url, first_job, import_groups, work)
        mix = work / "mix.txt"
        write_mix(mix, import_groups[0], provider_ids, key)
        first.close()  # the scale step starts its two workers itself

        def start_workers() -> None:
            stack.enter_context(worker(env, "worker-1b"))
            stack.enter_context(worker(env, "worker-2"))

        results["scale"] = measure_scale(
            children, base, url, key, scale_groups, mix, sizes, start_workers
        )
    results["load_average_end"] = load_now()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny numbers, under a minute (CI)")
    args = parser.parse_args(argv)
    exit_cleanly_on_sigterm()
    try:
        results = run(SMOKE if args.smoke else FULL, args.smoke)
    except HarnessError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 2
    results["targets"] = jobs_report.targets(results)
    for t in results["targets"]:
        log(f"{jobs_report.verdict(t)}  {t['name']}: {t['value']} (goal {t['goal']})")
    block = jobs_report.markdown(results)
    # Speed is reported, never an exit status; lost or twice-run jobs are a fault.
    faulty = 1 if jobs_report.faults(results) else 0
    if args.smoke:
        print(block)
        return faulty
    jobs_report.save(results, block)
    log(f"wrote {jobs_report.RESULTS.relative_to(ROOT)} and {jobs_report.DOC.relative_to(ROOT)}")
    return faulty


if __name__ == "__main__":
    sys.exit(main())
