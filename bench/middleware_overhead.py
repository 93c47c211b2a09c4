"""Per-request cost of ObservabilityMiddleware (access line + metrics), measured around a
trivial ASGI app, so nothing else is in the number.

    PYTHONPATH=src python bench/middleware_overhead.py [--multiprocess] [-n 20000]

Times are CPU time of this process (best of interleaved runs), which a busy machine
inflates less than wall time. The access line is written as in production: JSON, one
write call per line to a line-buffered file (/dev/null), so the system call is counted.
`--multiprocess` uses prometheus_client's multiprocess mode, as `serve --workers N` does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from typing import Any


class _Route:
    path_format = "/v1/accounts/{accountGroupId}/prospects/by-provider-id/{providerId}"


_ROUTE = _Route()
_START = {"type": "http.response.start", "status": 200, "headers": []}
_BODY = {"type": "http.response.body", "body": b"{}"}


async def _trivial_app(scope: Any, receive: Any, send: Any) -> None:
    scope["route"] = _ROUTE  # what the router does
    scope["path_params"] = {"accountGroupId": "507f1f77bcf86cd799439011", "providerId": "p"}
    await send(_START)
    await send(_BODY)


class _EmptyWrapper:
    """A pure-ASGI middleware doing nothing but watch the status: the floor any such layer
    pays (a closure, a coroutine per send, one more await)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        status = 0

        async def send_and_note_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            scope["status"] = status


async def _receive() -> Any:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(_: Any) -> None:
    return None


async def _per_request_us(app: Any, n: int) -> float:
    template = {"type": "http", "method": "GET", "path": "/x", "headers": []}
    # CPU time of this process, not wall time: other processes on a busy machine would
    # otherwise be counted in.
    started = time.process_time()
    for _ in range(n):
        await app({**template, "state": {}}, _receive, _send)
    return (time.process_time() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--multiprocess", action="store_true")
    args = parser.parse_args()
    if args.multiprocess:
        # Before prometheus_client is imported, as `serve --workers N` does.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bench-metrics-")

    from sonarly_api.observability.logs import configure_logging
    from sonarly_api.observability.metrics import RequestMetrics, multiprocess_dir
    from sonarly_api.observability.middleware import ObservabilityMiddleware

    # Line-buffered like stderr: one write system call per line, as in production.
    devnull = open(os.devnull, "w", buffering=1)  # noqa: SIM115 - lives with the process
    configure_logging("info", "json", devnull)
    metrics = RequestMetrics(lambda: None, multiprocess_dir())
    variants = {
        "bare app": _trivial_app,
        "empty wrapper": _EmptyWrapper(_trivial_app),
        "metrics only": ObservabilityMiddleware(_trivial_app, metrics=metrics, log_access=False),
        "access log only": ObservabilityMiddleware(_trivial_app),
        "metrics + access log": ObservabilityMiddleware(_trivial_app, metrics=metrics),
    }

    async def measure() -> dict[str, float]:
        results: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, app in variants.items():
                results[name].append(await _per_request_us(app, args.n))
        return {name: min(values) for name, values in results.items()}

    best = asyncio.run(measure())
    mode = "multiprocess" if args.multiprocess else "single-process"
    print(f"python {sys.version.split()[0]}, {mode} metrics, n={args.n}, best of {args.repeats}")
    bare = best["bare app"]
    for name, value in best.items():
        extra = "" if name == "bare app" else f"   overhead {value - bare:6.2f} µs"
        print(f"  {name:22s} {value:6.2f} µs/request{extra}")


if __name__ == "__main__":
    main()
