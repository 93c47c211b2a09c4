"""End to end: `sonarly-api serve` refuses PROVIDER=http without its settings; a real uvicorn
process with PROVIDER=http lists from the fake provider, and its log (debug level included)
never holds the provider token or the provider's own error text."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api.config import Settings, get_settings
from sonarly_api.linkedin import repository
from tests.cli.helpers import failure_line, invoke
from tests.conftest import PEPPER, Factory, bearer
from tests.fakeprovider import RAW_MESSAGE, FakeProvider, running_fake_provider
from tests.servers import free_port, running, service_env, uvicorn_argv

LEAD_LISTS = "/v1/accounts/{group}/sales-navigator/lead-lists"


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with running_fake_provider() as server:
        yield server


def test_serve_refuses_http_provider_without_url_and_token(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import uvicorn

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("serve went on to run uvicorn")

    monkeypatch.setattr(uvicorn, "run", refuse)
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROVIDER", "http")
    monkeypatch.setenv("PROVIDER_TOKEN", "t0ken-only")
    get_settings.cache_clear()

    line = failure_line(invoke("serve"), 2)

    assert line == "error: invalid setting PROVIDER=http needs PROVIDER_URL and PROVIDER_TOKEN"


async def test_a_served_listing_and_its_log(
    database_url: str, factory: Factory, engine: AsyncEngine, fake: FakeProvider, tmp_path: Path
) -> None:
    group = await factory.group()
    _, key = await factory.key([group], ("prospecting:read",))
    async with engine.begin() as conn:
        await repository.connect(conn, group, f"served-{group}")
    fake.account(f"served-{group}").lead_lists = {"ll-1": ("CTOs", [])}
    env = service_env(
        DATABASE_URL=database_url,
        API_KEY_PEPPER=PEPPER,
        PROVIDER="http",
        PROVIDER_URL=fake.url,
        PROVIDER_TOKEN=fake.token,
        PROVIDER_TIMEOUT_SECONDS="0.5",
        PROVIDER_MAX_ATTEMPTS="2",
        LOG_LEVEL="debug",
        LOG_FORMAT="json",
    )
    port = free_port()
    with running(uvicorn_argv(port), env, tmp_path / "server.log", port) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            ok = await http.get(LEAD_LISTS.format(group=group), headers=bearer(key))
            fake.fault("500", times=None)
            failed = await http.get(LEAD_LISTS.format(group=group), headers=bearer(key))
        log = server.output()

    assert ok.status_code == 200, ok.text
    assert ok.json()["data"] == {"items": [{"id": "ll-1", "name": "CTOs"}]}
    assert failed.status_code == 502
    assert failed.json()["error"]["details"].startswith("bad_answer: ")
    assert len(fake.requests) == 3  # one, then two attempts
    assert "provider call gave up" in log  # the failure is logged…
    assert fake.token not in log  # …but never the token
    assert RAW_MESSAGE not in log
