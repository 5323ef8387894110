"""Versioned schema migrations for the Chorus store, one ordered list for SQLite and PostgreSQL.

Every database, new or old, reaches the current schema the same way: by applying the steps of
:data:`MIGRATIONS` it has not recorded in ``schema_migrations``, in order, inside one write
transaction that also holds a lock, so several workers starting at once apply each step exactly
once (the others wait, then find nothing to do):

* SQLite: the caller's transaction was opened with ``BEGIN IMMEDIATE`` (the database write lock;
  the others wait for it up to the busy timeout). Its DDL is transactional.
* PostgreSQL: ``pg_advisory_xact_lock`` on a fixed key, released at commit. DDL is transactional.

Adding version 2 means appending ``Migration(2, "what and why", _v2)`` whose function issues the
change (``ALTER TABLE`` / ``CREATE INDEX`` via ``conn.execute``), and updating
:mod:`stream.store_schema` to match. Before that, freeze version 1: it creates tables from the
*current* definitions, which is right only while version 1 is the newest. Copy the version-1
table definitions into this module for ``_v1`` to use, so a fresh database still goes
1 -> 2 -> ... and ends where old ones do (a test compares the result with the definitions).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from stream import store_schema
from stream.store_schema import schema_migrations, utcnow

#: pg_advisory_xact_lock key shared by every Chorus process; any fixed 64-bit number would do.
#: This one is the ASCII of "chorusmg" so it is recognisable in pg_locks.
MIGRATION_LOCK_KEY = int.from_bytes(b"chorusmg", "big") & 0x7FFF_FFFF_FFFF_FFFF


@dataclass(frozen=True)
class Migration:
    """One step: ``apply(conn)`` runs inside the migration transaction and must not commit."""

    version: int
    description: str
    apply: Callable[[Connection], None]


_AUDIT_APPEND_ONLY_SQLITE = (
    """
    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE is not allowed; append a new row'); END
    """,
    """
    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE is not allowed'); END
    """,
)

# No percent signs in this SQL, not even in comments: psycopg reads them as placeholders.
_AUDIT_APPEND_ONLY_POSTGRESQL = (
    """
    CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION USING
            MESSAGE = 'audit_log is append-only: ' || TG_OP || ' is not allowed',
            HINT = 'Append a new audit row instead of changing an old one.';
    END
    $$
    """,
    """
    CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()
    """,
    """
    CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()
    """,
)


def _v1(conn: Connection) -> None:
    """Create every table and the audit_log append-only triggers."""
    tables = [t for t in store_schema.metadata.sorted_tables if t is not schema_migrations]
    # checkfirst=False: a half-made schema (tables without a version row) should fail loudly.
    store_schema.metadata.create_all(conn, tables=tables, checkfirst=False)
    triggers = {"sqlite": _AUDIT_APPEND_ONLY_SQLITE, "postgresql": _AUDIT_APPEND_ONLY_POSTGRESQL}
    for ddl in triggers[conn.dialect.name]:
        conn.exec_driver_sql(ddl)


#: Every migration, oldest first. Append only: never edit or renumber a released step.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1, "posts, detector results, flags, campaigns, review decisions, audit log, dead letters, worker metrics", _v1
    ),
)


def check_order(steps: Sequence[Migration]) -> None:
    """Refuse a list that is not 1, 2, 3, ...: a gap or a repeat would corrupt the recorded history."""
    versions = [step.version for step in steps]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migration versions must be 1, 2, 3, ... in order; got {versions}")


check_order(MIGRATIONS)
HEAD_VERSION: int = MIGRATIONS[-1].version


def current_version(conn: Connection) -> int:
    """The newest applied version, 0 for a database that has never been migrated."""
    if not sa.inspect(conn).has_table(schema_migrations.name):
        return 0
    return conn.execute(sa.select(sa.func.coalesce(sa.func.max(schema_migrations.c.version), 0))).scalar_one()


def upgrade(conn: Connection, steps: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Apply the missing steps on ``conn``, which must be in a write transaction; return their versions.

    On SQLite the caller opened the transaction with BEGIN IMMEDIATE (``Store.transaction()``
    does), so the write lock is already held; on PostgreSQL the advisory lock is taken here.
    """
    check_order(steps)
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    schema_migrations.create(conn, checkfirst=True)
    applied = set(conn.execute(sa.select(schema_migrations.c.version)).scalars())
    newest_known = steps[-1].version if steps else 0
    if applied and max(applied) > newest_known:
        raise RuntimeError(
            f"the database is at schema version {max(applied)} but this Chorus knows versions up to "
            f"{newest_known}: upgrade Chorus (an older release must not write to a newer schema)"
        )
    done = []
    for step in steps:
        if step.version in applied:
            continue
        step.apply(conn)
        conn.execute(
            sa.insert(schema_migrations).values(version=step.version, description=step.description, applied_at=utcnow())
        )
        done.append(step.version)
    return done
