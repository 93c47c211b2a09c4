"""Whose failed authentications count: the connection's address, unless TRUSTED_PROXIES names
it, then the client in its X-Forwarded-For; IPv6 clients per /64. Against `serve`, whose
uvicorn decides what `request.client` is."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from sonarly_api.auth import keys
from sonarly_api.config import Settings
from sonarly_api.edge.addresses import budget_address
from tests.conftest import PEPPER, Factory, bearer
from tests.servers import free_port, running, serve_argv, service_env

BUDGET = 3  # failed authentications per minute


def env(database_url: str, **settings: str) -> dict[str, str]:
    return service_env(
        DATABASE_URL=database_url,
        API_KEY_PEPPER=PEPPER,
        LOG_FORMAT="json",
        DEMO_DATA="false",
        AUTH_FAILURE_RATE_LIMIT=f"{BUDGET}/minute",
        **settings,
    )


def unknown_key() -> dict[str, str]:
    return bearer(keys.generate_key())


async def test_by_default_x_forwarded_for_is_ignored(
    database_url: str, factory: Factory, tmp_path: Path
) -> None:
    group = await factory.group()
    _, key = await factory.key([group])
    port = free_port()
    with running(serve_argv(port), env(database_url), tmp_path / "server.log", port) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            statuses = []
            for i in range(BUDGET + 1):
                headers = {**unknown_key(), "X-Forwarded-For": f"198.51.100.{i}"}
                statuses.append((await http.get("/v1/accounts", headers=headers)).status_code)
            assert statuses == [401] * BUDGET + [429]
            # The local client is locked out, whatever address it claims.
            claimed = {**bearer(key), "X-Forwarded-For": "198.51.100.200"}
            assert (await http.get("/v1/accounts", headers=claimed)).status_code == 429


async def test_a_trusted_proxy_s_clients_each_have_their_budget(
    database_url: str, factory: Factory, tmp_path: Path
) -> None:
    group = await factory.group()
    _, key = await factory.key([group])
    port = free_port()
    settings = env(database_url, TRUSTED_PROXIES="127.0.0.1")
    with running(serve_argv(port), settings, tmp_path / "server.log", port) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:

            async def status(client: str, headers: dict[str, str]) -> int:
                response = await http.get(
                    "/v1/accounts", headers={**headers, "X-Forwarded-For": client}
                )
                return response.status_code

            for _ in range(BUDGET):
                assert await status("203.0.113.7", unknown_key()) == 401
            assert await status("203.0.113.7", unknown_key()) == 429  # over the budget
            assert await status("203.0.113.7", bearer(key)) == 429
            assert await status("203.0.113.8", bearer(key)) == 200
            # IPv6: one /64 shares a budget, the next /64 has its own.
            for i in range(BUDGET):
                assert await status(f"2001:db8:0:5::{i + 1}", unknown_key()) == 401
            assert await status("2001:db8:0:5::99", unknown_key()) == 429
            assert await status("2001:db8:0:5:ffff::9", bearer(key)) == 429
            assert await status("2001:db8:0:6::1", bearer(key)) == 200
        assert "X-Forwarded-For trusted from: 127.0.0.1" in server.output()


@pytest.mark.parametrize(
    ("host", "budget"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("2001:db8::1", "2001:db8::/64"),
        ("2001:db8:0:0:abcd::1", "2001:db8::/64"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        (None, "unknown"),
        ("testclient", "testclient"),
    ],
)
def test_budget_address(host: str | None, budget: str) -> None:
    assert budget_address(host) == budget


def test_trusted_proxies_must_be_addresses_or_networks() -> None:
    assert Settings(_env_file=None, trusted_proxies=" 10.0.0.0/8, ::1 ").trusted_proxies == (
        "10.0.0.0/8,::1"
    )
    assert Settings(_env_file=None).trusted_proxies == ""
    with pytest.raises(ValidationError, match=r"not an IP address or network: 'proxy\.local'"):
        Settings(_env_file=None, trusted_proxies="proxy.local")
