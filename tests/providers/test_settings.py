"""PROVIDER, PROVIDER_URL, PROVIDER_TOKEN: validated at start-up; the token stays secret."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from sonarly_api.config import Settings, describe_settings_error
from sonarly_api.providers import create_provider
from sonarly_api.providers.http import HttpProvider
from sonarly_api.providers.sandbox import SandboxProvider
from tests.conftest import Factory


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


class TestSettings:
    @pytest.mark.parametrize(
        "values",
        [
            {"provider": "http"},
            {"provider": "http", "provider_url": "https://p.example/v1"},
            {"provider": "http", "provider_token": "t0ken"},
            {"provider": "http", "provider_url": "", "provider_token": ""},
        ],
    )
    def test_http_needs_url_and_token(self, values: dict[str, object]) -> None:
        with pytest.raises(ValidationError) as caught:
            settings(**values)

        assert describe_settings_error(caught.value) == (
            "invalid setting PROVIDER=http needs PROVIDER_URL and PROVIDER_TOKEN"
        )

    def test_url_must_be_http(self) -> None:
        with pytest.raises(ValidationError) as caught:
            settings(provider_url="ftp://p.example")

        assert describe_settings_error(caught.value) == (
            "invalid setting PROVIDER_URL: must start with http:// or https://"
        )

    def test_unknown_provider(self) -> None:
        with pytest.raises(ValidationError) as caught:
            settings(provider="linkedin")

        assert describe_settings_error(caught.value).startswith("invalid setting PROVIDER: ")

    def test_token_is_never_shown(self) -> None:
        value = settings(
            provider="http", provider_url="https://p.example/v1/", provider_token="s3cr3t-t0ken"
        )

        assert value.provider_url == "https://p.example/v1"
        assert "s3cr3t-t0ken" not in repr(value)
        assert "s3cr3t-t0ken" not in str(value.model_dump())


HTTP = {"provider": "http", "provider_url": "https://p.example/v1", "provider_token": "t0ken"}


class TestCreateProvider:
    async def test_http(self, app: FastAPI, factory: Factory) -> None:
        db = app.state.sonarly.db
        provider = create_provider(settings(**HTTP, provider_account_concurrency=7), db)
        try:
            assert isinstance(provider, HttpProvider)
            assert provider.options.account_concurrency == 7
            # It reads the connections through `db` (the app's default provider is the sandbox).
            assert await provider.is_connected(await factory.group()) is None
        finally:
            assert provider is not None
            await provider.aclose()

    def test_http_needs_the_database(self) -> None:
        with pytest.raises(RuntimeError, match="PROVIDER=http needs the database"):
            create_provider(settings(**HTTP))

    def test_sandbox_is_the_default(self) -> None:
        provider = create_provider(settings(sandbox_page_delay_ms=0))
        assert isinstance(provider, SandboxProvider)
