"""The batch point: provider ids answered per second through batch lookups of 100, against
single lookups of the same service in the same run, and a batch's latency at half its peak.

The batches are drawn like the single mix (bench/mix.py: 98% unique, 1% ambiguous, 1% none,
each batch one group with a key granted it) and replayed by the same tools: wrk for the
saturation rounds (bench/wrk/mix.lua POSTs a line that carries a body), bench/openloop.py for
the open loop. Rounds interleave single and batch saturation runs, so drift on the shared
machine hits both alike; medians. Before timing, one batch is checked against the single
lookups of its ids, byte for byte: a ratio means nothing if the batch does other work.
"""

from __future__ import annotations

import http.client
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import report
from bench.databases import postgres_pid
from bench.dataset import Manifest
from bench.mix import _provider, keys_by_group, lookup_path
from bench.procs import HarnessError, Log
from bench.profile import profile_service
from bench.servers import Server, wait_ready

if TYPE_CHECKING:
    from bench.run import Bench

BATCH_SIZE = 100
BATCH_MIX_SIZE = 400  # distinct batches: 40,000 lookups
TARGET_RATIO = 10.0
PROFILE_OUTPUT = Path(".data/bench-batch-profile.txt")
START, END = "<!-- batch:start -->", "<!-- batch:end -->"
Json = dict[str, Any]


def batch_path(group_id: str) -> str:
    return f"/v1/accounts/{group_id}/prospects/by-provider-id"


def build_batches(manifest: Manifest, count: int, seed: int = 11) -> list[tuple[str, str, str]]:
    """`count` batches of BATCH_SIZE ids: (path, key, JSON body)."""
    rng = random.Random(seed)
    granted = keys_by_group(manifest)
    groups = sorted(granted)
    kinds = ["ambiguous"] + ["none"] + ["unique"] * 98
    batches = []
    for _ in range(count):
        group = rng.choice(groups)
        ids = [_provider(manifest, rng.choice(kinds), group, rng) for _ in range(BATCH_SIZE)]
        body = json.dumps({"providerIds": ids}, separators=(",", ":"))
        batches.append((batch_path(manifest.group_ids[group]), rng.choice(granted[group]), body))
    return batches


