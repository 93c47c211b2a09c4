"""prospects' references checked once per statement instead of once per row

Revision ID: 0002_set_based_references
Revises: 0001_initial
Create Date: 2026-11-27 01:00:00

Why: a foreign key is checked by a trigger that runs one query per inserted row. A bulk
import inserts a million prospects in one statement, so the two foreign keys of
`prospects` (to `persons` and to `account_groups`) cost about 20 s per million rows, a third
of the import. Every one of those rows names the same account group, and persons the same
statement has just created.

What replaces them keeps the same guarantees, enforced by the database for every writer
(not only the importer), with one set-based query per statement:

- `prospects` INSERT/UPDATE (statement-level triggers with transition tables): every new
  `person_id` / `account_group_id` must exist, else error 23503 naming the old constraint.
  Referenced rows that another transaction could delete before this one commits are locked
  FOR KEY SHARE, as a foreign key check does; rows this transaction created (or updated) are
  invisible to, or locked against, every other transaction already and are not locked
  again. An UPDATE checks only the keys it introduces, as a foreign key does.
- `persons` DELETE/UPDATE of `id`: refused while a prospect refers to the old id
  (NO ACTION, as before). `account_groups` DELETE: deletes the group's prospects
  (ON DELETE CASCADE, as before); UPDATE of `id`: refused while referenced. TRUNCATE of
  either: refused while `prospects` has rows (unless truncated in the same command).
- Concurrency: an inserter holds KEY SHARE locks on the pre-existing rows it refers to, so
  a delete waits for it to commit, then checks (or cascades) with a fresh snapshot. A fresh
  snapshot per statement is READ COMMITTED behaviour: a foreign key also protects deletes
  in REPEATABLE READ / SERIALIZABLE transactions (by a cross-check snapshot that a trigger
  cannot take), so these triggers refuse to delete or re-key referenced rows at those
  levels instead of risking an orphan. Nothing in the service does it.

The importer still resolves and creates persons before inserting prospects, in the same
transaction; these checks are what makes a mistake there (or in any other writer) an error
rather than an orphan.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002_set_based_references"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PERSON_FK = "fk_prospects_person_id_persons"
_GROUP_FK = "fk_prospects_account_group_id_account_groups"

# `{rows}`: the (account_group_id, person_id) pairs to check, the whole transition table
# for an INSERT, the pairs it introduces for an UPDATE. One pass over them with hash joins;
# a second only when they refer to persons this transaction did not create (those must be
# locked before they are checked). Written so that the planner sees `{rows}`'s real size:
# IN (subquery) would de-duplicate it first and assume 200 rows, then probe an index a
# million times.
_CHECK_BODY = """
DECLARE
    mine xid := pg_current_xact_id()::xid;
    missing_groups bigint;
    missing_persons bigint;
    others bigint;
    example text;
BEGIN
    -- Account groups are few: one index probe per distinct group.
    PERFORM FROM account_groups g
    WHERE g.id IN (SELECT k.account_group_id FROM {rows} k) AND g.xmin <> mine
    FOR KEY SHARE OF g;
    SELECT count(*) FILTER (WHERE g.id IS NULL), count(*) FILTER (WHERE p.id IS NULL),
           count(*) FILTER (WHERE p.xmin <> mine)
    INTO missing_groups, missing_persons, others
    FROM {rows} k
    LEFT JOIN account_groups g ON g.id = k.account_group_id
    LEFT JOIN persons p ON p.id = k.person_id;
    IF others > 0 THEN
        -- Then checked again: one deleted before it was locked is now seen as missing.
        PERFORM FROM {rows} k JOIN persons p ON p.id = k.person_id
        WHERE p.xmin <> mine
        FOR KEY SHARE OF p;
        missing_persons := (
            SELECT count(*) FROM {rows} k
            WHERE NOT EXISTS (SELECT FROM persons p WHERE p.id = k.person_id)
        );
    END IF;
    IF missing_groups > 0 THEN
        example := (SELECT k.account_group_id FROM {rows} k
                    WHERE NOT EXISTS (SELECT FROM account_groups g WHERE g.id = k.account_group_id)
                    LIMIT 1);
        RAISE foreign_key_violation USING
            MESSAGE = 'insert or update on table "prospects" violates foreign key'
                      ' constraint "{group_fk}"',
            DETAIL = format('Key (account_group_id)=(%s) is not present in table'
                            ' "account_groups".', example),
            CONSTRAINT = '{group_fk}', TABLE = 'prospects';
    END IF;
    IF missing_persons > 0 THEN
        example := (SELECT k.person_id FROM {rows} k
                    WHERE NOT EXISTS (SELECT FROM persons p WHERE p.id = k.person_id) LIMIT 1);
        RAISE foreign_key_violation USING
            MESSAGE = 'insert or update on table "prospects" violates foreign key'
                      ' constraint "{person_fk}"',
            DETAIL = format('Key (person_id)=(%s) is not present in table "persons".', example),
            CONSTRAINT = '{person_fk}', TABLE = 'prospects';
    END IF;
    RETURN NULL;
