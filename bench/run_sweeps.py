"""`make bench`'s sweeps: the service's throughput against DB_POOL_SIZE, and its latency
against the number of rows (one service per size, measured alike)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import report
from bench.databases import server_facts as pg_facts
from bench.dataset import Manifest
from bench.run_results import log
from bench.servers import wait_ready

if TYPE_CHECKING:
    from bench.run import Bench

Json = dict[str, Any]
# Per-size services all run at once in the latency sweep: a small pool each.
SCALE_POOL_SIZE = 10
SCALE_WARMUP_CONNECTIONS = 8


def measure_pool_sizes(
    bench: Bench, mix: Path, pg_pid: int | None, url: str, manifest: Manifest
) -> list[Json]:
    """The service alone at saturation with each DB_POOL_SIZE of the plan (2 workers each, a
    fresh service per size, warmed up first): what a larger pool buys on this machine. Sizes
    whose two pools would not fit the server's max_connections are skipped."""
    plan = bench.plan
    facts = pg_facts(url)
    room = (int(facts["max_connections"]) - int(facts["connections_in_use"]) - 10) // 2
    points = []
    for size in plan.pool_sizes:
        if size > room:
            log(f"pool size {size}: skipped (2 x {size} > what max_connections leaves)")
            continue
        server = bench.launch("service", plan.main, url, manifest, pool_size=size)
        try:
            wait_ready(server, log)
            bench.saturate(server, mix, plan.warmup, None, url)
            run = bench.saturate(server, mix, plan.pool_duration, pg_pid, url)
        finally:
            bench.children.release(server.proc)
        log(
            f"DB_POOL_SIZE={size}: {run['rps']:,.0f} req/s, p99 {run['p99_ms']:.2f} ms, "
            f"{run['pg_backends']} PostgreSQL backends, errors "
            f"{run['non2xx'] + run['socket_errors']}, timeouts {run['timeouts']}"
        )
        points.append(
            {
                "pool_size": size,
                "rps": run["rps"],
                "p50_ms": run["p50_ms"],
                "p99_ms": run["p99_ms"],
                "errors": run["non2xx"] + run["socket_errors"],
                "timeouts": run["timeouts"],
                "pg_backends": run["pg_backends"],
            }
        )
    return points


def measure_scaling(bench: Bench, rate: float) -> list[Json]:
    """p50 at each size, the sizes measured alike: a fresh service per size, all running at
    once and warmed the same way (every key cached in both workers), then open-loop runs at
    one modest rate, interleaved over rounds (10k, 1M, 10M, 10k, …) so that drift on the
    machine hits every size alike; medians per size. (Measured one size after another, with
    the 1M service the one warm from the saturation runs, the p50s of two runs of the same
    size differed by up to 40%: at 200 req/s, latency depends on how awake the machine is.)"""
    plan = bench.plan
    sizes = []
    try:
        for spec in plan.scale:
            url, manifest, mix = bench.prepare(spec)
            # A small pool: at this rate a worker uses a few connections, and every size's
            # service runs at once.
            server = bench.launch("service", spec, url, manifest, pool_size=SCALE_POOL_SIZE)
            sizes.append((spec, manifest, mix, url, server))
        for _, _, mix, url, server in sizes:
            wait_ready(server, log)
            bench.saturate(
                server, mix, plan.warmup, None, url, connections=SCALE_WARMUP_CONNECTIONS
            )
        runs: dict[int, list[Json]] = {spec.rows: [] for spec, *_ in sizes}
        for number in range(1, plan.scale_rounds + 1):
            for spec, _, mix, _, server in sizes:
                result = bench.open_loop(server, mix, rate, plan.open_loop)
                runs[spec.rows].append(result)
                log(
                    f"latency at {spec.rows:,} rows, round {number}/{plan.scale_rounds}: p50 "
                    f"{result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms ({rate:g} req/s)"
                )
    finally:
        for *_, server in sizes:
            bench.children.release(server.proc)
    points = []
    for spec, manifest, *_ in sorted(sizes, key=lambda size: size[0].rows):
        summary = report.summarize_open_loop(runs[spec.rows])
        points.append(
            {
                "rows": spec.rows,
                "database": bench.db.database_name(spec),
                "load_seconds": manifest.load_seconds,
                "rounds": len(runs[spec.rows]),
                **{k: summary[k] for k in ("rate", "p50_ms", "p90_ms", "p99_ms", "max_ms")},
                "timeouts": summary["timeouts"],
            }
        )
    return points
