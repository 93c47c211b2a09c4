"""What `make bench` keeps of a run: the results document, printed, written to bench/results/
and to docs/performance.md (full runs only); the batch point alone (`--batch-only`)."""

from __future__ import annotations

import os
import subprocess
import time
from typing import TYPE_CHECKING, Any

from bench import batch, report
from bench.databases import server_facts as pg_facts
from bench.dataset import Manifest
from bench.servers import ROOT

if TYPE_CHECKING:
    from bench.run import Bench

DATA = ROOT / ".data"
Json = dict[str, Any]


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def git(*args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False, timeout=30
    )
    return done.stdout.strip()


def assemble(bench: Bench, measured: Json) -> Json:
    plan = bench.plan
    manifest: Manifest = measured["manifest"]
    results: Json = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "mode": plan.mode,
        "machine": report.machine(),
        "config": {
            "commit": git("rev-parse", "--short", "HEAD") or "unknown",
            "src_dirty": bool(git("status", "--porcelain", "--", "src")),
            "database": (
                "embedded PostgreSQL (.data/bench-pg, Unix socket)"
                if bench.db.kind == "embedded"
                else "a PostgreSQL server over TCP (BENCH_DATABASE_URL)"
            ),
            "path": "embedded" if bench.db.kind == "embedded" else "tcp",
            "postgres": pg_facts(measured["url"]),
            "rows": manifest.spec.rows,
            "groups": manifest.spec.groups,
            "keys": manifest.spec.keys,
            "mix_requests": plan.mix_size,
            "mix_kinds": "98% unique, 1% ambiguous, 1% none",
            "connections": plan.connections,
            "threads": plan.threads,
            "rounds": plan.rounds,
            "duration_s": plan.duration,
            "open_loop_s": plan.open_loop,
            "scale_rate": measured["scale_rate"],
            "pool_duration_s": plan.pool_duration,
            "workers": 2,
            "db_pool_size": bench.pool_size,
            "rate_limit_storage": bench.storage,
            "machine_busy_before_cores": bench.busy_before,
            # Inherited by everything the harness starts (servers, PostgreSQL, generators):
            # below 0, other work on the machine yields the cores to the run.
            "niceness": os.nice(0),
            "stall_probe": plan.stall_probe,
            "service": "sonarly-api serve --workers 2 (default logging: JSON access line per "
            "request; METRICS_TOKEN set: /metrics on; RATE_LIMIT and AUTH_FAILURE_RATE_LIMIT "
            "100000000/minute)",
            "baseline": "uvicorn bench.baseline:create_app --workers 2 --no-access-log",
        },
        "identity": {"probes": measured["identity_probes"], "identical": True},
        "saturation": measured["saturation"],
        "ratio": measured["ratio"],
        "open_loop": measured["open_loop"],
        "scaling": measured["scaling"],
        "pool_sweep": measured["pool_sweep"],
    }
    if measured["profile"] is not None:
        results["profile"] = measured["profile"]
    results["batch_point"] = measured["batch_point"]
    results["targets"] = report.targets(results)
    return results


def publish(path: str, results: Json, mode: str) -> None:
    """Print one path's figures; keep them (full runs only) in bench/results/ and their own
    section of docs/performance.md."""
    tcp = path == "tcp"
    block = report.table(results)
    if tcp:
        block = "### On a PostgreSQL server over TCP (BENCH_DATABASE_URL)\n\n" + block
    batch_block = batch.table(results, batch.header)
    print("\n" + block + "\n\n" + batch_block + "\n", flush=True)
    report.print_targets(results)
    if mode == "smoke":
        # Smoke numbers are not worth publishing: keep them out of the tracked files.
        kept = DATA / ("bench-smoke-tcp.json" if tcp else "bench-smoke.json")
        report.write_json(results, kept)
        log(f"smoke results: {kept}")
        return
    kept = report.RESULTS_TCP if tcp else report.RESULTS
    report.write_json(results, kept)
    if tcp:
        report.update_doc(block, start=report.TCP_START, end=report.TCP_END)
    else:
        report.update_doc(block)
        batch.update_doc(batch_block)  # the batch section shows the embedded path's figures
    log(f"results: {kept.relative_to(ROOT)}, table: docs/performance.md")


def batch_only(bench: Bench, started: float) -> int:
    dirty = bool(git("status", "--porcelain", "--", "src"))
    measured = batch.measure_only(bench, log)
    results = batch.assemble_only(bench, measured, git("rev-parse", "--short", "HEAD"), dirty)
    block = batch.table(results, batch.header)
    print("\n" + block + "\n", flush=True)
    if bench.plan.mode == "smoke":
        report.write_json(results, DATA / "bench-batch-smoke.json")
    else:
        report.write_json(results, report.RESULTS.with_name("batch-latest.json"))
        batch.update_doc(block)
    log(f"done in {time.monotonic() - started:.0f} s")
    return 0
