"""create_app(): routers, error handlers, middleware, lifespan — nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from sonarly_api import __version__
from sonarly_api.accounts.router import router as accounts_router
from sonarly_api.auth.authenticator import Authenticator
from sonarly_api.config import Settings, get_settings
from sonarly_api.db import Database, create_engine
from sonarly_api.edge.guard import RequestGuard
from sonarly_api.handlers import install_error_handlers, render, render_unhandled
from sonarly_api.health.router import health_router
from sonarly_api.linkedin.router import router as linkedin_router
from sonarly_api.observability.setup import install_observability
from sonarly_api.openapi import install_openapi
from sonarly_api.prospecting.queue import JobQueue
from sonarly_api.prospecting.router import router as prospecting_router
from sonarly_api.prospecting.worker import InProcessWorker
from sonarly_api.prospects.router import router as prospects_router
from sonarly_api.providers import create_provider
from sonarly_api.ratelimit import RateLimits
from sonarly_api.routing import check_fast_lane, direct_routes, with_fast_lane
from sonarly_api.state import AppState
from sonarly_api.tracing import TraceMiddleware

DOCS_ASSETS = "/docs-assets"

DESCRIPTION = """\
Look prospects up by the id an external provider gave them, strictly inside one account group.

Every answer, errors included, is the envelope `{success, data, error, traceId}`; the
`X-Trace-Id` header repeats `traceId`. Authenticate with `Authorization: Bearer sk_live_…`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    if settings.database_url is None or settings.api_key_pepper is None:
        # `sonarly-api serve` resolves the embedded database before the app is built.
        raise RuntimeError("create_app needs DATABASE_URL and API_KEY_PEPPER")
    database_url = settings.database_url
    pepper = settings.api_key_pepper.get_secret_value().encode()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(create_engine(settings, database_url))
        rate_limits = RateLimits(
            settings.rate_limit_storage_uri, settings.rate_limit, settings.auth_failure_rate_limit
        )
        job_queue = JobQueue(
            database_url, connect_timeout_seconds=settings.db_connect_timeout_seconds
        )
        await job_queue.open()
        app.state.sonarly = AppState(
            settings=settings,
            db=db,
            authenticator=Authenticator(
                db, pepper, settings.key_cache_ttl_seconds, settings.key_cache_size
            ),
            rate_limits=rate_limits,
            job_queue=job_queue,
            provider=create_provider(settings, db),
        )
        in_process = InProcessWorker.start(
            settings, database_url, job_queue, app.state.sonarly.provider
        )
        try:
            yield
        finally:
            await in_process.stop()
            await job_queue.close()
            await app.state.sonarly.provider.aclose()
            await app.state.sonarly.authenticator.close()
            await rate_limits.close()
            await db.dispose()

    # FastAPI with /docs and /redoc whose Swagger UI and ReDoc files the API serves itself
    # (DOCS_ASSETS), instead of loading them from a CDN: the pages work offline, behind a
    # firewall, and run no third-party script.
    app = FastAPIOffline(
        static_url=DOCS_ASSETS,
        title="Sonarly API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        redirect_slashes=False,
        # FastAPI's built-in OpenTelemetry is off: this service has its own trace ids, metrics
        # and access log, must never log exception messages or stack traces (the built-in
        # `logs` records both), and its per-request "is OpenTelemetry configured?" check read
        # the environment on every request (~7% of a lookup's CPU, docs/performance.md).
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
        openapi_tags=[
            {"name": "Prospects", "description": "Provider-id lookup."},
            {"name": "Accounts", "description": "Account groups a key may use."},
            {"name": "Prospecting jobs", "description": "Start, poll, list and cancel jobs."},
            {
                "name": "Sales Navigator",
                "description": "Lead lists and saved searches of the group's LinkedIn account.",
            },
        ],
    )
    app.include_router(prospects_router)
    app.include_router(accounts_router)
    app.include_router(prospecting_router)
    app.include_router(linkedin_router)
    app.include_router(health_router())
    install_error_handlers(app)
    install_openapi(app)
    # Innermost of the user middleware (added first): its refusals are logged and counted.
    app.add_middleware(RequestGuard)
    install_observability(app, settings)  # /metrics, access log + metrics middleware
    app.add_middleware(TraceMiddleware, render_error=render_unhandled)
    # Built now rather than on the first request, as Starlette would: the lookup gets a fast
    # lane around the framework's stack, with the same middleware (sonarly_api/routing.py).
    # Middleware added later is refused by Starlette instead of being silently left out.
    check_fast_lane(app.router, direct_routes(prospects_router))  # refused at start-up
    app.middleware_stack = with_fast_lane(
        app.build_middleware_stack(), app.user_middleware, direct_routes(prospects_router), render
    )
    return app
