"""Settings, read once from the environment (and a `.env` file)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from limits import parse, parse_many
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_EMBEDDED_PG_DIR = Path(".data/pg")
# uvicorn's names; "trace" is uvicorn's level below debug.
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def validated_trusted_proxies(value: str) -> str:
    """Comma-separated IP addresses or networks, or "*"; normalised, without spaces."""
    items = [item.strip() for item in value.split(",") if item.strip()]
    if items == ["*"]:
        return "*"
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(
                f"not an IP address or network: {item!r} (comma-separated, or '*')"
            ) from None
    return ",".join(items)


def _validated_rate_limit(value: str) -> str:
    try:
        parse(value)
    except ValueError as exc:
        raise ValueError(f"not a rate limit like '600/minute': {value!r}") from exc
    # `limits` reads "600/minute;10/second" as its first limit only; one window per budget is
    # what the service counts, so several are refused rather than silently cut to one.
    if len(parse_many(value)) > 1:
        raise ValueError(f"one limit only, like '600/minute' (several were given): {value!r}")
    return value


def _validated_storage_uri(value: str) -> str:
    if value.startswith("memory://"):
        return value
    if not value.startswith(("redis://", "rediss://")):
        raise ValueError("must be memory:// or redis://host:port/db")
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number 0-65535
    except ValueError:
        # Host and port only: the part before '@' may hold a password.
        where = parts.netloc.rpartition("@")[2]
        raise ValueError(f"the port is not a number from 1 to 65535: {where!r}") from None
    if not parts.hostname:
        raise ValueError("no host: use redis://host:port/db")
    database = parts.path.strip("/")
    if database and not database.isdigit():
        raise ValueError(f"the database is not a number: {database!r} (redis://host:port/0)")
    return value


class Settings(BaseSettings):
    """Every setting of the service; the names are the environment variables."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    database_url: str | None = None
    api_key_pepper: SecretStr | None = None
    embedded_pg_dir: Path = DEFAULT_EMBEDDED_PG_DIR
    # `serve` fills an empty database with demo data and a key (see demo.py).
    demo_data: bool = True

    rate_limit: str = "600/minute"
    auth_failure_rate_limit: str = "30/minute"
    rate_limit_storage_uri: str = "memory://"

    # Upper bound, in seconds, for a revoked key to stop working in every worker.
    key_cache_ttl_seconds: Annotated[float, Field(ge=0, le=300, allow_inf_nan=False)] = 10.0
    key_cache_size: Annotated[int, Field(ge=1)] = 10_000

    # Per process: processes x DB_POOL_SIZE must fit the server's max_connections, with room
    # for job workers, migrations and the CLI (README, "Connections to PostgreSQL"). 10 keeps
    # two API processes at 20 of a default server's 100 (chosen for that budget; throughput
    # against pool size is in docs/performance.md).
    db_pool_size: Annotated[int, Field(ge=1, le=1000)] = 10
    # Finite: `inf` passed `gt=0` and made a request wait forever for a pooled connection.
    db_pool_timeout_seconds: Annotated[float, Field(gt=0, le=300, allow_inf_nan=False)] = 2.0
    db_connect_timeout_seconds: Annotated[float, Field(gt=0, le=300, allow_inf_nan=False)] = 2.0
    db_statement_timeout_ms: Annotated[int, Field(ge=0)] = 5_000
    # On SIGTERM, `serve` stops accepting connections and waits this long for in-flight
    # requests before cancelling them (uvicorn's timeout_graceful_shutdown; its default waits
    # forever, which an orchestrator's kill would cut short anyway, without cleanup).
    shutdown_grace_seconds: Annotated[int, Field(ge=1, le=3600)] = 10

    log_level: str = "info"
    # None: JSON unless stderr is a terminal (see observability/logs.py).
    log_format: Literal["json", "console"] | None = None
    access_log: bool = True

    # /metrics: None means "token" when METRICS_TOKEN is set, else "off" — never open by accident.
    metrics: Literal["off", "open", "token"] | None = None
    metrics_token: SecretStr | None = None

    # --- the HTTP edge (sonarly_api/edge) ---
    # A request head (request line and headers) must arrive within this many seconds.
    http_header_timeout_seconds: Annotated[float, Field(gt=0, le=300, allow_inf_nan=False)] = 10.0
    # Open connections per worker process; beyond it a connection is answered 503 and closed.
    http_max_connections: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    # Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (uvicorn's
    # forwarded-allow-ips): comma-separated addresses or networks, or "*". Empty: none, and the
    # client address is the connection's.
    trusted_proxies: str = ""

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: str) -> str:
        return validated_trusted_proxies(value)

    # --- providers (branch provider): where prospecting reads LinkedIn data.
    # "sandbox": synthetic data, any group counts as connected; "http": the JSON-over-HTTP
    # provider of docs/provider-api.md at PROVIDER_URL, authenticated with PROVIDER_TOKEN.
    provider: Literal["sandbox", "http"] = "sandbox"
    provider_url: str | None = None
    provider_token: SecretStr | None = None
    provider_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0
    provider_max_attempts: Annotated[int, Field(ge=1, le=10)] = 4
    provider_deadline_seconds: Annotated[float, Field(gt=0, le=3600)] = 120.0
    provider_listing_deadline_seconds: Annotated[float, Field(gt=0, le=300)] = 15.0
    provider_account_concurrency: Annotated[int, Field(ge=1, le=100)] = 4
    provider_max_connections: Annotated[int, Field(ge=1, le=1000)] = 20

    # --- prospecting jobs: provider and workers ---
    # The sandbox waits this long before each page, so a demo job visibly progresses.
    sandbox_page_delay_ms: Annotated[int, Field(ge=0, le=60_000)] = 300
    # `serve` runs a job worker in its process (turned on by `serve`, off with --no-worker).
    job_worker: bool = False
    # Jobs one worker process runs at once (`sonarly-api worker --concurrency`).
    worker_concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    # How much a `sonarly-api worker` process lowers its CPU priority (Unix niceness): on
    # cores it shares with the API, jobs take the CPU that requests leave. 0 keeps it level.
    worker_nice: Annotated[int, Field(ge=0, le=19)] = 10
    # The bound on each statement of a job's page and enrichment transactions.
    job_statement_timeout_ms: Annotated[int, Field(ge=100)] = 30_000

    @field_validator("rate_limit", "auth_failure_rate_limit")
    @classmethod
    def _check_rate_limit(cls, value: str) -> str:
        return _validated_rate_limit(value)

    @field_validator("rate_limit_storage_uri")
    @classmethod
    def _check_storage(cls, value: str) -> str:
        return _validated_storage_uri(value)

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        if not value.startswith(("postgresql://", "postgresql+asyncpg://", "postgres://")):
            raise ValueError("must start with postgresql:// or postgresql+asyncpg://")
        return value

    @field_validator("api_key_pepper")
    @classmethod
    def _check_pepper(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return value

    @field_validator("metrics_token")
    @classmethod
    def _check_metrics_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value() == "":
            return None  # `METRICS_TOKEN=` (docker-compose's default) means no token
        if len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @model_validator(mode="after")
    def _token_with_metrics(self) -> Settings:
        if self.metrics == "token" and self.metrics_token is None:
            raise ValueError("METRICS_TOKEN is required when METRICS=token")
        return self

    @field_validator("provider_url")
    @classmethod
    def _check_provider_url(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("provider_token")
    @classmethod
    def _check_provider_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value() == "":
            return None
        return value

    @model_validator(mode="after")
    def _http_provider_settings(self) -> Settings:
        if self.provider == "http" and (self.provider_url is None or self.provider_token is None):
            raise ValueError("PROVIDER=http needs PROVIDER_URL and PROVIDER_TOKEN")
        return self

    @property
    def metrics_mode(self) -> Literal["off", "open", "token"]:
        if self.metrics is not None:
            return self.metrics
        return "token" if self.metrics_token is not None else "off"

    @model_validator(mode="after")
    def _pepper_with_database(self) -> Settings:
        if self.database_url is not None and self.api_key_pepper is None:
            raise ValueError("API_KEY_PEPPER is required when DATABASE_URL is set")
        return self

    @property
    def embedded(self) -> bool:
        """True when no DATABASE_URL is given: the service runs its own PostgreSQL."""
        return self.database_url is None


def environment_variables() -> tuple[str, ...]:
    """The names of every setting's environment variable: a process started for a test or a
    benchmark clears these from what it inherits, then sets exactly what it means to."""
    return tuple(name.upper() for name in Settings.model_fields)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def describe_settings_error(exc: Exception) -> str:
    """One line naming the faulty setting, for start-up failures."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors(include_url=False, include_input=False):
            name = ".".join(str(p) for p in err["loc"]).upper() or "settings"
            message = err["msg"].removeprefix("Value error, ")
            parts.append(f"{name}: {message}" if name != "settings" else message)
        return "invalid setting " + "; ".join(parts)
    return f"invalid settings: {exc}"
