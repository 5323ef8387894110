"""Versioned schema migrations for the Chorus store, one ordered list for SQLite and PostgreSQL.

Every database, new or old, reaches the current schema the same way: by applying the steps of
:data:`MIGRATIONS` it has not recorded in ``schema_migrations``, in order, inside one write
transaction that also holds a lock, so several workers starting at once apply each step exactly
once (the others wait, then find nothing to do):

* SQLite: the caller's transaction was opened with ``BEGIN IMMEDIATE`` (the database write lock;
  the others wait for it up to the busy timeout). Its DDL is transactional.
* PostgreSQL: ``pg_advisory_xact_lock`` on a fixed key, released at commit. DDL is transactional.

Adding version N means appending ``Migration(N, "what and why", _vN)`` whose function issues the
change (``ALTER TABLE`` / ``CREATE INDEX`` via ``conn.execute``, or new tables), and updating
:mod:`stream.store.tables` to match. A step that creates tables from the *current* definitions
(versions 2 and 4 do, for the tables they introduced) is right only while no later step changes
those tables: before changing one, copy its definition as that step created it into this module
(as version 1's tables and version 2's ``policy_actions`` are), so a fresh database still goes
1 -> 2 -> ... and ends where old ones do (a test compares the result with the definitions).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from stream.store import tables as store_schema
from stream.store.tables import BigId, Flag, Json, Real, UTCDateTime, schema_migrations, utcnow

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


# -- Version 1, frozen ----------------------------------------------------------------------------
# The tables exactly as version 1 created them (copied from stream/store/tables.py when version 2
# was added), so a fresh database goes 1 -> 2 -> ... and ends where old ones do. Never edit these:
# change a table with a new migration step.

_V1 = sa.MetaData(naming_convention=dict(store_schema.metadata.naming_convention))
_V1_FLAG_STATUSES = ("open", "claimed", "confirmed", "dismissed", "escalated", "actioned")
_V1_SUBJECT_TYPES = ("post", "campaign", "account", "flag")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


_v1_posts = sa.Table(
    "posts",
    _V1,
    sa.Column("post_id", sa.Text, primary_key=True),
    sa.Column("account_id", sa.Text, nullable=False, index=True),
    sa.Column("created_at", UTCDateTime, index=True),
    sa.Column("text", sa.Text),
    sa.Column("lang", sa.Text),
    sa.Column("reply_to", sa.Text),
    sa.Column("repost_of", sa.Text),
    sa.Column("quote_of", sa.Text),
    sa.Column("urls", Json),
    sa.Column("hashtags", Json),
    sa.Column("mentions", Json),
    sa.Column("meta", Json),
    sa.Column("schema_version", sa.Integer),
    sa.Column("source_topic", sa.Text),
    sa.Column("source_partition", sa.Integer),
    sa.Column("source_offset", sa.BigInteger),
    sa.Column("ingested_at", UTCDateTime, nullable=False, default=utcnow),
)

_v1_detector_results = sa.Table(
    "detector_results",
    _V1,
    sa.Column("post_id", sa.Text, sa.ForeignKey("posts.post_id"), primary_key=True),
    sa.Column("detector", sa.Text, primary_key=True),
    sa.Column("model_version", sa.Text),
    # NULL: the detector could not score this post (empty, not text); its evidence says why.
    sa.Column("score", Real),
    sa.Column("probability", Real),
    sa.Column("threshold_name", sa.Text),
    sa.Column("threshold", Real),
    sa.Column("flagged", Flag, nullable=False),
    sa.Column("evidence", Json),
    sa.Column("scored_at", UTCDateTime, nullable=False, default=utcnow),
)

_v1_flags = sa.Table(
    "flags",
    _V1,
    sa.Column("flag_id", sa.Text, primary_key=True),  # f"{detector}:{post_id}"
    sa.Column("post_id", sa.Text, sa.ForeignKey("posts.post_id"), nullable=False, index=True),
    sa.Column("account_id", sa.Text, nullable=False, index=True),
    sa.Column("detector", sa.Text, nullable=False),
    sa.Column("model_version", sa.Text),
    sa.Column("score", Real),
    sa.Column("probability", Real),
    sa.Column("threshold_name", sa.Text),
    sa.Column("threshold", Real),
    sa.Column("evidence", Json),
    sa.Column("post_created_at", UTCDateTime),
    sa.Column("flagged_at", UTCDateTime, nullable=False, default=utcnow, index=True),
    # Review state: owned by the console, never touched by the detector upsert.
    sa.Column("status", sa.Text, nullable=False, default="open", server_default="open", index=True),
    sa.Column("assignee", sa.Text),
    sa.Column("claimed_at", UTCDateTime),
    sa.CheckConstraint(_in("status", _V1_FLAG_STATUSES), name="status"),
)

_v1_campaigns = sa.Table(
    "campaigns",
    _V1,
    sa.Column("campaign_id", sa.Text, primary_key=True),
    sa.Column("first_seen", UTCDateTime),
    sa.Column("last_seen", UTCDateTime),
    sa.Column("size", sa.Integer),
    sa.Column("score", Real),
    sa.Column("summary", Json),
    sa.Column("status", sa.Text, nullable=False, default="open", server_default="open", index=True),
    sa.Column("assignee", sa.Text),
    sa.Column("updated_at", UTCDateTime, nullable=False, default=utcnow),
)

_v1_campaign_members = sa.Table(
    "campaign_members",
    _V1,
    sa.Column(
        "campaign_id",
        sa.Text,
        sa.ForeignKey("campaigns.campaign_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("account_id", sa.Text, primary_key=True, index=True),
    sa.Column("weight", Real),
    sa.Column("evidence", Json),
)

_v1_review_decisions = sa.Table(
    "review_decisions",
    _V1,
    sa.Column("decision_id", BigId, primary_key=True, autoincrement=True),
    sa.Column("subject_type", sa.Text, nullable=False),
    sa.Column("subject_id", sa.Text, nullable=False),
    sa.Column("decision", sa.Text, nullable=False),
    sa.Column("reason_code", sa.Text),
    sa.Column("statement", sa.Text),
    sa.Column("reviewer", sa.Text, nullable=False),
    sa.Column("decided_at", UTCDateTime, nullable=False, default=utcnow),
    sa.Column("reverses_decision_id", BigId, sa.ForeignKey("review_decisions.decision_id")),
    sa.CheckConstraint(_in("subject_type", _V1_SUBJECT_TYPES), name="subject_type"),
    sa.Index(None, "subject_type", "subject_id"),
)

_v1_audit_log = sa.Table(
    "audit_log",
    _V1,
    # Append-only: migration 1 adds triggers that reject UPDATE and DELETE (and TRUNCATE).
    sa.Column("audit_id", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False, default=utcnow, index=True),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("subject_type", sa.Text, nullable=False),
    sa.Column("subject_id", sa.Text, nullable=False),
    sa.Column("before", Json),
    sa.Column("after", Json),
    sa.Index(None, "subject_type", "subject_id"),
)

_v1_dead_letters = sa.Table(
    "dead_letters",
    _V1,
    sa.Column("source_topic", sa.Text, primary_key=True),
    sa.Column("source_partition", sa.Integer, primary_key=True),
    sa.Column("source_offset", sa.BigInteger, primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),  # short code: 'not_json', 'missing_field', ...
    sa.Column("error", sa.Text),  # the human-readable message
    sa.Column("key", sa.LargeBinary),
    sa.Column("value", sa.LargeBinary),  # the original bytes, so the message can be replayed
    sa.Column("received_at", UTCDateTime, nullable=False, default=utcnow, index=True),
    sa.Column("worker_id", sa.Text),
)

_v1_worker_metrics = sa.Table(
    "worker_metrics",
    _V1,
    sa.Column("metric_id", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False, default=utcnow, index=True),
    sa.Column("worker_id", sa.Text),
    sa.Column("batch_size", sa.Integer),
    sa.Column("valid", sa.Integer),
    sa.Column("rejected", sa.Integer),
    sa.Column("flagged", sa.Integer),
    sa.Column("lag_total", sa.BigInteger),
    sa.Column("lag", Json),  # partition -> lag
    sa.Column("timings", Json),  # stage -> milliseconds
    sa.Column("posts_per_s", Real),
)


def _v1(conn: Connection) -> None:
    """Create the version-1 tables and the audit_log append-only triggers."""
    # checkfirst=False: a half-made schema (tables without a version row) should fail loudly.
    _V1.create_all(conn, checkfirst=False)
    triggers = {"sqlite": _AUDIT_APPEND_ONLY_SQLITE, "postgresql": _AUDIT_APPEND_ONLY_POSTGRESQL}
    for ddl in triggers[conn.dialect.name]:
        conn.exec_driver_sql(ddl)


# Version 2's ``policy_actions``, frozen when version 3 changed it. ``posts`` is here only so the
# foreign key resolves; it is never created from this metadata.
_V2 = sa.MetaData(naming_convention=dict(store_schema.metadata.naming_convention))
sa.Table("posts", _V2, sa.Column("post_id", sa.Text, primary_key=True))
_V2_POLICY_ACTIONS = sa.Table(
    "policy_actions",
    _V2,
    sa.Column("action_id", sa.Text, primary_key=True),
    sa.Column("mode", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False, index=True),
    sa.Column("policy_id", sa.Text, nullable=False),
    sa.Column("policy_version", sa.Text, nullable=False),
    sa.Column("rule_id", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("post_id", sa.Text, sa.ForeignKey("posts.post_id"), nullable=False, index=True),
    sa.Column("account_id", sa.Text, nullable=False, index=True),
    sa.Column("campaign_id", sa.Text),
    sa.Column("params", Json),
    sa.Column("scores", Json),
    sa.Column("evidence", Json),
    sa.Column("post_created_at", UTCDateTime),
    sa.Column("decided_at", UTCDateTime, nullable=False, default=utcnow, index=True),
    sa.Column("worker_id", sa.Text),
    sa.Column("reversed_at", UTCDateTime),
    sa.Column("reversed_by", sa.Text),
    sa.Column("reversal_reason", sa.Text),
    sa.CheckConstraint("mode IN ('active', 'shadow')", name="mode"),
    sa.CheckConstraint("status IN ('emitted', 'suppressed', 'shadow')", name="status"),
    sa.CheckConstraint(
        "action IN ('label', 'reduce_reach', 'queue_review', 'rate_limit_account', 'escalate_campaign')",
        name="action",
    ),
    sa.Index(None, "policy_id", "policy_version", "rule_id"),
)


def _v2_policies(conn: Connection) -> None:
    """Policy versions and slots, the actions policies take (or would take, in shadow), breaker alerts.

    ``policy_actions`` as frozen above; the other three from the current definitions in
    :mod:`stream.store.tables`, right while no later step changes them (one that does must first
    freeze them here, as ``policy_actions`` is).
    """
    _V2_POLICY_ACTIONS.create(conn, checkfirst=False)
    names = ("policy_versions", "policy_slots", "policy_alerts")
    store_schema.metadata.create_all(conn, tables=[store_schema.TABLES[n] for n in names], checkfirst=False)


def _v3_action_reversals(conn: Connection) -> None:
    """Reversed actions reach the platform: ``reversal_emitted_at`` marks a reversal the workers have
    sent to the actions topic (an outbox: the console writes, a worker relays), and an index on
    ``reversed_at`` keeps the workers' "reversed but not yet sent" poll off a full scan."""
    column_type = UTCDateTime().compile(dialect=conn.dialect)
    conn.execute(sa.text(f"ALTER TABLE policy_actions ADD COLUMN reversal_emitted_at {column_type}"))
    conn.execute(sa.text("CREATE INDEX ix_policy_actions_reversed_at ON policy_actions (reversed_at)"))


def _v4_reviewer_records(conn: Connection) -> None:
    """The reviewers' own records: statement templates, team notes on cases, saved queue filters.

    New tables only (no existing table changes), created from the current definitions in
    :mod:`stream.store.tables`: right while no later step changes them (one that does must first
    freeze them here, as version 2's ``policy_actions`` is). Nothing needs freezing for this step:
    it leaves every table of versions 1 to 3 as it was.
    """
    names = ("statement_templates", "case_notes", "saved_filters")
    store_schema.metadata.create_all(conn, tables=[store_schema.TABLES[n] for n in names], checkfirst=False)


#: Every migration, oldest first. Append only: never edit or renumber a released step.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1, "posts, detector results, flags, campaigns, review decisions, audit log, dead letters, worker metrics", _v1
    ),
    Migration(2, "policies: versions, active/shadow slots, actions, circuit-breaker alerts", _v2_policies),
    Migration(3, "policy action reversals relayed to the actions topic (outbox column, index)", _v3_action_reversals),
    Migration(
        4, "reviewers' records: statement templates, team notes on cases, saved queue filters", _v4_reviewer_records
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
