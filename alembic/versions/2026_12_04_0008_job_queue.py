"""job queue: procrastinate's schema (tables, types, functions, triggers)

Revision ID: 0008_job_queue
Revises: 0007_linkedin_connections
Create Date: 2026-12-04 13:45:00

Prospecting jobs run on procrastinate, a queue kept in PostgreSQL. Its schema ships here,
through Alembic like every other table, so one `sonarly-api db upgrade` prepares a database
for the API and the workers alike (procrastinate's own `schema --apply` is never needed).

The SQL is the schema file of the installed procrastinate, whose version pyproject.toml
pins exactly: that file is the schema of that version. Moving to another version takes a
new revision that applies procrastinate's migration files between the two versions (they
ship in its `sql/migrations` folder), and moving this pin's check along.
"""

from collections.abc import Sequence

import procrastinate
from alembic import op
from procrastinate.schema import SchemaManager
from sqlalchemy.util import await_only

revision: str = "0008_job_queue"
down_revision: str | None = "0007_linkedin_connections"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA_VERSION = "3.10.0"

_TABLES = (
    "procrastinate_events",
    "procrastinate_periodic_defers",
    "procrastinate_jobs",
    "procrastinate_workers",
)
_TYPES = (
    "procrastinate_job_to_defer_v1",
    "procrastinate_job_event_type",
    "procrastinate_job_status",
)


def upgrade() -> None:
    if procrastinate.__version__ != SCHEMA_VERSION:
        raise RuntimeError(
            f"revision 0008 ships procrastinate {SCHEMA_VERSION}'s schema, but "
            f"{procrastinate.__version__} is installed: reinstall the project (make clean run)"
        )
    # Many statements and PL/pgSQL bodies: sent as one simple query on the driver's own
    # connection (a prepared statement holds one command), inside Alembic's transaction.
    driver = op.get_bind().connection.driver_connection
    assert driver is not None
    await_only(driver.execute(SchemaManager.get_schema()))


def downgrade() -> None:
    op.execute(f"DROP TABLE {', '.join(_TABLES)} CASCADE")
    # Every procrastinate function, whatever its arguments (the triggers went with the tables).
    op.execute(
        """
        DO $$
        DECLARE f regprocedure;
        BEGIN
            FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
                     JOIN pg_namespace n ON n.oid = p.pronamespace
                     WHERE n.nspname = current_schema() AND p.proname LIKE 'procrastinate%'
            LOOP
                EXECUTE 'DROP FUNCTION ' || f;
            END LOOP;
        END $$
        """
    )
    op.execute(f"DROP TYPE {', '.join(_TYPES)}")
