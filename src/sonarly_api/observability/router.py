"""GET /metrics: Prometheus text format, outside /v1 and the public docs."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.responses import Response

from sonarly_api.errors import Unauthorized
from sonarly_api.observability.metrics import RequestMetrics


def metrics_router(metrics: RequestMetrics, token: str | None) -> APIRouter:
    """`token` None: open to whoever reaches the port; else `Authorization: Bearer <token>`."""
    router = APIRouter(include_in_schema=False)
    expected = f"Bearer {token}".encode() if token is not None else None

    @router.get("/metrics")
    async def scrape(request: Request) -> Response:
        if expected is not None:
            presented = request.headers.get("authorization", "").encode("latin-1")
            if not hmac.compare_digest(presented, expected):
                raise Unauthorized("Metrics need Authorization: Bearer <METRICS_TOKEN>.")
        # The 0.0.4 text format: what every Prometheus version and scraper understands.
        return Response(await metrics.exposition(), media_type=CONTENT_TYPE_PLAIN_0_0_4)

    return router