def write_batches(batches: list[tuple[str, str, str]], path: Path) -> None:
    """The mix file format, a third column for the body (bench/wrk/mix.lua, bench.openloop)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="ascii") as out:
        out.writelines(f"{p}\t{key}\t{body}\n" for p, key, body in batches)


def _get(server: Server, method: str, path: str, key: str, body: str | None = None) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        content = response.read()
        if response.status != 200:
            raise HarnessError(f"{method} {path}: {response.status} {content[:300]!r}")
        return content
    finally:
        conn.close()


def _data(envelope: bytes) -> bytes:
    head, tail = b'{"success":true,"data":', b',"error":null,"traceId":"'
    return envelope[len(head) : envelope.rindex(tail)]


def check_identity(server: Server, batch: tuple[str, str, str]) -> int:
    """The batch's answer must be its ids' single answers, byte for byte (HarnessError if
    not); returns how many ids it checked."""
    path, key, body = batch
    answer = _data(_get(server, "POST", path, key, body))
    group_id = path.split("/")[3]
    ids = json.loads(body)["providerIds"]
    singles = [_data(_get(server, "GET", lookup_path(group_id, p), key)) for p in ids]
    if answer != b'{"items":[' + b",".join(singles) + b"]}":
        raise HarnessError("a batch lookup's answer differs from its ids' single lookups")
    return len(ids)


def measure_batch(
    bench: Bench,
    service: Server,
    manifest: Manifest,
    single_mix: Path,
    url: str,
    pg_pid: int | None,
    log: Log,
) -> Json:
    """The batch point against a running, warm `service`."""
    plan = bench.plan
    batches = build_batches(manifest, BATCH_MIX_SIZE if plan.mode == "full" else 40)
    mix = single_mix.with_name(single_mix.stem + "-batch.tsv")
    write_batches(batches, mix)
    check_identity(service, batches[0])
    log(f"batch: one batch of {BATCH_SIZE} answered as its ids' single lookups, byte for byte")
    log(f"batch: warm-up ({plan.warmup:g} s)")
    bench.saturate(service, mix, plan.warmup, pg_pid, url)
    runs: dict[str, list[Json]] = {"single": [], "batch": []}
    for number in range(1, plan.rounds + 1):
        for name, replayed in (("single", single_mix), ("batch", mix)):
            run = bench.saturate(service, replayed, plan.duration, pg_pid, url)
            runs[name].append(run)
            per = BATCH_SIZE if name == "batch" else 1
            log(
                f"batch round {number}/{plan.rounds} {name}: {run['rps']:,.0f} req/s = "
                f"{run['rps'] * per:,.0f} ids/s, p50 {run['p50_ms']:.2f} ms, p99 "
                f"{run['p99_ms']:.2f} ms, errors {run['non2xx'] + run['socket_errors']}, "
                f"cores {run['cpu_cores']}"
            )
    single = report.summarize_rounds(runs["single"])
    batch = report.summarize_rounds(runs["batch"])
    ids_per_s = batch["rps"] * BATCH_SIZE
    ratio = ids_per_s / max(single["rps"], 1.0)
    rate = max(1.0, batch["rps"] / 2)
    loops = []
    for number in range(1, plan.open_loop_rounds + 1):
        result = bench.open_loop(service, mix, rate, plan.open_loop, pg_pid, url)
        loops.append(result)
        log(
            f"batch open loop {number}/{plan.open_loop_rounds} at {rate:,.1f} batches/s: p50 "
            f"{result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, max "
            f"{result['max_ms']:.1f} ms, errors {result['non2xx'] + result['errors']}, "
            f"send lag p99 {result['lag_p99_ms']:.2f} ms"
        )
    half = report.summarize_open_loop(loops)
    profile = None
    if plan.profile:
        profile = profile_service(bench, service, mix, pg_pid, url, log, PROFILE_OUTPUT)
    return {
        "batch_size": BATCH_SIZE,
        "batches": len(batches),
        "single": {**single, "rounds": runs["single"]},
        "batch": {**batch, "rounds": runs["batch"]},
        "ids_per_s": round(ids_per_s, 1),
        "single_ids_per_s": single["rps"],
        "ratio": round(ratio, 2),
        "half_peak": half,
        "profile": profile,
    }


def table(results: Json, header: Callable[[Json], str]) -> str:
    """The Markdown block written between the batch markers of docs/performance.md."""
    b = results["batch_point"]
    s, m, half = b["single"], b["batch"], b["half_peak"]
    passed = b["ratio"] >= TARGET_RATIO
    errors = s["errors"] + s["timeouts"] + m["errors"] + m["timeouts"]
    lines = [
        header(results),
        "",
        f"| Saturation (wrk, medians of {len(m['rounds'])} interleaved rounds) | Single "
        f"lookups | Batches of {b['batch_size']} |",
        "|---|---:|---:|",
        f"| Requests/s | {s['rps']:,.0f} | {m['rps']:,.1f} |",
        f"| **Provider ids answered/s** | **{b['single_ids_per_s']:,.0f}** | "
        f"**{b['ids_per_s']:,.0f}** |",
        f"| p50 / p99 / max per request (ms) | {s['p50_ms']:.2f} / {s['p99_ms']:.2f} / "
        f"{s['max_ms']:.0f} | {m['p50_ms']:.2f} / {m['p99_ms']:.2f} / {m['max_ms']:.0f} |",
        f"| CPU, cores busy | {_cores(s)} | {_cores(m)} |",
        f"| PostgreSQL CPU per provider id (client backends) | "
        f"{s.get('pg_cpu_us_per_lookup', 0):.0f} us | "
        f"{m.get('pg_cpu_us_per_lookup', 0) / b['batch_size']:.1f} us |",
        "",
        f"| Batch of {b['batch_size']}, open loop at half its peak "
        f"({half['rate']:,.1f} batches/s, medians of {len(half['rounds'])} runs) | p50 | p99 "
        "| max |",
        "|---|---:|---:|---:|",
        f"| latency from the scheduled send time (ms) | {half['p50_ms']:.2f} | "
        f"{half['p99_ms']:.2f} | {half['max_ms']:.1f} |",
        "",
        "| Target (issue 15) | Wanted | Measured | |",
        "|---|---|---|---|",
        f"| ids/s through batches of {b['batch_size']} vs single lookups | >= "
        f"{TARGET_RATIO:g}x | {b['ratio']:.2f}x | {'PASS' if passed else 'FAIL'} |",
        f"| errors + timeouts (both, saturation) | 0 | {errors} | "
        f"{'PASS' if errors == 0 else 'FAIL'} |",
    ]
    return "\n".join(lines)


def _cores(summary: Json) -> str:
    names = {"server": "server", "postgres": "PG", "generator": "wrk", "redis": "Redis"}
    return ", ".join(f"{names.get(k, k)} {v:.2f}" for k, v in summary["cpu_cores"].items())


def header(results: Json) -> str:
    c, m = results["config"], results["machine"]
    return (
        f"Run of {results['date']} ({results['mode']}), commit `{c['commit']}`"
        + (" with uncommitted changes under src/" if c["src_dirty"] else "")
        + f". Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['ram_gib']} GiB RAM. "
        f"{c['rows']:,} prospects, {c['groups']:,} groups, {c['keys']:,} keys; the service "
        f"as deployed (`sonarly-api serve --workers 2`, rate limiting on "
        f"`{c['rate_limit_storage']}`: a batch spends {BATCH_SIZE} units), wrk with "
        f"{c['connections']} connections, rounds of {c['duration_s']:g} s, open-loop runs of "
        f"{c['open_loop_s']:g} s. Other processes used "
        f"{c['machine_busy_before_cores']:.2f} cores just before the run."
    )


def update_doc(block: str, path: Path = report.DOC) -> None:
    """Rewrite what lies between the batch markers (added before the bench block's start the
    first time); the rest of the document is left alone."""
    text = path.read_text()
    if START not in text:
        text = text.replace(report.START, f"{START}\n{END}\n\n{report.START}", 1)
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    path.write_text(f"{before}{START}\n{block}\n{END}{after}")


def measure_only(bench: Bench, log: Log) -> Json:
    """`--batch-only`: the service alone, warmed with single lookups, then the batch point."""
    plan = bench.plan
    url, manifest, mix = bench.prepare(plan.main)
    service = bench.launch("service", plan.main, url, manifest)
    try:
        wait_ready(service, log)
        log(f"warm-up service ({plan.warmup:g} s)")
        bench.saturate(service, mix, plan.warmup, None, url)
        point = measure_batch(bench, service, manifest, mix, url, postgres_pid(url), log)
    finally:
        bench.children.release(service.proc)
    return {"manifest": manifest, "batch_point": point}


def assemble_only(bench: Bench, measured: Json, commit: str, src_dirty: bool) -> Json:
    manifest: Manifest = measured["manifest"]
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "mode": bench.plan.mode + ", batch point only",
        "machine": report.machine(),
        "config": {
            "commit": commit,
            "src_dirty": src_dirty,
            "rows": manifest.spec.rows,
            "groups": manifest.spec.groups,
            "keys": manifest.spec.keys,
            "rounds": bench.plan.rounds,
            "duration_s": bench.plan.duration,
            "open_loop_s": bench.plan.open_loop,
            "connections": bench.plan.connections,
            "rate_limit_storage": bench.storage,
            "machine_busy_before_cores": bench.busy_before,
        },
        "batch_point": measured["batch_point"],
    }
