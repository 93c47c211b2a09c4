"""The access line (one JSON line per request with its traceId, route template, status,
duration, key id and account group) and the shared format of every other line; never a key,
an Authorization header or a query string."""

from __future__ import annotations

import io
import logging
from typing import Any

import pytest

from sonarly_api.observability.logs import configure_logging, reset_logging
from sonarly_api.prospects import repository
from tests.conftest import Factory, bearer
from tests.observability.conftest import LogLines

LOOKUP = "/v1/accounts/{accountGroupId}/prospects/by-provider-id/{providerId}"


class TestAccessLine:
    async def test_one_line_per_request_with_its_fields(
        self, logs: LogLines, serving: Any, factory: Factory
    ) -> None:
        group = await factory.group()
        key_id, key = await factory.key([group])
        async with serving(metrics="off") as client:
            lookup = await client.get(
                f"/v1/accounts/{group.upper()}/prospects/by-provider-id/crm-1?secret=q-value",
                headers=bearer(key),
            )
            missing = await client.get("/no/such/path?token=q-value-2")

        lines = logs.access()
        assert len(lines) == 2
        first, second = lines
        duration = first.pop("duration_ms")
        assert isinstance(duration, float)
        assert duration > 0
        assert first == {
            "event": "request",
            "logger": "sonarly_api.access",
            "level": "info",
            "timestamp": first["timestamp"],
            "traceId": lookup.headers["x-trace-id"],
            "method": "GET",
            "route": LOOKUP,
            "status": 200,
            "keyId": key_id,
            "accountGroupId": group,
        }
        assert first["timestamp"].endswith("Z")
        assert len(first["timestamp"]) == len("2026-04-28T15:30:00.000Z")
        assert second["traceId"] == missing.headers["x-trace-id"]
        assert (second["route"], second["status"]) == ("<unmatched>", 404)
        assert (second["keyId"], second["accountGroupId"]) == (None, None)
        for leak in (key, key.removeprefix("sk_live_"), "Bearer", "q-value", "/no/such/path"):
            assert leak not in logs.text

    async def test_malformed_group_is_not_logged(self, logs: LogLines, serving: Any) -> None:
        async with serving(metrics="off") as client:
            await client.get("/v1/accounts/<script>/prospects/by-provider-id/p")

        (line,) = logs.access()
        assert (line["route"], line["status"], line["accountGroupId"]) == (LOOKUP, 401, None)
        assert "<script>" not in logs.text

    async def test_failed_authentication_never_logs_the_key(
        self, logs: LogLines, serving: Any, factory: Factory
    ) -> None:
        group = await factory.group()
        key_id, key = await factory.key([group])
        await factory.revoke(key_id)
        async with serving(metrics="off") as client:
            path = f"/v1/accounts/{group}/prospects/by-provider-id/p"
            assert (await client.get(path, headers=bearer(key))).status_code == 401

        assert logs.access()[0]["keyId"] is None
        assert key.removeprefix("sk_live_")[:12] not in logs.text

    async def test_off_with_the_setting(self, logs: LogLines, serving: Any) -> None:
        async with serving(access_log=False) as client:
            assert (await client.get("/healthz")).status_code == 200

        assert logs.access() == []

    async def test_none_until_logging_is_configured(self, serving: Any) -> None:
        stream = io.StringIO()
        reset_logging()  # whatever an earlier test of this process configured
        async with serving() as client:
            assert (await client.get("/healthz")).status_code == 200
            configure_logging("info", "json", stream)
            try:
                assert (await client.get("/healthz")).status_code == 200
            finally:
                reset_logging()

        assert stream.getvalue().count('"logger":"sonarly_api.access"') == 1


class TestSharedFormat:
    async def test_lines_of_a_request_carry_its_trace_id_and_no_traceback(
        self,
        logs: LogLines,
        serving: Any,
        factory: Factory,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])

        async def explode(*_: object) -> None:
            raise RuntimeError("password=hunter2")

        monkeypatch.setattr(repository, "find_by_provider_id", explode)
        async with serving(metrics="off") as client:
            response = await client.get(
                f"/v1/accounts/{group}/prospects/by-provider-id/p", headers=bearer(key)
            )

        trace_id = response.headers["x-trace-id"]
        lines = logs.json()  # every line parses: one format
        error = next(line for line in lines if line["logger"] == "sonarly_api.errors")
        assert error["traceId"] == trace_id
        assert error["level"] == "error"
        assert error["event"].startswith("unhandled RuntimeError at ")
        assert logs.access()[0]["status"] == 500
        assert logs.access()[0]["traceId"] == trace_id
        assert "hunter2" not in logs.text

    def test_exceptions_are_logged_by_type_only(self, logs: LogLines) -> None:
        try:
            raise ValueError("SELECT secret FROM vault")
        except ValueError:
            logging.getLogger("some.library").exception("it failed")

        (line,) = logs.json()
        assert line["event"] == "it failed"
        assert line["exception"] == "ValueError"
        assert "traceId" not in line  # outside a request
        assert "SELECT" not in logs.text
        assert "Traceback" not in logs.text

    def test_sqlalchemy_statements_are_never_logged(self, logs: LogLines) -> None:
        configure_logging("debug", "json", logs.stream)

        logging.getLogger("sqlalchemy.engine.Engine").info("SELECT * FROM api_keys")

        assert logs.text == ""

    def test_console_format_for_a_terminal(self) -> None:
        stream = io.StringIO()
        assert configure_logging("info", None, stream) == "json"  # not a terminal
        assert configure_logging("info", "console", stream) == "console"
        try:
            logging.getLogger("uvicorn.error").info("Started server process [1]")
        finally:
            reset_logging()

        line = stream.getvalue()
        assert "Started server process [1]" in line
        assert "uvicorn.error" in line
        assert not line.startswith("{")
