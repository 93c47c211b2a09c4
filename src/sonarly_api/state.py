"""What the app holds for its lifetime (engine, authenticator, rate limits)."""

from __future__ import annotations

from dataclasses import dataclass

from sonarly_api.auth.authenticator import Authenticator
from sonarly_api.config import Settings
from sonarly_api.db import Database
from sonarly_api.providers.base import Provider
from sonarly_api.ratelimit import RateLimits


@dataclass
class AppState:
    settings: Settings
    db: Database
    authenticator: Authenticator
    rate_limits: RateLimits
    # Where prospecting reads LinkedIn data (PROVIDER); None until the sandbox is wired in.
    provider: Provider | None = None
