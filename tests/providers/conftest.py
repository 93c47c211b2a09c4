"""Fixtures of the HTTP provider tests: the fake provider (one per module, reset by each
module's `fake` fixture) and the adapter under test on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from pydantic import SecretStr

from sonarly_api.providers.http import HttpProvider
from tests.fakeprovider import FakeProvider, running_fake_provider
from tests.support import HTTP_PROVIDER_OPTIONS


@pytest.fixture(scope="module")
def server() -> Iterator[FakeProvider]:
    with running_fake_provider() as fake:
        yield fake


@pytest.fixture
async def provider(fake: FakeProvider) -> AsyncIterator[HttpProvider]:
    adapter = HttpProvider(fake.url, SecretStr(fake.token), HTTP_PROVIDER_OPTIONS)
    yield adapter
    await adapter.aclose()
