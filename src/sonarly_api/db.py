"""Engine and connections: the one place that knows how to reach PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import MetaData, Text, event
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import InterfaceError as SQLAlchemyInterfaceError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import PoolProxiedConnection, QueuePool
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from sonarly_api.config import Settings

T = TypeVar("T")

# Stable constraint names, so Alembic migrations and `alembic check` agree.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# Identifiers, keys and codes (ids, provider ids, public identifiers, profile URLs, statuses):
# compared byte by byte, whatever collation the server's database was created with. A libc or
# ICU locale (C.UTF-8 on Debian, en_US.utf8 in the official image) compares every index entry
# with strcoll: 15% of a million-row import (PostgreSQL 18 over TCP, 30.6 s against 26.6 s),
# for an order these values do not need. Human text (names, titles, notes) keeps the database's.
KeyText = Text(collation="C")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def async_url(url: str) -> str:
    """Accept postgres://, postgresql:// or postgresql+asyncpg:// and return the asyncpg form."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url.removeprefix(prefix)
    raise ValueError("DATABASE_URL must be a postgresql:// URL")


# Set on every connection the service opens (the app's pool, the CLI, the importer), so that
# no statement depends on how the server was configured. `jit` off: PostgreSQL's JIT (on by
# default in Debian's and the official image's servers; the embedded build has none) compiled
# the importer's large statements again at every chunk: 200,000 rows into 200,000 took 30.5 s
# with it on and 8.8 s off on the same server. The service's statements are index lookups and
# set-based writes, which JIT never makes faster.
SERVER_SETTINGS: dict[str, str] = {"application_name": "sonarly-api", "jit": "off"}


class DatabaseRefused(Exception):
    """PostgreSQL (or the network) refused a new connection: too many clients, a failed
    authentication, a database shutting down or not accepting connections, a refused or timed
    out TCP connect. Raised instead of the driver's error by every engine made here, so that all
    of them read as "database unavailable" (503 with Retry-After) whatever their SQLSTATE, and
    nothing in the pool needs dropping: no connection was made. The driver's error is the cause
    (never shown: its text may name roles or databases)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"database refused a new connection ({type(cause).__name__})")
        self.sqlstate: str | None = getattr(cause, "sqlstate", None)
        self.timed_out = isinstance(cause, TimeoutError)

    def reason(self) -> str:
        """Plain words for an operator (the CLI), from the SQLSTATE, never the server's text."""
        if self.sqlstate is not None:
            for prefix, reason in _REFUSALS:
                if self.sqlstate.startswith(prefix):
                    return reason
            return f"refused by the server (SQLSTATE {self.sqlstate})"
        if self.timed_out:
            return "no answer within DB_CONNECT_TIMEOUT_SECONDS"
        return "unreachable (check DATABASE_URL's host and port)"


_REFUSALS = (
    ("53300", "too many connections (the server's max_connections or the role's CONNECTION LIMIT)"),
    ("28", "authentication failed (check DATABASE_URL's user and password)"),
    ("57P03", "the server is starting up or shutting down"),
    ("3D000", "the database does not exist"),
    ("55000", "the database is not accepting connections"),
    ("53", "the server is out of resources"),
)


