"""Where prospecting reads LinkedIn data: the provider interface (base.py) and its implementations
(sandbox.py: synthetic data, the default; http.py: the JSON-over-HTTP provider of
docs/provider-api.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sonarly_api.config import Settings
    from sonarly_api.db import Database
    from sonarly_api.providers.base import Provider


def create_provider(settings: Settings, db: Database | None = None) -> Provider:
    """The provider the settings choose (PROVIDER). The HTTP provider needs `db`: it finds there
    which provider account a group connected (`sonarly-api linkedin connect`)."""
    if settings.provider == "http":
        if db is None:
            # Fail at start-up, not at the first job's `is_connected`.
            raise RuntimeError("PROVIDER=http needs the database (LinkedIn connections)")
        from sonarly_api.linkedin.connections import account_resolver
        from sonarly_api.providers.http import HttpProvider, HttpProviderOptions

        # The settings refuse PROVIDER=http without these two.
        assert settings.provider_url is not None
        assert settings.provider_token is not None
        return HttpProvider(
            settings.provider_url,
            settings.provider_token,
            HttpProviderOptions.from_settings(settings),
            resolve_account=account_resolver(db),
        )
    from sonarly_api.providers.sandbox import SandboxProvider

    return SandboxProvider(page_delay_ms=settings.sandbox_page_delay_ms)
