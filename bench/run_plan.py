"""What a `make bench` run measures, and for how long: the full plan, the smoke plan, and the
command line's overrides."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace

from bench.dataset import Spec


@dataclass(frozen=True)
class Plan:
    mode: str
    main: Spec
    scale: tuple[Spec, ...]  # sizes for the latency-vs-rows test, each in its own database
    mix_size: int
    rounds: int
    duration: float  # one saturation run
    warmup: float
    open_loop: float  # one open-loop run
    open_loop_rounds: int  # interleaved open-loop runs per server and rate
    scale_rate: float  # the latency-vs-rows test's rate, capped at a quarter of the peak
    scale_rounds: int  # open-loop runs per size in that test
    pool_sizes: tuple[int, ...]  # DB_POOL_SIZE values of the throughput-against-pool-size runs
    pool_duration: float  # one saturation run per pool size
    connections: int = 64
    threads: int = 2
    timeout: float = 2.0
    profile: bool = False
    stall_probe: bool = False
    batch_only: bool = False  # only the batch point (bench/batch.py)


def plan(args: argparse.Namespace) -> Plan:
    if args.smoke:
        main = Spec("smoke", rows=10_000, groups=20, keys=20)
        chosen = Plan(
            mode="smoke",
            main=main,
            scale=(main,),
            mix_size=2_000,
            rounds=1,
            duration=3,
            warmup=1,
            open_loop=2,
            open_loop_rounds=1,
            scale_rate=200,
            scale_rounds=1,
            pool_sizes=(4,),  # the code path, not a curve
            pool_duration=2,
        )
    else:
        main = Spec("", rows=1_000_000, groups=1_000, keys=1_000)
        # As many keys as the main dataset: the key cache then misses alike at every size,
        # and only the number of rows differs.
        sizes = [Spec("10k", rows=10_000, groups=10, keys=1_000), main]
        if args.rows_10m:
            sizes.append(Spec("10m", rows=10_000_000, groups=1_000, keys=1_000))
        chosen = Plan(
            mode="full",
            main=main,
            scale=tuple(sizes),
            mix_size=20_000,
            rounds=3,
            duration=20,
            warmup=5,
            open_loop=15,
            open_loop_rounds=3,
            scale_rate=200,
            scale_rounds=5,
            pool_sizes=(2, 5, 10, 20, 40),
            pool_duration=10,
        )
    if args.rounds:
        chosen = replace(chosen, rounds=args.rounds)
    if args.duration:
        chosen = replace(chosen, duration=args.duration)
    if args.open_loop_rounds:
        chosen = replace(chosen, open_loop_rounds=args.open_loop_rounds)
    if args.scale_rounds:
        chosen = replace(chosen, scale_rounds=args.scale_rounds)
    if args.pool_sizes:
        pools = tuple(int(size) for size in args.pool_sizes.split(",") if size.strip())
        chosen = replace(chosen, pool_sizes=pools)
    return replace(
        chosen, profile=args.profile, stall_probe=args.stall_probe, batch_only=args.batch_only
    )
