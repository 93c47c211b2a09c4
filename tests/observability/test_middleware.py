"""ObservabilityMiddleware on its own, around bare ASGI apps: what it records when the app
fails or is cancelled, and what it leaves alone."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sonarly_api.observability.metrics import UNMATCHED, RequestMetrics
from sonarly_api.observability.middleware import ObservabilityMiddleware
from tests.observability.conftest import LogLines, labels, samples


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(_: Any) -> None:
    return None


def http_scope() -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": "/x", "headers": [], "state": {}}


async def exposition(metrics: RequestMetrics) -> str:
    return (await metrics.exposition()).decode()


@pytest.mark.parametrize(
    ("error", "status"), [(RuntimeError("x"), 500), (ConnectionRefusedError(), 503)]
)
async def test_an_exception_is_recorded_as_the_status_trace_middleware_answers(
    logs: LogLines, error: Exception, status: int
) -> None:
    async def fails(scope: Any, receive: Any, send: Any) -> None:
        raise error

    metrics = RequestMetrics(lambda: None)
    with pytest.raises(type(error)):
        await ObservabilityMiddleware(fails, metrics)(http_scope(), _receive, _send)

    series = samples(await exposition(metrics))
    key = labels(method="GET", route=UNMATCHED, status=str(status))
    assert series[("sonarly_http_requests_total", key)] == 1
    assert logs.access()[0]["status"] == status


async def test_a_cancelled_request_is_a_499(logs: LogLines) -> None:
    async def hangs(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(10)

    metrics = RequestMetrics(lambda: None)
    task = asyncio.create_task(
        ObservabilityMiddleware(hangs, metrics)(http_scope(), _receive, _send)
    )
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert logs.access()[0]["status"] == 499


async def test_lifespan_and_websocket_scopes_pass_through(logs: LogLines) -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    metrics = RequestMetrics(lambda: None)
    middleware = ObservabilityMiddleware(app, metrics)
    await middleware({"type": "lifespan"}, _receive, _send)
    await middleware({"type": "websocket", "path": "/ws"}, _receive, _send)

    assert seen == ["lifespan", "websocket"]
    assert "sonarly_http_requests_total{" not in await exposition(metrics)
    assert logs.text == ""
