"""`sonarly-api serve`: the API under uvicorn, on the embedded or the configured database."""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer

from sonarly_api.cli.common import fail, load_settings
from sonarly_api.config import get_settings
from sonarly_api.demo import seed_demo
from sonarly_api.embedded_pg import EmbeddedPostgresError
from sonarly_api.runtime import open_database

KEEP_ALIVE_SECONDS = 5  # an idle keep-alive connection is closed after this (uvicorn's default)


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    migrate: Annotated[
        bool | None,
        typer.Option(
            "--migrate/--no-migrate",
            help="Apply migrations first (default: only for the embedded database).",
        ),
    ] = None,
    demo: Annotated[
        bool,
        typer.Option(help="On an empty database, create demo data and a key (see DEMO_DATA)."),
    ] = True,
    worker: Annotated[
        bool,
        typer.Option(
            "--worker/--no-worker",
            help="Also run prospecting jobs in each server process (with --workers N, N job "
            "workers). --no-worker leaves them to `sonarly-api worker` processes.",
        ),
    ] = True,
) -> None:
    """Serve the API (embedded PostgreSQL when DATABASE_URL is unset)."""
    import signal

    import uvicorn

    def exit_on_sigterm(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    # uvicorn re-raises SIGTERM after its graceful shutdown, under the handler it found. The
    # default one would kill the process on the spot, skipping the `with` blocks below, and
    # the embedded PostgreSQL would outlive the server; as SystemExit they unwind and stop it
    # (exit status 143, as for a process ended by SIGTERM). tests/faults/test_graceful_shutdown.
    signal.signal(signal.SIGTERM, exit_on_sigterm)

    from sonarly_api.observability.logs import configure_logging
    from sonarly_api.observability.serving import metrics_multiprocess_dir

    settings = load_settings()
    if settings.embedded and workers > 1:
        fail(
            "the embedded PostgreSQL serves a single worker process; "
            "set DATABASE_URL (and RATE_LIMIT_STORAGE_URI=redis://…) to run several",
            code=2,
        )
    if workers > 1 and settings.rate_limit_storage_uri.startswith("memory://"):
        # Each process would count alone: every budget N times what RATE_LIMIT says.
        fail(
            "invalid setting RATE_LIMIT_STORAGE_URI: memory:// counts per process; "
            f"--workers {workers} needs redis://host:port/db",
            code=2,
        )
    configure_logging(settings.log_level, settings.log_format)
    try:
        with open_database(settings, migrate=migrate) as database:
            # Workers build their app from the environment: hand them the resolved database.
            os.environ["DATABASE_URL"] = database.url
            os.environ["API_KEY_PEPPER"] = database.pepper
            os.environ["JOB_WORKER"] = "true" if worker else "false"
            get_settings.cache_clear()
            seed_demo(database, host=host, port=port, enabled=demo and settings.demo_data)
            where = (
                f"embedded ({settings.embedded_pg_dir})" if database.embedded else "DATABASE_URL"
            )
            # A log line, not a print: with LOG_FORMAT=json every line on stderr is JSON.
            logging.getLogger("sonarly_api.serve").info(
                "Sonarly API on http://%s:%s  docs: http://%s:%s/docs  database: %s",
                host,
                port,
                host,
                port,
                where,
            )
            # The HTTP edge (sonarly_api/edge): bounded request heads, a header timeout, a
            # connection cap, refusals in the envelope; X-Forwarded-For only from TRUSTED_PROXIES.
            from sonarly_api.edge.protocol import describe_limits, ensure_descriptors

            if (too_few := ensure_descriptors()) is not None:
                logging.getLogger("sonarly_api.serve").warning(too_few)
            logging.getLogger("sonarly_api.serve").info(
                "HTTP limits: %s; keep-alive %d s; X-Forwarded-For trusted from: %s",
                describe_limits(),
                KEEP_ALIVE_SECONDS,
                settings.trusted_proxies or "no one (TRUSTED_PROXIES is empty)",
            )
            with metrics_multiprocess_dir(workers):
                # Each worker configures its logging in create_served_app; uvicorn's access
                # log is off because the app writes its own line per request.
                uvicorn.run(
                    "sonarly_api.observability.serving:create_served_app",
                    factory=True,
                    host=host,
                    port=port,
                    workers=workers,
                    server_header=False,
                    timeout_graceful_shutdown=settings.shutdown_grace_seconds,
                    # uvicorn's default 5 s let it kill workers still importing on a busy host
                    # (seen in the benchmark), restarting them in a loop.
                    timeout_worker_healthcheck=30,
                    log_level=settings.log_level,
                    log_config=None,
                    access_log=False,
                    http="sonarly_api.edge.protocol:EdgeProtocol",
                    timeout_keep_alive=KEEP_ALIVE_SECONDS,
                    proxy_headers=bool(settings.trusted_proxies),
                    forwarded_allow_ips=settings.trusted_proxies or None,
                )
    except EmbeddedPostgresError as exc:
        fail(f"embedded PostgreSQL: {exc}")
