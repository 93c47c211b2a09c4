"""GET /healthz (the process answers) and GET /readyz (and can serve: database reachable and
migrated). Outside /v1, without authentication or rate limit, hidden from the public docs."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from starlette.responses import Response

from sonarly_api.envelope import CamelModel, success_response
from sonarly_api.health.readiness import check_ready, expected_revisions
from sonarly_api.state import AppState


class Health(CamelModel):
    status: Literal["ok"] = "ok"


class Readiness(CamelModel):
    status: Literal["ok"] = "ok"
    schema_revision: str


def health_router() -> APIRouter:
    """Reads the migration scripts' head now, at start-up, not on every probe."""
    expected = expected_revisions()
    revision = ", ".join(sorted(expected))
    router = APIRouter(include_in_schema=False)

    @router.get("/healthz")
    async def healthz() -> Response:
        # Nothing else: a database outage must not get a live process restarted.
        return success_response(Health())

    @router.get("/readyz")
    async def readyz(request: Request) -> Response:
        state: AppState = request.app.state.sonarly
        await check_ready(state.db, expected)
        return success_response(Readiness(schema_revision=revision))

    return router
