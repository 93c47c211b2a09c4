"""Is the database reachable and at the schema revision this build expects?"""

from __future__ import annotations

import asyncio
import logging
from functools import lru_cache

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from sonarly_api.db import Database
from sonarly_api.errors import ServiceUnavailable
from sonarly_api.migrations import ALEMBIC_INI

logger = logging.getLogger(__name__)

# An outage must answer quickly: a probe that hangs is read as a dead process, not as
# "not ready", and orchestrators time out their probes after a second or two.
READY_TIMEOUT_SECONDS = 1.5


@lru_cache(maxsize=1)
def expected_revisions() -> frozenset[str]:
    """The head revision(s) of the migration scripts shipped with this build (read once)."""
    if not ALEMBIC_INI.is_file():
        raise RuntimeError(f"alembic.ini not found at {ALEMBIC_INI}")
    heads = ScriptDirectory.from_config(Config(str(ALEMBIC_INI))).get_heads()
    return frozenset(heads)


async def _database_revisions(conn: AsyncConnection) -> frozenset[str] | None:
    """The revisions recorded in the database; None when it has never been migrated."""
    # Checked first rather than caught: a missing table is an expected state here.
    if await conn.scalar(text("SELECT to_regclass('alembic_version') IS NULL")):
        return None
    rows = await conn.scalars(text("SELECT version_num FROM alembic_version"))
    return frozenset(rows)


def _names(revisions: frozenset[str]) -> str:
    return ", ".join(sorted(revisions)) or "none"


async def check_ready(db: Database, expected: frozenset[str]) -> None:
    """Return when ready; raise ServiceUnavailable saying why otherwise."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            current = await db.read(_database_revisions)
    except TimeoutError:
        logger.warning("readiness: database did not answer in %.1f s", READY_TIMEOUT_SECONDS)
        raise ServiceUnavailable(
            f"Database unreachable: no answer within {READY_TIMEOUT_SECONDS:g} s."
        ) from None
    except Exception as exc:
        # Any database failure means "not ready" (503), never a 500: the probe's answer must
        # be one an orchestrator can act on. Logged by type only, like every outage.
        logger.warning("readiness: database unavailable: %s", type(exc).__name__)
        raise ServiceUnavailable("Database unreachable.") from None
    if current is None:
        raise ServiceUnavailable(
            f"Database not migrated: no schema revision (expected {_names(expected)}); "
            "run `sonarly-api db upgrade`."
        )
    if current != expected:
        raise ServiceUnavailable(
            f"Database schema at revision {_names(current)}, this build expects "
            f"{_names(expected)}; run `sonarly-api db upgrade`."
        )
