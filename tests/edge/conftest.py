"""Each app twice: as built (the lookup on the fast lane) and with the framework's own stack
for every request (Starlette's middleware stack, the lane left out)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from sonarly_api.app import create_app
from sonarly_api.config import Settings
from tests.conftest import client_for, started


def without_fast_lane(app: FastAPI) -> FastAPI:
    app.middleware_stack = app.build_middleware_stack()
    return app


@pytest.fixture(scope="session")
async def stack_app(settings: Settings) -> AsyncIterator[FastAPI]:
    async for running in started(without_fast_lane(create_app(settings))):
        yield running


@pytest.fixture(params=["lane", "stack"])
async def any_client(
    request: pytest.FixtureRequest, app: FastAPI, stack_app: FastAPI
) -> AsyncIterator[httpx.AsyncClient]:
    """The same tests through the fast lane and through the framework's stack."""
    async with client_for(app if request.param == "lane" else stack_app) as http:
        yield http
