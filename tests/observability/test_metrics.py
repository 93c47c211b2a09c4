"""GET /metrics: off, open or behind a token; requests by route template (never a raw path or
an id), method and status; latency histogram; 429s; the database pool."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from sonarly_api.config import Settings
from sonarly_api.observability.metrics import UNMATCHED
from sonarly_api.prospects import repository
from tests.conftest import PEPPER, Factory, bearer
from tests.observability.conftest import labels, samples

LOOKUP = "/v1/accounts/{accountGroupId}/prospects/by-provider-id/{providerId}"
TOKEN = "metrics-token-0123456789"


def requests_total(exposition: str, method: str, route: str, status: int) -> float:
    key = ("sonarly_http_requests_total", labels(method=method, route=route, status=str(status)))
    return samples(exposition).get(key, 0.0)


class TestAccess:
    async def test_off_by_default_is_a_404_envelope(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/metrics")

        assert response.status_code == 404
        body = response.json()
        assert body["error"]["code"] == "NOT_FOUND"
        assert body["traceId"] == response.headers["x-trace-id"]

    async def test_open(self, serving: Any) -> None:
        async with serving() as client:
            response = await client.get("/metrics")

        assert response.status_code == 200
        assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert len(response.headers["x-trace-id"]) == 32
        assert "# TYPE sonarly_http_request_duration_seconds histogram" in response.text

    @pytest.mark.parametrize("header", [None, "Bearer wrong-token-0123456789", f"Basic {TOKEN}"])
    async def test_token_refuses_without_it(self, serving: Any, header: str | None) -> None:
        headers = {"Authorization": header} if header else {}
        async with serving(metrics=None, metrics_token=TOKEN) as client:
            response = await client.get("/metrics", headers=headers)

        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        body = response.json()
        assert body["error"]["code"] == "UNAUTHORIZED"
        assert TOKEN not in response.text
        assert "sonarly_http" not in response.text

    async def test_token_admits_with_it(self, serving: Any) -> None:
        async with serving(metrics="token", metrics_token=TOKEN) as client:
            response = await client.get("/metrics", headers=bearer(TOKEN))

        assert response.status_code == 200
        assert "sonarly_http_requests_total" in response.text


class TestSettings:
    def test_token_mode_needs_a_token(self) -> None:
        with pytest.raises(ValidationError, match="METRICS_TOKEN is required"):
            Settings(_env_file=None, metrics="token")

    def test_mode_follows_the_token_unless_set(self) -> None:
        assert Settings(_env_file=None).metrics_mode == "off"
        assert Settings(_env_file=None, metrics_token=TOKEN).metrics_mode == "token"
        assert Settings(_env_file=None, metrics="open").metrics_mode == "open"

    def test_empty_token_is_no_token(self) -> None:
        assert Settings(_env_file=None, metrics_token="").metrics_mode == "off"

    def test_short_token_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="at least 16"):
            Settings(_env_file=None, metrics_token="short")


class TestRequestMetrics:
    async def test_lookups_are_labelled_by_route_template(
        self, serving: Any, factory: Factory
    ) -> None:
        group = await factory.group()
        key_id, key = await factory.key([group])
        provider_id = "crm-provider-7f3a9c"
        async with serving() as client:
            for _ in range(3):
                path = f"/v1/accounts/{group.upper()}/prospects/by-provider-id/{provider_id}"
                assert (await client.get(path, headers=bearer(key))).status_code == 200
            await client.get(f"/v1/accounts/{group}/prospects/by-provider-id/{provider_id}")
            exposition = (await client.get("/metrics")).text

        assert requests_total(exposition, "GET", LOOKUP, 200) == 3
        assert requests_total(exposition, "GET", LOOKUP, 401) == 1
        series = samples(exposition)
        route = labels(method="GET", route=LOOKUP, status="200")
        assert series[("sonarly_http_request_duration_seconds_count", route)] == 3
        assert series[("sonarly_http_request_duration_seconds_sum", route)] > 0
        inf = labels(method="GET", route=LOOKUP, status="200", le="+Inf")
        assert series[("sonarly_http_request_duration_seconds_bucket", inf)] == 3
        # Nothing of the request itself: no tenant, no provider id, no key.
        for leak in (group, group.upper(), provider_id, key_id, key, PEPPER):
            assert leak not in exposition

    async def test_unknown_routes_share_one_label(self, serving: Any) -> None:
        async with serving() as client:
            for path in ("/v2/secret-tenant-a", "/nothing/507f1f77bcf86cd799439011"):
                assert (await client.get(path)).status_code == 404
            exposition = (await client.get("/metrics")).text

        assert requests_total(exposition, "GET", UNMATCHED, 404) == 2
        assert "secret-tenant-a" not in exposition
        assert "507f1f77bcf86cd799439011" not in exposition

    async def test_wrong_and_unknown_methods(self, serving: Any) -> None:
        async with serving() as client:
            assert (await client.delete("/healthz")).status_code == 405
            assert (await client.request("BREW", "/healthz")).status_code == 405
            exposition = (await client.get("/metrics")).text

        assert requests_total(exposition, "DELETE", "/healthz", 405) == 1
        assert requests_total(exposition, "OTHER", "/healthz", 405) == 1
        assert "BREW" not in exposition

    async def test_a_crash_counts_as_a_500(
        self, serving: Any, factory: Factory, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])

        async def explode(*_: object) -> None:
            raise RuntimeError("boom")

        monkeypatch.setattr(repository, "find_by_provider_id", explode)
        async with serving() as client:
            path = f"/v1/accounts/{group}/prospects/by-provider-id/p"
            assert (await client.get(path, headers=bearer(key))).status_code == 500
            exposition = (await client.get("/metrics")).text

        assert requests_total(exposition, "GET", LOOKUP, 500) == 1

    async def test_rate_limited_requests_are_counted(self, serving: Any, factory: Factory) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        async with serving(rate_limit="2/minute") as client:
            path = f"/v1/accounts/{group}/prospects/by-provider-id/p"
            statuses = [(await client.get(path, headers=bearer(key))).status_code for _ in range(4)]
            exposition = (await client.get("/metrics")).text

        assert statuses == [200, 200, 429, 429]
        assert (
            samples(exposition)[("sonarly_rate_limited_requests_total", labels(route=LOOKUP))] == 2
        )
        assert requests_total(exposition, "GET", LOOKUP, 429) == 2

    async def test_pool_gauges(self, serving: Any) -> None:
        async with serving() as client:
            assert (await client.get("/readyz")).status_code == 200
            exposition = (await client.get("/metrics")).text

        series = samples(exposition)
        assert series[("sonarly_db_pool_connections", labels(state="in_use"))] == 0
        assert series[("sonarly_db_pool_connections", labels(state="idle"))] >= 1