END
"""

_INSERT_CHECK = _CHECK_BODY.format(rows="new_prospects", group_fk=_GROUP_FK, person_fk=_PERSON_FK)
_UPDATE_CHECK = _CHECK_BODY.format(
    rows="(SELECT account_group_id, person_id FROM new_prospects"
    " EXCEPT SELECT account_group_id, person_id FROM old_prospects)",
    group_fk=_GROUP_FK,
    person_fk=_PERSON_FK,
)

# A referenced table losing keys: `{gone}` lists them; `{action}` runs if any is referenced.
_PARENT_BODY = """
BEGIN
    IF NOT EXISTS (SELECT FROM {gone} k) THEN
        RETURN NULL;
    END IF;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE feature_not_supported USING
            MESSAGE = 'rows of "{table}" that prospects may refer to can only be deleted or'
                      ' re-keyed in a READ COMMITTED transaction',
            HINT = 'See alembic revision 0002_set_based_references.';
    END IF;
    {action}
    RETURN NULL;
END
"""


_RESTRICT_ACTION = """IF EXISTS (SELECT FROM prospects WHERE {column} IN (SELECT id FROM {gone} k))
    THEN
        RAISE foreign_key_violation USING
            MESSAGE = 'update or delete on table "{table}" violates foreign key constraint'
                      ' "{constraint}" on table "prospects"',
            CONSTRAINT = '{constraint}', TABLE = '{table}';
    END IF;"""


def _restrict(table: str, column: str, constraint: str, gone: str) -> str:
    action = _RESTRICT_ACTION.format(column=column, gone=gone, table=table, constraint=constraint)
    return _PARENT_BODY.format(gone=gone, table=table, action=action)


_TRUNCATE_BODY = """
BEGIN
    -- AFTER TRUNCATE runs once every table of the command is empty: truncating prospects
    -- in the same command is allowed, as it is with a foreign key.
    IF EXISTS (SELECT FROM prospects) THEN
        RAISE feature_not_supported USING
            MESSAGE = format('cannot truncate table "%s" while prospects refer to it',
                             TG_TABLE_NAME),
            HINT = 'Truncate table "prospects" at the same time.';
    END IF;
    RETURN NULL;
END
"""

_RE_KEYED = "(SELECT id FROM old_rows EXCEPT SELECT id FROM new_rows)"

# (function, body); then (trigger, table, timing/event, transition tables, function).
_FUNCTIONS = [
    ("prospects_check_inserted_references", _INSERT_CHECK),
    ("prospects_check_updated_references", _UPDATE_CHECK),
    (
        "persons_restrict_delete",
        _restrict("persons", "person_id", _PERSON_FK, "old_rows"),
    ),
    (
        "persons_restrict_update",
        _restrict("persons", "person_id", _PERSON_FK, _RE_KEYED),
    ),
    (
        "account_groups_cascade_delete",
        _PARENT_BODY.format(
            gone="old_rows",
            table="account_groups",
            action="DELETE FROM prospects WHERE account_group_id IN (SELECT id FROM old_rows);",
        ),
    ),
    (
        "account_groups_restrict_update",
        _restrict("account_groups", "account_group_id", _GROUP_FK, _RE_KEYED),
    ),
    ("prospects_parent_restrict_truncate", _TRUNCATE_BODY),
]
_TRIGGERS = [
    ("prospects_check_inserted_references", "prospects", "INSERT",
     "NEW TABLE AS new_prospects", "prospects_check_inserted_references"),
    ("prospects_check_updated_references", "prospects", "UPDATE",
     "OLD TABLE AS old_prospects NEW TABLE AS new_prospects",
     "prospects_check_updated_references"),
    ("persons_restrict_delete", "persons", "DELETE", "OLD TABLE AS old_rows",
     "persons_restrict_delete"),
    ("persons_restrict_update", "persons", "UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows",
     "persons_restrict_update"),
    ("account_groups_cascade_delete", "account_groups", "DELETE", "OLD TABLE AS old_rows",
     "account_groups_cascade_delete"),
    ("account_groups_restrict_update", "account_groups", "UPDATE",
     "OLD TABLE AS old_rows NEW TABLE AS new_rows", "account_groups_restrict_update"),
    ("persons_restrict_truncate", "persons", "TRUNCATE", None,
     "prospects_parent_restrict_truncate"),
    ("account_groups_restrict_truncate", "account_groups", "TRUNCATE", None,
     "prospects_parent_restrict_truncate"),
]  # fmt: skip


def upgrade() -> None:
    # Fail fast rather than queue behind a running import (and block lookups behind us).
    op.execute("SET LOCAL lock_timeout = '10s'")
    for name, body in _FUNCTIONS:
        op.execute(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $body${body}$body$"
        )
    for trigger, table, event, transitions, function in _TRIGGERS:
        referencing = f" REFERENCING {transitions}" if transitions else ""
        op.execute(
            f"CREATE TRIGGER {trigger} AFTER {event} ON {table}{referencing}"
            f" FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        )
    op.drop_constraint(_PERSON_FK, "prospects", type_="foreignkey")
    op.drop_constraint(_GROUP_FK, "prospects", type_="foreignkey")


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '10s'")
    op.create_foreign_key(_GROUP_FK, "prospects", "account_groups", ["account_group_id"], ["id"],
                          ondelete="CASCADE")  # fmt: skip
    op.create_foreign_key(_PERSON_FK, "prospects", "persons", ["person_id"], ["id"])
    for trigger, table, *_ in _TRIGGERS:
        op.execute(f"DROP TRIGGER {trigger} ON {table}")
    for name, _body in _FUNCTIONS:
        op.execute(f"DROP FUNCTION {name}()")