# What asyncpg.connect raises when the server or the network says no. (A `ValueError` for a
# malformed URL or option is a configuration mistake, and is left to fail loudly.)
_CONNECT_FAILURES: tuple[type[BaseException], ...] = (
    OSError,  # refused, unreachable, reset; TimeoutError (the connect timeout) is one too
    asyncio.TimeoutError,
    asyncpg.PostgresError,  # 53300 too many clients, 28xxx auth, 57P03, 3D000, 55000…
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


async def connect(*args: Any, **kwargs: Any) -> asyncpg.Connection:
    """asyncpg.connect, its refusals raised as `DatabaseRefused` (the engines' creator)."""
    try:
        return await asyncpg.connect(*args, **kwargs)
    except _CONNECT_FAILURES as exc:
        raise DatabaseRefused(exc) from exc


def _connect_args(settings: Settings | None, application_name: str) -> dict[str, Any]:
    server_settings = {**SERVER_SETTINGS, "application_name": application_name}
    connect_args: dict[str, Any] = {"server_settings": server_settings}
    if settings is not None:
        connect_args["timeout"] = settings.db_connect_timeout_seconds
        if settings.db_statement_timeout_ms:
            server_settings["statement_timeout"] = str(settings.db_statement_timeout_ms)
    return connect_args


def _new_engine(
    url: str, settings: Settings | None, application_name: str = "sonarly-api", **pool: Any
) -> AsyncEngine:
    """Every engine of the service (the app's, the CLI's, the importer's): the server settings
    above, the connect timeout, and refusals raised as `DatabaseRefused`."""
    engine = create_async_engine(
        async_url(url), connect_args=_connect_args(settings, application_name), **pool
    )

    @event.listens_for(engine.sync_engine, "do_connect")
    def _through_connect(_dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
        # The dialect calls this instead of asyncpg.connect, with the URL's parts and
        # connect_args as usual (SQLAlchemy's `async_creator` would get no arguments).
        cparams["async_creator_fn"] = connect

    return engine


def create_admin_engine(url: str) -> AsyncEngine:
    """An engine for the CLI and the importer: a small pool, the service's server settings
    (`jit` off), no statement timeout (an import of millions of rows runs for minutes)."""
    return _new_engine(url, None, pool_size=2, max_overflow=0)


def create_engine(
    settings: Settings, url: str, *, application_name: str = "sonarly-api"
) -> AsyncEngine:
    """The application's engine.

    No `pool_pre_ping`: it would add a round trip to every lookup. A connection that died
    while pooled is detected on use instead (SQLAlchemy invalidates it and the pool), and
    read-only work retries once on a fresh connection (see `Database.read`).
    """
    return _new_engine(
        url,
        settings,
        application_name=application_name,
        pool_size=settings.db_pool_size,
        max_overflow=0,
        pool_timeout=settings.db_pool_timeout_seconds,
        pool_recycle=3600,
        # The most recently used connection first (asyncpg's own pool does the same): the
        # same few PostgreSQL backends stay hot instead of every pooled one taking turns,
        # which cost PostgreSQL ~15% more CPU per lookup in the benchmark.
        pool_use_lifo=True,
    )


# The driver's errors for "this connection is gone": the pooled connection is discarded and,
# for reads, the statement retried once on another one. Listed one by one rather than by
# family: `OperatorInterventionError` also covers 57014 (a statement timeout, or a cancel),
# and `InterfaceError` also covers misuse of a live connection (see `is_disconnect`).
DISCONNECT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,  # 08xxx, and the driver's "connection was closed"
    asyncpg.AdminShutdownError,  # 57P01: pg_terminate_backend, a fast or smart shutdown
    asyncpg.CrashShutdownError,  # 57P02
    asyncpg.CannotConnectNowError,  # 57P03
    # The driver's protocol state broke (seen when PostgreSQL shuts down in the middle of a
    # statement, tests/faults/): the connection is unusable, whatever the cause.
    asyncpg.InternalClientError,
)

# asyncpg's InterfaceError on a connection it already knows is closed; any other one ("another
# operation is in progress", a released connection used) is a programming error: answered
# 500, neither retried nor taken for an outage.
_CLOSED = "connection is closed"


def is_disconnect(exc: BaseException) -> bool:
    """True when `exc` means the connection it came from is gone."""
    if isinstance(exc, asyncpg.InterfaceError) and not isinstance(
        exc, asyncpg.ClientConfigurationError | asyncpg.DataError
    ):
        return _CLOSED in str(exc)
    return isinstance(exc, DISCONNECT_ERRORS)


# Errors that mean "the database cannot serve us right now" without the connection being
# gone: answered 503 once, the connection kept.
BUSY_ERRORS: tuple[type[BaseException], ...] = (
    DatabaseRefused,  # a new connection refused (too many clients, authentication…)
    PoolTimeoutError,  # every pooled connection busy for DB_POOL_TIMEOUT_SECONDS
    asyncio.TimeoutError,
    asyncpg.QueryCanceledError,  # 57014: statement_timeout (an overloaded or locked table)
    asyncpg.InsufficientResourcesError,  # 53xxx: out of memory, disk full, too many clients
    asyncpg.exceptions.LockNotAvailableError,  # 55P03: lock_timeout
)


def _unavailable_driver_error(exc: BaseException | None) -> bool:
    return exc is not None and (is_disconnect(exc) or isinstance(exc, BUSY_ERRORS))


def is_unavailable(exc: BaseException) -> bool:
    """True when `exc` means "the database cannot serve us right now": a 503 with
    Retry-After, never a 500."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        if isinstance(exc, SQLAlchemyInterfaceError) and not isinstance(
            exc.orig, AsyncAdapt_asyncpg_dbapi.Error
        ):
            return True  # SQLAlchemy's own "connection closed" family
        return _unavailable_driver_error(exc.orig) or _unavailable_driver_error(
            getattr(exc.orig, "__cause__", None)
        )
    if isinstance(exc, AsyncAdapt_asyncpg_dbapi.Error):
        # The pool's connect on the hot path (`Database.fetch`, engine.raw_connection()) raises
        # the dialect's DBAPI error unwrapped, the driver's error as its cause: e.g. "the
        # database system is starting up" while PostgreSQL restarts (tests/faults/).
        return _unavailable_driver_error(exc.__cause__)
    return _unavailable_driver_error(exc)


@dataclass(frozen=True)
class DriverStatement:
    """A Core statement compiled once, at import, to the driver's SQL: `Database.fetch` runs
    it as a prepared statement with positional arguments."""

    sql: str
    parameter_order: tuple[str, ...]
    fixed: dict[str, Any]  # values the statement itself binds (e.g. a LIMIT)

    @classmethod
    def compile(cls, statement: ClauseElement) -> DriverStatement:
        compiled = statement.compile(dialect=asyncpg_dialect())  # type: ignore[no-untyped-call]
        assert isinstance(compiled, SQLCompiler)
        fixed = {name: value for name, value in compiled.params.items() if value is not None}
        return cls(compiled.string, tuple(compiled.positiontup or ()), fixed)

    def arguments(self, **values: Any) -> list[Any]:
        bound = {**self.fixed, **values}
        return [bound[name] for name in self.parameter_order]


class Database:
    """The engine plus a read-only view of it in autocommit mode (same pool), which spares
    every read the BEGIN and ROLLBACK round trips."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._reader = engine.execution_options(isolation_level="AUTOCOMMIT")
        # `fetch`'s connections, kept checked out between statements (see `_hold`).
        self._held: list[PoolProxiedConnection] = []
        pool = engine.pool
        self._max_held = max(1, pool.size() // 2) if isinstance(pool, QueuePool) else 1
        self._release: asyncio.TimerHandle | None = None

    async def read(self, work: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run `work(conn, *args)` on a pooled connection; retry once if that connection turned
        out to be dead (e.g. PostgreSQL restarted since it was pooled). Reads only: a retry
        must be harmless."""
        try:
            async with self._reader.connect() as conn:
                return await work(conn, *args)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        async with self._reader.connect() as conn:
            return await work(conn, *args)

    async def fetch(self, statement: DriverStatement, **values: Any) -> list[asyncpg.Record]:
        """The hot path: one prepared statement on the driver connection of a pooled connection.

        SQLAlchemy still owns the pool (sizing, timeouts, invalidation) and the statement is
        built with Core (see `DriverStatement`); only its execution bypasses the
        Connection/Result machinery, which cost more CPU than the query itself (see
        docs/performance.md). asyncpg caches the prepared statement per connection, and no
        transaction is opened: a single statement needs none. It may run twice (see below),
        so it must be a read or a write that is harmless to repeat.
        """
        pooled = self._held.pop() if self._held else await self.engine.raw_connection()
        for attempt in (1, 2):
            try:
                driver: asyncpg.Connection = pooled.driver_connection
                rows: list[asyncpg.Record] = await driver.fetch(
                    statement.sql, *statement.arguments(**values)
                )
            except Exception as exc:
                if not is_disconnect(exc):
                    # A statement timeout, a constraint, a programming error: the connection
                    # itself is fine; the pool resets it on check-in.
                    pooled.close()
                    raise
                # Drop this connection and those held with it (likely gone too, e.g. after a
                # PostgreSQL restart), then retry once, on a connection from the pool.
                for dropped in (pooled, *self._take_held()):
                    dropped.invalidate(exc)
                    dropped.close()
                if attempt == 2:
                    raise
                pooled = await self.engine.raw_connection()
                continue
            except BaseException:
                pooled.close()  # e.g. cancelled mid-statement: the pool resets it on check-in
                raise
            self._hold(pooled)
            return rows
        raise AssertionError("unreachable")

    def _hold(self, pooled: PoolProxiedConnection) -> None:
        """Keep a connection checked out for the next `fetch`, for at most a second.

        A check-out and check-in through SQLAlchemy's async pool (a greenlet, the pool's
        queue, reset and events) cost about a third of a lookup's in-process CPU
        (docs/performance.md); a connection taken from this stack costs a list pop. Held
        connections all go back to the pool a second after the first of them was held, so
        the pool still recycles, resets and invalidates them as configured; and at most half
        of the pool is held idle, so other work (key reads, writes) finds connections as it
        did before.
        """
        if len(self._held) >= self._max_held:
            pooled.close()
            return
        self._held.append(pooled)
        if self._release is None:
            self._release = asyncio.get_running_loop().call_later(1.0, self.release_held)

    def release_held(self) -> None:
        """Return every held connection to the pool (at shutdown, after a disconnect, and for
        whoever watches the pool's check-outs, like the tests' query counter)."""
        for pooled in self._take_held():
            pooled.close()

    def _take_held(self) -> list[PoolProxiedConnection]:
        if self._release is not None:
            self._release.cancel()
            self._release = None
        held, self._held = self._held, []
        return held

    def pool_status(self) -> tuple[int, int] | None:
        """(in use, idle) connections of the pool, held ones counted as idle; None when the
        pool does not count them."""
        pool = self.engine.pool
        if not isinstance(pool, QueuePool):
            return None
        held = len(self._held)
        return pool.checkedout() - held, pool.checkedin() + held

    async def dispose(self) -> None:
        self.release_held()
        await self.engine.dispose()
