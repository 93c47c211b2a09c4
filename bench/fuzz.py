"""`make fuzz`: the contract fuzzing of tests/test_schemathesis.py, longer and against a real
server — `sonarly-api serve` (uvicorn, embedded PostgreSQL under .data/fuzz-pg) probed by the
`schemathesis run` CLI on http://127.0.0.1:PORT/openapi.json with every check on. The server
runs with PROVIDER=http against the tests' fake provider (tests/fakeprovider.py, a real HTTP
server in this process), the key's groups connected to it, so the Sales Navigator listings
answer 200 too.

    python -m bench.fuzz [--max-examples N] [--seed S]

Exit status: the CLI's (0 when no check failed); 2 when the harness itself fails, 3 when the
server died during the run, 4 when the run never reached the seeded data (200s of every
resolution, from the single and the batch lookup).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tests.fakeprovider import FakeProvider, running_fake_provider

from bench.live import (
    ROOT,
    Dataset,
    HarnessError,
    cli_json,
    exit_cleanly_on_sigterm,
    free_port,
    log_tail,
    make_dataset,
    run_cli,
    serve,
    service_env,
)
from sonarly_api.embedded_pg import EmbeddedPostgres
from sonarly_api.pagination import encode_cursor

PG_DIR = ROOT / ".data" / "fuzz-pg"
LOG_DIR = ROOT / ".data" / "fuzz-logs"
# One client address sends thousands of requests, many without valid credentials on purpose:
# the limits would answer 429 to most of the run and hide what the fuzzer is looking for.
UNLIMITED = "100000000/minute"
RESOLUTIONS = ("none", "unique", "ambiguous")


def _schemathesis_argv(port: int, max_examples: int, seed: int | None) -> list[str]:
    executable = Path(sys.executable).with_name("schemathesis")
    argv = [str(executable)] if executable.exists() else [sys.executable, "-m", "schemathesis"]
    argv += [
        "--config-file",
        str(ROOT / "bench" / "fuzz.toml"),
        "run",
        f"http://127.0.0.1:{port}/openapi.json",
        "--checks",
        "all",
        "--phases",
        # stateful: chains the job endpoints through the document's links (start -> get ->
        # cancel with the job id a start returned).
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        str(max_examples),
        "--workers",
        "2",
        "--request-timeout",
        "10",
        "--generation-database",
        "none",
        "--no-color",
        "--report",
        "ndjson",
        "--report-ndjson-path",
        str(LOG_DIR / "events.ndjson"),
    ]
    if seed is not None:
        argv += ["--seed", str(seed)]
    return argv


def summarize(events: Path) -> tuple[Counter[int], Counter[str]]:
    """Statuses of every response the run got, and resolutions of the 200 lookups, those of
    the batch lookup's items as `batch <resolution>` (from the CLI's NDJSON report)."""
    statuses: Counter[int] = Counter()
    resolutions: Counter[str] = Counter()
    with events.open(encoding="utf-8") as lines:
        for line in lines:
            event = json.loads(line)
            finished = event.get("ScenarioFinished")
            if finished is None:
                continue
            for interaction in finished["recorder"].get("interactions", {}).values():
                response = interaction.get("response")
                if response is None:
                    continue
                statuses[response["status_code"]] += 1
                content = response.get("content") or {}
                if response["status_code"] == 200 and "$base64" in content:
                    data = json.loads(base64.b64decode(content["$base64"]))["data"]
                    if "resolution" in data:
                        resolutions[data["resolution"]] += 1
                    for item in data.get("items", ()):
                        if isinstance(item, dict) and "resolution" in item:
                            resolutions["batch " + item["resolution"]] += 1
    return statuses, resolutions


def jobs_key(env: dict[str, str], data: Dataset) -> tuple[str, str]:
    """(a key for the whole run, the group its job cases use). The group is on the largest
    plan, so every maxResults the document allows is within its cap, with credits no run
    exhausts; the key also reads the lookup's groups, as the dataset's key does."""
    group = cli_json(
        env,
        "account-groups",
        "create",
        "--name",
        "fuzz jobs",
        "--plan",
        "enterprise",
        "--credits",
        "1000000000",
    )["id"]
    grants = [a for g in (data.group, data.other_group, group) for a in ("--account-group", g)]
    permissions = ("prospects:read", "prospecting:read", "prospecting:write")
    key = cli_json(
        env,
        "keys",
        "create",
        "--name",
        "fuzz jobs",
        *grants,
        *(a for p in permissions for a in ("--permission", p)),
    )["key"]
    return key, group


def connect_linkedin(env: dict[str, str], fake: FakeProvider, groups: list[str]) -> None:
    """The Sales Navigator listings answer 200 for the key's groups: each is connected to an
    account of the fake provider (tests/fakeprovider.py, a real HTTP server) holding lists."""
    for n, group in enumerate(groups):
        account = f"fuzz-{group}"
        run_cli(env, "linkedin", "connect", "--account-group", group, "--provider-account", account)
        fake.account(account).lead_lists = {f"ll-{n}": (f"Fuzz list {n}", [])}
        fake.account(account).saved_searches = {f"ss-{n}": (f"Fuzz search {n}", [])}


def run(max_examples: int, seed: int | None) -> int:
    with running_fake_provider() as fake:
        return _run(max_examples, seed, fake)


def _run(max_examples: int, seed: int | None, fake: FakeProvider) -> int:
    server = EmbeddedPostgres(PG_DIR)
    server.start()  # owned by this run; the CLI commands and the server join it
    try:
        env = service_env(
            EMBEDDED_PG_DIR=str(PG_DIR),
            RATE_LIMIT=UNLIMITED,
            AUTH_FAILURE_RATE_LIMIT=UNLIMITED,
            LOG_LEVEL="warning",
            PROVIDER="http",
            PROVIDER_URL=fake.url,
            PROVIDER_TOKEN=fake.token,
        )
        data = make_dataset(env, LOG_DIR, prospects=200, tag="fuzz")
        key, jobs_group = jobs_key(env, data)
        # The jobs' group too (third: its lists are ll-2 and ss-2, see fuzz_hooks.before_call).
        connect_linkedin(env, fake, [data.group, data.other_group, jobs_group])
        port = free_port()
        log = LOG_DIR / "server.log"
        with serve(env, port, log) as proc:
            fuzz_env = {
                **env,
                "SCHEMATHESIS_HOOKS": "bench.fuzz_hooks",
                "FUZZ_KEY": key,
                "FUZZ_JOBS_GROUP": jobs_group,
                "FUZZ_GROUP": data.group,
                "FUZZ_UNIQUE": data.unique_ids[0],
                "FUZZ_AMBIGUOUS": data.ambiguous_ids[0],
                "FUZZ_CURSOR": encode_cursor(min(data.group, data.other_group)),
            }
            argv = _schemathesis_argv(port, max_examples, seed)
            print("$", " ".join(argv), flush=True)
            status = subprocess.run(argv, env=fuzz_env, cwd=ROOT, check=False).returncode
            if proc.poll() is not None:
                print(f"FAILED: the server exited during the run ({proc.returncode}):")
                print(log_tail(log))
                return 3
        statuses, resolutions = summarize(LOG_DIR / "events.ndjson")
        print(f"responses by status: {dict(sorted(statuses.items()))}")
        print(f"lookup resolutions (200): {dict(sorted(resolutions.items()))}")
        # A run that never reached the seeded data checked little: ignored_auth and the 200
        # schema apply only to 200s, and the hooks that bias towards the data must work.
        wanted = {kind + resolution for kind in ("", "batch ") for resolution in RESOLUTIONS}
        if set(resolutions) != wanted:
            print("FAILED: the run did not see 200s of every resolution, single and batch")
            return 4
        if statuses[202] == 0:  # only a job start answers 202
            print("FAILED: the run never started a prospecting job")
            return 4
        return status
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-examples", type=int, default=300, help="per operation")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    exit_cleanly_on_sigterm()
    os.chdir(ROOT)
    try:
        return run(args.max_examples, args.seed)
    except HarnessError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
