"""Every answer is the envelope with a trace id: unknown routes, wrong methods, crashes,
an unreachable database, and incoming W3C trace context."""

from __future__ import annotations

import logging
import re

import httpx
import pytest

from sonarly_api.app import create_app
from sonarly_api.auth import keys
from sonarly_api.prospects import repository
from tests.conftest import Factory, bearer, client_for, make_settings, started

TRACE_ID = re.compile(r"[0-9a-f]{32}")


def assert_error_envelope(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    trace_id = response.headers["x-trace-id"]
    assert TRACE_ID.fullmatch(trace_id)
    assert trace_id != "0" * 32
    body = response.json()
    assert set(body) == {"success", "data", "error", "traceId"}
    assert (body["success"], body["data"], body["traceId"]) == (False, None, trace_id)
    assert body["error"]["code"] == code
    details: str = body["error"]["details"]
    return details


class TestRouterErrors:
    async def test_unknown_route_is_404_envelope(self, client: httpx.AsyncClient) -> None:
        details = assert_error_envelope(await client.get("/v2/nothing"), 404, "NOT_FOUND")
        assert details == "No route matches GET /v2/nothing."

    async def test_trailing_slash_is_not_redirected(self, client: httpx.AsyncClient) -> None:
        assert_error_envelope(await client.get("/v1/accounts/"), 404, "NOT_FOUND")

    async def test_wrong_method_is_405_envelope_with_allow(self, client: httpx.AsyncClient) -> None:
        response = await client.delete("/v1/accounts")
        details = assert_error_envelope(response, 405, "METHOD_NOT_ALLOWED")
        assert response.headers["allow"] == "GET, HEAD"  # HEAD is served wherever GET is
        assert "DELETE" in details


class TestUnexpectedErrors:
    async def test_crash_is_a_500_envelope_that_leaks_nothing(
        self,
        client: httpx.AsyncClient,
        factory: Factory,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])

        async def explode(*_: object) -> None:
            raise RuntimeError("password=hunter2 SELECT secret FROM vault")

        monkeypatch.setattr(repository, "find_by_provider_id", explode)
        with caplog.at_level(logging.DEBUG):
            response = await client.get(
                f"/v1/accounts/{group}/prospects/by-provider-id/p", headers=bearer(key)
            )

        assert_error_envelope(response, 500, "INTERNAL_ERROR")
        for leak in ("hunter2", "SELECT", "Traceback", "RuntimeError", key):
            assert leak not in response.text
            assert leak not in caplog.text or leak == "RuntimeError"
        assert "unhandled RuntimeError" in caplog.text
        assert response.headers["x-trace-id"] in response.text

    async def test_unreachable_database_is_a_503_with_retry_after(self) -> None:
        settings = make_settings(
            "postgresql://postgres@127.0.0.1:1/nowhere", db_connect_timeout_seconds=1
        )
        async for app in started(create_app(settings)):
            async with client_for(app) as client:
                response = await client.get("/v1/accounts", headers=bearer(keys.generate_key()))

        details = assert_error_envelope(response, 503, "SERVICE_UNAVAILABLE")
        assert "database" in details
        assert response.headers["retry-after"] == "2"


class TestTraceContext:
    async def test_valid_traceparent_is_honoured(self, client: httpx.AsyncClient) -> None:
        trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        response = await client.get(
            "/v1/accounts", headers={"traceparent": f"00-{trace}-00f067aa0ba902b7-01"}
        )
        assert response.headers["x-trace-id"] == trace
        assert response.json()["traceId"] == trace

    @pytest.mark.parametrize(
        "header",
        [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "garbage",
        ],
    )
    async def test_invalid_traceparent_gets_a_fresh_id(
        self, client: httpx.AsyncClient, header: str
    ) -> None:
        response = await client.get("/v1/accounts", headers={"traceparent": header})
        trace = response.headers["x-trace-id"]
        assert TRACE_ID.fullmatch(trace)
        assert trace not in header.lower()
        assert trace != "0" * 32

    async def test_every_response_gets_its_own_trace_id(self, client: httpx.AsyncClient) -> None:
        ids = {(await client.get("/v1/accounts")).headers["x-trace-id"] for _ in range(5)}
        assert len(ids) == 5
