"""Where prospecting jobs get LinkedIn data: `create_provider` picks the implementation
named by PROVIDER."""

from __future__ import annotations

from sonarly_api.config import Settings
from sonarly_api.providers.base import Provider


def create_provider(settings: Settings) -> Provider:
    if settings.provider == "sandbox":
        from sonarly_api.providers.sandbox import SandboxProvider

        return SandboxProvider(page_delay_ms=settings.sandbox_page_delay_ms)
    # PROVIDER=http: the HTTP provider (providers/http.py) is chosen here.
    raise RuntimeError(f"PROVIDER={settings.provider} is not available in this build")
