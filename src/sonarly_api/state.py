"""What the app holds for its lifetime (engine, authenticator, rate limits)."""

from __future__ import annotations

from dataclasses import dataclass

from sonarly_api.auth.authenticator import Authenticator
from sonarly_api.config import Settings
from sonarly_api.db import Database
from sonarly_api.prospecting.queue import JobQueue
from sonarly_api.providers.base import Provider
from sonarly_api.ratelimit import RateLimits


@dataclass
class AppState:
    settings: Settings
    db: Database
    authenticator: Authenticator
    rate_limits: RateLimits
    # Prospecting jobs: `await job_queue.defer(job_id)` once the job row is committed.
    job_queue: JobQueue
    # Where prospecting reads LinkedIn data (PROVIDER): the sandbox unless PROVIDER=http.
    provider: Provider
