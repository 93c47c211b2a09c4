"""`sonarly-api worker`: run prospecting jobs, as many processes on as many machines as you
like, all on one database (DATABASE_URL)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from sonarly_api.config import Settings, describe_settings_error, get_settings

app = typer.Typer(add_completion=False)
err = Console(stderr=True, soft_wrap=True)
logger = logging.getLogger("sonarly_api.worker")


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


_HELP = """Run prospecting jobs until SIGTERM or Ctrl-C.

The process runs at a lower CPU priority (WORKER_NICE, default 10), so that an API on the
same machine keeps its speed while jobs run. On SIGTERM or Ctrl-C each running job commits
the pages it holds and goes back to the queue, to resume on another worker."""


# The help shows each line break of a docstring: one line per paragraph there.
@app.callback(invoke_without_command=True, help=re.sub(r"(?<!\n)\n(?!\n)", " ", _HELP))
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1, max=64, help="Jobs this process runs at once (default: WORKER_CONCURRENCY)."
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="Serve this worker's job metrics on http://127.0.0.1:PORT/metrics.",
        ),
    ] = None,
) -> None:
    try:
        settings = get_settings()
    except ValidationError as exc:
        _fail(describe_settings_error(exc), code=2)
        return
    if settings.database_url is None:
        _fail(
            "a separate worker needs DATABASE_URL (and API_KEY_PEPPER): with the embedded "
            "PostgreSQL, `sonarly-api serve` runs the jobs itself",
            code=2,
        )
        return
    from sonarly_api.observability.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    if settings.worker_nice:
        os.nice(settings.worker_nice)
    if metrics_port is not None:
        from prometheus_client import start_http_server

        from sonarly_api.prospecting.metrics import REGISTRY

        start_http_server(metrics_port, addr="127.0.0.1", registry=REGISTRY)
    asyncio.run(_run(settings, settings.database_url, concurrency or settings.worker_concurrency))


async def _run(settings: Settings, database_url: str, concurrency: int) -> None:
    from sonarly_api.db import Database
    from sonarly_api.prospecting.queue import JobQueue
    from sonarly_api.prospecting.worker import JobWorker, worker_engine
    from sonarly_api.providers import create_provider

    # A connection per running job, and a few for the pages' reads.
    engine = worker_engine(settings, database_url, concurrency)
    queue = JobQueue(
        database_url,
        max_connections=concurrency + 3,
        connect_timeout_seconds=settings.db_connect_timeout_seconds,
    )
    db = Database(engine)
    # PROVIDER=http reads the groups' LinkedIn connections from the database.
    provider = create_provider(settings, db)
    job_worker = JobWorker(
        engine,
        queue,
        provider,
        concurrency=concurrency,
        statement_timeout_ms=settings.job_statement_timeout_ms,
        grace_seconds=float(settings.shutdown_grace_seconds) * 3,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, job_worker.stop)
    await queue.open()
    logger.info(
        "job worker started: %d at once, provider %s, niceness %d",
        concurrency,
        settings.provider,
        os.nice(0),
    )
    try:
        await job_worker.run()
    finally:
        await queue.close()
        await provider.aclose()
        await db.dispose()
    logger.info("job worker stopped")
