"""`make bench` / `make bench-smoke`: dataset, servers, identity check, load, report.

    python -m bench.run [--smoke] [--rows-10m] [--rounds N] [--duration S] [--profile]
                        [--batch-only]

Every step runs on the embedded PostgreSQL (Unix socket) and, when BENCH_DATABASE_URL is set,
again on that server over TCP; docs/performance.md shows both paths side by side, and the
service's throughput against its pool size (DB_POOL_SIZE) on each.

Exit status: 0 when the harness ran (whatever the targets say), 2 when it could not.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import batch, identity, report, stalls
from bench.cpu import CpuMeter, Tree, busy_cores, listener_pid
from bench.databases import client_backends, postgres_pid
from bench.databases import server_facts as pg_facts
from bench.dataset import (
    DbServer,
    Manifest,
    Spec,
    database_paths,
    ensure_dataset,
    open_server,
)
from bench.load import WrkResult, ensure_wrk, finish_wrk, start_wrk
from bench.mix import build_mix, write_mix
from bench.procs import Children, HarnessError, install_signal_handlers
from bench.profile import profile_service
from bench.run_plan import Plan, plan
from bench.run_results import assemble, batch_only, log, publish
from bench.run_sweeps import measure_pool_sizes, measure_scaling
from bench.servers import (
    DEFAULT_POOL_SIZE,
    ROOT,
    Deployment,
    Server,
    launch,
    pool_size_for,
    rate_limit_storage,
    wait_ready,
)

DATA = ROOT / ".data"
LOG_DIR = DATA / "bench-logs"
Json = dict[str, Any]


class Bench:
    """One run: holds the children, the database server and what was measured."""

    def __init__(self, plan: Plan, children: Children, db: DbServer, wrk: str) -> None:
        self.plan = plan
        self.children = children
        self.db = db
        self.wrk = wrk
        self.storage = rate_limit_storage()
        self.redis_pid = listener_pid(6379) if self.storage.startswith("redis") else None
        self.busy_before = 0.0  # cores other processes used just before the run
        self.pool_size: int | None = None  # per worker, both servers; decided at first start

    def prepare(self, spec: Spec) -> tuple[str, Manifest, Path]:
        url, manifest = ensure_dataset(self.db, spec, log)
        mix_file = DATA / f"bench-mix-{self.db.database_name(spec)}.tsv"
        write_mix(build_mix(manifest, self.plan.mix_size), mix_file)
        return url, manifest, mix_file

    def launch(
        self, name: str, spec: Spec, url: str, manifest: Manifest, pool_size: int | None = None
    ) -> Server:
        """Start a server (without waiting for it: both start at once, to save time)."""
        tag = self.db.database_name(spec)
        if self.pool_size is None:
            facts = pg_facts(url)
            self.pool_size = (
                pool_size_for(int(facts["max_connections"]), int(facts["connections_in_use"]))
                or DEFAULT_POOL_SIZE
            )
            if self.pool_size != DEFAULT_POOL_SIZE:
                log(
                    f"max_connections {facts['max_connections']}: DB_POOL_SIZE={self.pool_size}"
                    " for both servers so that their pools fit"
                )
        log(f"starting {name} on {tag}")
        if pool_size is None and self.pool_size != DEFAULT_POOL_SIZE:
            pool_size = self.pool_size
        probe = LOG_DIR / "stalls" if self.plan.stall_probe else None
        deployment = Deployment(url, manifest.pepper, self.storage, pool_size, probe)
        return launch(self.children, name, tag, deployment)

    def trees(
        self, server: Server, generator: int, pg_pid: int | None, backends: list[int]
    ) -> dict[str, Tree]:
        trees = {
            "server": Tree.of(server.proc.pid),
            "generator": Tree.of(generator, children=False),
        }
        if pg_pid is not None:
            trees["postgres"] = Tree.of(pg_pid)
            # Also counted in `postgres`; only used for the per-lookup figure.
            trees["pg_backends"] = Tree(tuple(backends), children=False)
        if self.redis_pid is not None:
            trees["redis"] = Tree.of(self.redis_pid, children=False)
        return trees

    def saturate(
        self,
        server: Server,
        mix: Path,
        duration: float,
        pg_pid: int | None,
        url: str,
        connections: int | None = None,
    ) -> Json:
        plan = self.plan
        # The pools are filled by the warm-up and keep their connections: these backends
        # serve this run. Background processes (checkpointer, autovacuum…) are left out of
        # the per-lookup figure so that a slower server is not charged more of them.
        backends = client_backends(url) if pg_pid is not None else []
        proc = start_wrk(
            self.children,
            self.wrk,
            server.base_url,
            mix,
            duration=duration,
            connections=connections or plan.connections,
            threads=plan.threads,
            timeout=plan.timeout,
        )
        trees = self.trees(server, proc.pid, pg_pid, backends)
        with CpuMeter(trees, nested=("pg_backends",)) as meter:
            result: WrkResult = finish_wrk(self.children, proc, duration)
        run: Json = {**result.__dict__, **_cpu_figures(meter, result.requests)}
        run["pg_backends"] = len(backends)
        return run

    def open_loop(
        self,
        server: Server,
        mix: Path,
        rate: float,
        duration: float,
        pg_pid: int | None = None,
        url: str = "",
    ) -> Json:
        """One open-loop run; with `pg_pid`, also the CPU of each process tree and of the
        database's client backends per lookup (both servers face the same rate here, unlike
        at saturation)."""
        backends = client_backends(url) if pg_pid is not None else []
        argv = [
            sys.executable,
            "-m",
            "bench.openloop",
            f"--port={server.port}",
            f"--mix={mix}",
            f"--rate={rate:.1f}",
            f"--duration={duration}",
            f"--connections={self.plan.connections}",
            f"--timeout={self.plan.timeout}",
        ]
        started = time.time()
        proc = self.children.spawn("openloop", argv, cwd=ROOT, capture_stdout=True)
        trees = self.trees(server, proc.pid, pg_pid, backends)
        try:
            with CpuMeter(trees, nested=("pg_backends",)) as meter:
                stdout, _ = proc.communicate(timeout=duration + self.plan.timeout + 30)
        except subprocess.TimeoutExpired:
            raise HarnessError("the open-loop generator did not finish in time") from None
        finally:
            self.children.release(proc)
        if proc.returncode != 0:
            raise HarnessError(
                "the open-loop generator failed:\n"
                + self.children.log_path("openloop").read_text(errors="replace")[-2000:]
            )
        result: Json = json.loads(stdout)
        # Its own CPU share: near one core means it, not the server, set the pace.
        result["generator_cores"] = round(result["generator_cpu_s"] / result["wall_s"], 2)
        if server.stall_dir is not None:
            result["stalls"] = stalls.summarize(server.stall_dir, started, time.time())
        if pg_pid is not None:
            result.update(_cpu_figures(meter, int(result["completed"])))
        return result


def _cpu_figures(meter: CpuMeter, answered: int) -> Json:
    """Cores busy per process tree, and the database's client backends' CPU per lookup."""
    cores = meter.cores()
    cores.pop("pg_backends", None)  # also inside `postgres`; only for the per-lookup figure
    pg_seconds = meter.seconds.get("pg_backends", 0.0)
    return {
        "cpu_cores": cores,
        "pg_cpu_us_per_lookup": round(pg_seconds / max(answered, 1) * 1e6, 1),
    }


def measure(bench: Bench) -> Json:
    plan = bench.plan
    url, manifest, mix = bench.prepare(plan.main)
    pg_pid = postgres_pid(url)
    service = bench.launch("service", plan.main, url, manifest)
    baseline = bench.launch("baseline", plan.main, url, manifest)
    servers = (service, baseline)
    for server in servers:
        wait_ready(server, log)

    probes = identity.check(service, baseline, manifest)
    log(f"identity: {probes} probes answered alike by both servers")

    for server in servers:
        log(f"warm-up {server.name} ({plan.warmup:g} s)")
        bench.saturate(server, mix, plan.warmup, pg_pid, url)

    rounds: dict[str, list[Json]] = {"service": [], "baseline": []}
    for number in range(1, plan.rounds + 1):
        for server in servers:  # interleaved: drift (heat, caches) hits both alike
            run = bench.saturate(server, mix, plan.duration, pg_pid, url)
            rounds[server.name].append(run)
            log(
                f"round {number}/{plan.rounds} {server.name}: {run['rps']:,.0f} req/s, "
                f"p50 {run['p50_ms']:.2f} ms, p99 {run['p99_ms']:.2f} ms, max "
                f"{run['max_ms']:.0f} ms, errors {run['non2xx'] + run['socket_errors']}, "
                f"timeouts {run['timeouts']}, cores {run['cpu_cores']}"
            )
    saturation = {name: report.summarize_rounds(runs) for name, runs in rounds.items()}
    for name, runs in rounds.items():
        saturation[name]["rounds"] = runs

    peak = saturation["service"]["rps"]
    # The same rate for every size, well under the service's capacity on this machine:
    # past it, the open loop measures a queue, not a lookup.
    scale_rate = float(min(plan.scale_rate, max(10, round(peak / 4))))
    open_loop: dict[str, Json] = {"service": {}, "baseline": {}}
    # Interleaved rounds, medians (as at saturation): one burst of noise on the shared machine
    # decided a single run's p99 (the same server's p99 ranged 5-28 ms between runs).
    for key, rate in (("half_peak", max(1.0, peak / 2)), ("rate_500", 500.0)):
        loops: dict[str, list[Json]] = {"service": [], "baseline": []}
        for number in range(1, plan.open_loop_rounds + 1):
            for server in servers:
                result = bench.open_loop(server, mix, rate, plan.open_loop, pg_pid, url)
                loops[server.name].append(result)
                log(
                    f"open loop {number}/{plan.open_loop_rounds} {server.name} at {rate:,.0f} "
                    f"req/s: p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, max "
                    f"{result['max_ms']:.1f} ms, PostgreSQL "
                    f"{result['pg_cpu_us_per_lookup']:.0f} us per lookup, send lag p99 "
                    f"{result['lag_p99_ms']:.2f} ms, generator {result['generator_cores']:.2f} "
                    "cores; slowest seconds "
                    + ", ".join(
                        f"t={w['second']}s max {w['max_ms']:.0f} ms (send lag "
                        f"{w['lag_max_ms']:.0f})"
                        for w in result["worst_seconds"][:3]
                    )
                )
                if "stalls" in result:
                    log(f"  {server.name}: {stalls.describe(result['stalls'])}")
        for name, server_runs in loops.items():
            open_loop[name][key] = report.summarize_open_loop(server_runs)

    profile = None
    if plan.profile:
        profile = profile_service(bench, service, mix, pg_pid, url, log)

    bench.children.release(baseline.proc)
    batch_point = batch.measure_batch(bench, service, manifest, mix, url, pg_pid, log)
    bench.children.release(service.proc)
    pool_sweep = measure_pool_sizes(bench, mix, pg_pid, url, manifest)
    scaling = measure_scaling(bench, scale_rate)

    return {
        "manifest": manifest,
        "url": url,
        "saturation": saturation,
        "ratio": round(saturation["service"]["rps"] / max(saturation["baseline"]["rps"], 1), 3),
        "open_loop": open_loop,
        "scaling": scaling,
        "pool_sweep": pool_sweep,
        "identity_probes": probes,
        "scale_rate": scale_rate,
        "profile": profile,
        "batch_point": batch_point,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark the provider-id lookup.")
    parser.add_argument("--smoke", action="store_true", help="tiny dataset, short runs (CI)")
    parser.add_argument("--rows-10m", action="store_true", help="also measure at 10M rows")
    parser.add_argument("--rounds", type=int, default=0, help="saturation rounds per server")
    parser.add_argument("--duration", type=float, default=0, help="seconds per saturation run")
    parser.add_argument(
        "--open-loop-rounds", type=int, default=0, help="open-loop runs per server and rate"
    )
    parser.add_argument("--scale-rounds", type=int, default=0, help="open-loop runs per size")
    parser.add_argument(
        "--pool-sizes", default="", help="DB_POOL_SIZE values to measure, e.g. 5,10,40 ('' keeps)"
    )
    parser.add_argument("--profile", action="store_true", help="py-spy a service worker")
    parser.add_argument(
        "--stall-probe",
        action="store_true",
        help="both servers' event-loop stalls, split into running, waiting for a core, blocked",
    )
    parser.add_argument(
        "--batch-only",
        action="store_true",
        help="only the batch point: batch lookups of 100 against single lookups (issue 15)",
    )
    args = parser.parse_args(argv)
    chosen = plan(args)
    install_signal_handlers()
    started = time.monotonic()
    by_path: dict[str, Json] = {}
    try:
        wrk = ensure_wrk(log)
        for url in database_paths():
            log(f"--- {'TCP' if url else 'embedded'} path ---")
            with Children(LOG_DIR) as children, open_server(log, url) as db:
                bench = Bench(chosen, children, db, wrk)
                log(f"rate-limit storage: {bench.storage}")
                bench.busy_before = busy_cores(1.0)
                if bench.busy_before > 0.3:
                    log(
                        f"warning: the machine is already busy ({bench.busy_before:.2f} cores"
                        " used by other processes): absolute numbers will be low, ratios stay"
                        " comparable"
                    )
                if chosen.batch_only:
                    return batch_only(bench, started)
                results = assemble(bench, measure(bench))
            by_path[results["config"]["path"]] = results
    except HarnessError as exc:
        log(f"FAILED: {exc}")
        return 2
    except KeyboardInterrupt:
        log("interrupted: every process the bench started has been stopped")
        return 130
    for path, results in by_path.items():
        publish(path, results, chosen.mode)
    side_by_side = report.paths_table(by_path)
    print("\n" + side_by_side + "\n", flush=True)
    if chosen.mode != "smoke":
        report.update_doc(side_by_side, start=report.PATHS_START, end=report.PATHS_END)
    log(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
