"""tenant guards: TRUNCATE of persons or account_groups refused while prospects may refer to
them, at every isolation level

Revision ID: 0006_tenant_guards
Revises: 0005_prospecting_jobs
Create Date: 2026-12-04 14:10:00

Why: revision 0002's AFTER TRUNCATE check asks `EXISTS (SELECT FROM prospects)`. At READ
COMMITTED that statement takes a fresh snapshot and sees every committed prospect. At
REPEATABLE READ or SERIALIZABLE it reads the transaction's snapshot, which may predate
prospects committed since: the check passes, and those prospects point at nothing.

Now the check first locks `prospects` in SHARE mode (writers in flight finish first; none
starts until this transaction ends), then:
- at READ COMMITTED, as before: refused if a committed prospect exists;
- at the other levels, where no fresh snapshot can be had: refused unless the table holds no
  page at all (`pg_relation_size` is 0), which does not depend on a snapshot. A prospects
  table truncated in the same command is empty, so `TRUNCATE prospects, persons` still works;
  one whose rows were deleted but not yet vacuumed is refused (it may still refer to them).

(Re-chained by the lead at merge: on the branch `credits` it follows 0004.)
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from alembic import op

revision: str = "0006_tenant_guards"
down_revision: str | None = "0005_prospecting_jobs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FUNCTION = "prospects_parent_restrict_truncate"

# Runs AFTER TRUNCATE, FOR EACH STATEMENT, on persons and on account_groups (the triggers of
# revision 0002, unchanged): once every table of the command has been emptied.
_BODY = """
BEGIN
    -- Writers of prospects in flight finish first; none starts until this transaction ends.
    LOCK TABLE prospects IN SHARE MODE;
    IF current_setting('transaction_isolation') = 'read committed' THEN
        IF EXISTS (SELECT FROM prospects) THEN
            RAISE feature_not_supported USING
                MESSAGE = format('cannot truncate table "%s" while prospects refer to it',
                                 TG_TABLE_NAME),
                HINT = 'Truncate table "prospects" in the same command.';
        END IF;
    ELSIF pg_relation_size('prospects') > 0 THEN
        RAISE feature_not_supported USING
            MESSAGE = format('cannot truncate table "%s" while prospects may refer to it',
                             TG_TABLE_NAME),
            DETAIL = format('At %s, rows committed after this transaction began are not'
                            ' visible to it, so any data in table "prospects" counts.',
                            upper(current_setting('transaction_isolation'))),
            HINT = 'Truncate table "prospects" in the same command, or run the TRUNCATE'
                   ' at READ COMMITTED.';
    END IF;
    RETURN NULL;
END
"""


def _replace(body: str) -> None:
    op.execute(
        f"CREATE OR REPLACE FUNCTION {_FUNCTION}() RETURNS trigger LANGUAGE plpgsql"
        f" AS $body${body}$body$"
    )


def upgrade() -> None:
    _replace(_BODY)


def downgrade() -> None:
    # Back to the body of revision 0002, taken from its own file.
    _replace(_revision_0002()._TRUNCATE_BODY)


def _revision_0002() -> ModuleType:
    path = Path(__file__).with_name("2026_11_27_0002_set_based_reference_checks.py")
    spec = importlib.util.spec_from_file_location("revision_0002", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
