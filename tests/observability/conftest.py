"""Apps with metrics on, and the process's log output captured."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sonarly_api.app import create_app
from sonarly_api.observability.logs import configure_logging, reset_logging
from tests.conftest import client_for, make_settings, started


class LogLines:
    """What the process wrote to its (captured) stderr."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def json(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines()]

    def access(self) -> list[dict[str, Any]]:
        return [line for line in self.json() if line.get("logger") == "sonarly_api.access"]


@pytest.fixture
def logs() -> Iterator[LogLines]:
    """Logging configured as `serve` does (JSON), into a buffer; undone afterwards."""
    lines = LogLines()
    # The test's HTTP client logs its own requests, query strings included: not the service.
    client_logger = logging.getLogger("httpx")
    level = client_logger.level
    client_logger.setLevel(logging.WARNING)
    configure_logging("info", "json", lines.stream)
    yield lines
    reset_logging()
    client_logger.setLevel(level)


@pytest.fixture
def serving(database_url: str) -> Any:
    """`async with serving(**settings) as client`: a started app of its own (METRICS=open
    unless said otherwise), so its metrics count only this test's requests."""

    @asynccontextmanager
    async def make(**settings: Any) -> AsyncIterator[httpx.AsyncClient]:
        values = {"metrics": "open", **settings}
        async for app in started(create_app(make_settings(database_url, **values))):
            async with client_for(app) as client:
                yield client

    return make


def samples(exposition: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """{(sample name, labels): value} of a Prometheus text exposition."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())
