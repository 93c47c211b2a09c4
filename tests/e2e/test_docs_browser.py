"""The interactive docs (/docs) in a real headless Chromium against a real uvicorn server:
the lookup operation is listed with its parameters and responses, the Authorize dialog takes a
key, and "Try it out" gets a 200 envelope from the running API.

The API serves Swagger UI's files itself (/docs-assets, from `fastapi-offline`): every
request the page makes off the server is refused and reported, so the page is proven to need
nothing from outside (neither this machine nor CI can reach a CDN).

Needs Debian's `chromium` and the `playwright` package (its own browser builds are never
downloaded). Without them the test is skipped; REQUIRE_BROWSER=1 (CI) makes that a failure.
UPDATE_DOCS_SCREENSHOT=1 rewrites docs/images/docs-try-it-out.png, the README's picture.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from sonarly_api.config import Settings
from tests.conftest import PEPPER, Factory

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The README's picture; rewritten only on request, so a test run leaves the tree clean.
SCREENSHOT = ROOT / "docs" / "images" / "docs-try-it-out.png"
UPDATE_SCREENSHOT = os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1"
LOOKUP_PATH = "/v1/accounts/{accountGroupId}/prospects/by-provider-id/{providerId}"
START_TIMEOUT = 60  # seconds; a loaded 2-core machine starts uvicorn slowly
UI_TIMEOUT_MS = 30_000


def _missing_browser() -> str | None:
    try:
        import playwright  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install -e '.[dev]')"
    if not CHROMIUM.is_file():
        return f"{CHROMIUM} is missing (apt-get install -y chromium)"
    return None


@pytest.fixture(scope="module")
def browser_ready() -> None:
    missing = _missing_browser()
    if missing is not None:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1 but {missing}")
        pytest.skip(f"the docs are not tried in a browser: {missing}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def server(browser_ready: None, database_url: str, tmp_path: Path) -> Iterator[str]:
    """uvicorn serving the app on the test database, as its own process; yields its URL."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    env.update(
        DATABASE_URL=database_url,
        API_KEY_PEPPER=PEPPER,
        RATE_LIMIT="100000/minute",
        AUTH_FAILURE_RATE_LIMIT="100000/minute",
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p),
    )
    port = _free_port()
    log = tmp_path / "uvicorn.log"
    # As `sonarly-api serve` runs it: no Server header.
    argv = [sys.executable, "-m", "uvicorn", "sonarly_api.app:create_app", "--factory"]
    argv.append("--no-server-header")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*argv, "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp_path,  # no .env of the repository
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"uvicorn exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/openapi.json", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"uvicorn did not start in {START_TIMEOUT} s:\n{log.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class OffServerGuard:
    """Lets the page reach its own server only: any other request is refused and remembered;
    the server's are remembered too."""

    def __init__(self, server_url: str) -> None:
        self.origin = urlsplit(server_url).netloc
        self.served: list[str] = []
        self.refused: list[str] = []

    async def handle(self, route: Any) -> None:
        url: str = route.request.url
        if urlsplit(url).netloc == self.origin:
            self.served.append(urlsplit(url).path)
            await route.continue_()
            return
        self.refused.append(url)
        await route.abort()


@pytest.fixture
async def page(server: str) -> AsyncIterator[tuple[Any, OffServerGuard]]:
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=UI_TIMEOUT_MS)
    guard = OffServerGuard(server)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            await context.route("**/*", guard.handle)
            page = await context.new_page()
            page.set_default_timeout(UI_TIMEOUT_MS)
            yield page, guard
        finally:
            await browser.close()


async def test_try_it_out(
    server: str, page: tuple[Any, OffServerGuard], factory: Factory, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    browser_page, guard = page
    group = await factory.group("Docs in a browser")
    _, key = await factory.key([group])
    await factory.prospect(group, "crm-docs-1", name="Avery Stone (Acme)", title="VP Sales")
    await factory.prospect(
        group, "crm-docs-1", name="Avery Stone", company_name="Stone & Co", title="CTO"
    )

    await browser_page.goto(f"{server}/docs")
    operation = browser_page.locator(
        ".opblock-get", has=browser_page.locator(f'[data-path="{LOOKUP_PATH}"]')
    )
    await expect(operation).to_have_count(1)
    await expect(operation.locator(".opblock-summary-description")).to_have_text(
        "Lookup prospects by provider ID"
    )

    # Parameters and responses, as the OpenAPI document declares them.
    await operation.locator(".opblock-summary").click()
    for name in ("accountGroupId", "providerId"):
        parameter = operation.locator(f'tr[data-param-name="{name}"]')
        await expect(parameter.locator(".parameter__in")).to_have_text("(path)")
        await expect(parameter.locator(".parameter__name")).to_have_text(f"{name} *")
        await expect(parameter.locator(".parameter__name")).to_have_class(
            re.compile(r"\brequired\b")
        )
    documented = operation.locator(".responses-table:not(.live-responses-table) tr.response")
    codes = await documented.evaluate_all("rows => rows.map(r => r.dataset.code)")
    assert codes == ["200", "401", "403", "422", "429", "500", "503"]

    # Authorize with the key.
    await browser_page.locator(".auth-wrapper button.authorize").click()
    dialog = browser_page.locator(".modal-ux")
    await dialog.locator("input").first.fill(key)
    await dialog.locator("button.authorize").click()
    await expect(dialog.locator("button.authorize")).to_have_count(0)  # now "Logout"
    await dialog.locator("button.btn-done").click()

    # Try it out with a real account group and provider id.
    await operation.locator(".try-out__btn").click()
    await operation.locator('tr[data-param-name="accountGroupId"] input').fill(group)
    await operation.locator('tr[data-param-name="providerId"] input').fill("crm-docs-1")
    await operation.locator("button.execute").click()

    live = operation.locator(".live-responses-table")
    await expect(live.locator("tr.response .response-col_status")).to_have_text("200")
    body = live.locator("tr.response .response-col_description pre.microlight").first
    await expect(body).to_contain_text('"success": true')
    text = await body.inner_text()
    assert '"providerId": "crm-docs-1"' in text
    assert '"resolution": "ambiguous"' in text
    assert '"error": null' in text
    assert f"'Authorization: Bearer {key}'" in await operation.locator(".curl").inner_text()

    # From the operation's header to the end of the live answer: the documented responses
    # below it would make the image five times taller.
    clip = await browser_page.evaluate(
        """([operation, live]) => {
            const top = operation.getBoundingClientRect(), end = live.getBoundingClientRect();
            return {x: top.left, y: top.top + window.scrollY,
                    width: top.width, height: end.bottom - top.top + 8};
        }""",
        [await operation.element_handle(), await live.element_handle()],
    )
    picture = SCREENSHOT if UPDATE_SCREENSHOT else tmp_path / SCREENSHOT.name
    await browser_page.screenshot(path=str(picture), full_page=True, clip=clip)
    assert picture.stat().st_size > 10_000

    assert guard.refused == []
    assert {"/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css"} <= set(guard.served)
