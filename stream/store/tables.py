"""Table definitions of the Chorus store, as they are at the newest migration.

These definitions are what the code reads and writes through (SQLAlchemy Core). Creating and
changing tables in a database is the job of :mod:`stream.store.migrations` (version 1 created the first
tables, version 2 the policy tables, version 4 the reviewers' own: statement templates, case notes,
saved queue filters). A later change to a table here needs a new migration step there, and
``test_schema_matches_metadata`` fails until the two agree.

The column types smooth over what differs between SQLite and PostgreSQL, so that a row reads
back the same from either:

* :class:`UTCDateTime` stores UTC and always returns timezone-aware UTC datetimes (SQLite has no
  timezone type; PostgreSQL returns the session's zone).
* :class:`Real` turns NaN into NULL (SQLite does that silently, PostgreSQL would keep NaN) and
  accepts numpy scalars, which neither driver can bind.
* :data:`Json` is JSONB on PostgreSQL (JSON has no equality operator there, and the upserts
  compare JSON columns) and text on SQLite; Python ``None`` is SQL NULL, not the JSON ``null``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect

#: Review states of a flag; ``open`` until a reviewer claims it.
FLAG_STATUSES: tuple[str, ...] = ("open", "claimed", "confirmed", "dismissed", "escalated", "actioned")
#: What a review decision can be about.
SUBJECT_TYPES: tuple[str, ...] = ("post", "campaign", "account", "flag")


def utcnow() -> datetime:
    """The current time, timezone-aware UTC: the only kind of timestamp the store writes."""
    return datetime.now(UTC)


class _SQLiteTimestamp(sa.types.UserDefinedType[str]):
    """SQLite's side of :class:`UTCDateTime`: declared DATETIME, holding ISO text we format ourselves.

    Same text as SQLAlchemy's own SQLite DATETIME ("2024-05-01 12:00:00.000000"), but formatted
    and parsed by ``datetime``'s C code instead of a %-format per value, which is most of the
    cost of a 10,000-post batch.
    """

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "DATETIME"


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp that goes in as UTC and comes out as aware UTC on both dialects.

    Naive datetimes are refused rather than guessed at: a post's ``created_at`` off by the
    ingest host's UTC offset would silently break every time window downstream. ISO-8601 strings
    with an offset (``2024-05-01T12:00:00Z``) are accepted because that is what the topics carry.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(_SQLiteTimestamp())
        return dialect.type_descriptor(self.impl_instance)

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | str | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime or ISO-8601 string for a timestamp, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"naive datetime {value.isoformat()} for a timestamp column: "
                "give it a timezone (e.g. datetime.now(UTC) or .replace(tzinfo=UTC))"
            )
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            # UTC wall-clock text: sorts and compares correctly as text, and SQLite's date
            # functions read it.
            return value.replace(tzinfo=None).isoformat(" ", "microseconds")
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Real(sa.TypeDecorator[float]):
    """A double that stores NaN as NULL and accepts numpy scalars.

    Detectors report "no calibrated probability" as NaN; SQLite would store NULL and PostgreSQL
    NaN, so the same batch would read back differently. NULL is the honest "unknown" on both.
    """

    impl = sa.Float
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> float | None:
        if value is None:
            return None
        value = float(value)
        return None if math.isnan(value) else value


class Flag(sa.TypeDecorator[bool]):
    """A boolean that accepts numpy booleans, which psycopg cannot adapt."""

    impl = sa.Boolean
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> bool | None:
        return None if value is None else bool(value)


#: JSON column type; see the module docstring for why JSONB on PostgreSQL and none_as_null.
Json = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
#: Auto-incrementing key: BIGINT on PostgreSQL, INTEGER on SQLite (only that aliases the rowid).
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData(
    # Explicit constraint and index names, so later migrations can refer to them on both dialects.
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


posts = sa.Table(
    "posts",
    metadata,
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

detector_results = sa.Table(
    "detector_results",
    metadata,
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

flags = sa.Table(
    "flags",
    metadata,
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
    sa.CheckConstraint(_in("status", FLAG_STATUSES), name="status"),
)

campaigns = sa.Table(
    "campaigns",
    metadata,
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

campaign_members = sa.Table(
    "campaign_members",
    metadata,
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

review_decisions = sa.Table(
    "review_decisions",
    metadata,
    sa.Column("decision_id", BigId, primary_key=True, autoincrement=True),
    sa.Column("subject_type", sa.Text, nullable=False),
    sa.Column("subject_id", sa.Text, nullable=False),
    sa.Column("decision", sa.Text, nullable=False),
    sa.Column("reason_code", sa.Text),
    sa.Column("statement", sa.Text),
    sa.Column("reviewer", sa.Text, nullable=False),
    sa.Column("decided_at", UTCDateTime, nullable=False, default=utcnow),
    sa.Column("reverses_decision_id", BigId, sa.ForeignKey("review_decisions.decision_id")),
    sa.CheckConstraint(_in("subject_type", SUBJECT_TYPES), name="subject_type"),
    sa.Index(None, "subject_type", "subject_id"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
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

dead_letters = sa.Table(
    "dead_letters",
    metadata,
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

worker_metrics = sa.Table(
    "worker_metrics",
    metadata,
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

schema_migrations = sa.Table(
    "schema_migrations",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("applied_at", UTCDateTime, nullable=False, default=utcnow),
)

# --- Policies (migration 2): what the platform does on its own with detector outputs ------------
#: A policy occupies a slot: ``active`` acts, ``shadow`` (a candidate) is only recorded.
POLICY_SLOTS: tuple[str, ...] = ("active", "shadow")
#: Where a policy action stands: ``emitted`` to the actions topic, ``suppressed`` because the rule's
#: circuit breaker was open (recorded, not acted on), or ``shadow`` (a candidate policy's record).
ACTION_STATUSES: tuple[str, ...] = ("emitted", "suppressed", "shadow")
#: What a policy rule can do; removal and suspension are deliberately absent (people decide those).
POLICY_ACTIONS: tuple[str, ...] = ("label", "reduce_reach", "queue_review", "rate_limit_account", "escalate_campaign")
#: Alerts the policy stage raises for the console.
POLICY_ALERT_KINDS: tuple[str, ...] = ("breaker_tripped", "breaker_recovered")

policy_versions = sa.Table(
    "policy_versions",
    metadata,
    # Every policy text ever activated or shadowed, so all workers run the same text and an
    # action's policy version can always be read back.
    sa.Column("policy_id", sa.Text, primary_key=True),
    sa.Column("version", sa.Text, primary_key=True),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("sha256", sa.Text, nullable=False),
    sa.Column("source", sa.Text),
    sa.Column("stored_at", UTCDateTime, nullable=False, default=utcnow),
    sa.Column("stored_by", sa.Text),
)

policy_slots = sa.Table(
    "policy_slots",
    metadata,
    # Which version is active and which is in shadow; changes go with an audit_log row.
    sa.Column("slot", sa.Text, primary_key=True),
    sa.Column("policy_id", sa.Text),
    sa.Column("version", sa.Text),
    sa.Column("changed_at", UTCDateTime, nullable=False, default=utcnow),
    sa.Column("changed_by", sa.Text),
    sa.ForeignKeyConstraint(["policy_id", "version"], ["policy_versions.policy_id", "policy_versions.version"]),
    sa.CheckConstraint(_in("slot", POLICY_SLOTS), name="slot"),
)

policy_actions = sa.Table(
    "policy_actions",
    metadata,
    sa.Column("action_id", sa.Text, primary_key=True),  # detectors.policy.action_id(): stable on replay
    sa.Column("mode", sa.Text, nullable=False),  # the slot that produced it
    sa.Column("status", sa.Text, nullable=False, index=True),
    sa.Column("policy_id", sa.Text, nullable=False),
    sa.Column("policy_version", sa.Text, nullable=False),
    sa.Column("rule_id", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("post_id", sa.Text, sa.ForeignKey("posts.post_id"), nullable=False, index=True),
    sa.Column("account_id", sa.Text, nullable=False, index=True),
    sa.Column("campaign_id", sa.Text),
    sa.Column("params", Json),  # label, priority, proposed action, ...
    sa.Column("scores", Json),  # every detector's score, probability and decision for the post
    sa.Column("evidence", Json),  # the conditions that held, the values seen, the detectors' evidence
    sa.Column("post_created_at", UTCDateTime),
    sa.Column("decided_at", UTCDateTime, nullable=False, default=utcnow, index=True),
    sa.Column("worker_id", sa.Text),
    # Reversal: owned by the console, never touched by the worker's upsert.
    sa.Column("reversed_at", UTCDateTime),
    sa.Column("reversed_by", sa.Text),
    sa.Column("reversal_reason", sa.Text),
    # When a worker sent the reversal to the actions topic (migration 3); NULL while it is pending.
    sa.Column("reversal_emitted_at", UTCDateTime),
    sa.CheckConstraint(_in("mode", POLICY_SLOTS), name="mode"),
    sa.CheckConstraint(_in("status", ACTION_STATUSES), name="status"),
    sa.CheckConstraint(_in("action", POLICY_ACTIONS), name="action"),
    sa.Index(None, "policy_id", "policy_version", "rule_id"),
    sa.Index(None, "reversed_at"),
)

policy_alerts = sa.Table(
    "policy_alerts",
    metadata,
    sa.Column("alert_id", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False, default=utcnow, index=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("policy_id", sa.Text, nullable=False),
    sa.Column("policy_version", sa.Text, nullable=False),
    sa.Column("rule_id", sa.Text, nullable=False),
    sa.Column("share", Real),  # share of the window's posts the rule fired on
    sa.Column("matched", sa.Integer),
    sa.Column("posts", sa.Integer),
    sa.Column("settings", Json),  # the breaker settings in force
    sa.Column("worker_id", sa.Text),
    sa.Column("acknowledged_by", sa.Text),  # console
    sa.Column("acknowledged_at", UTCDateTime),
    sa.CheckConstraint(_in("kind", POLICY_ALERT_KINDS), name="kind"),
)

# --- The reviewers' own records (migration 4) ----------------------------------------------------
#: The kinds of case a statement template can suit (none listed: any).
TEMPLATE_SUBJECTS: tuple[str, ...] = ("post", "account", "campaign")
#: What a team note can be about: a post, one detector's flag on it, an account, a campaign.
NOTE_SUBJECTS: tuple[str, ...] = ("post", "flag", "account", "campaign")

statement_templates = sa.Table(
    "statement_templates",
    metadata,
    # Statements of reasons a lead writes once and reviewers start from (stream/review/templates.py).
    sa.Column("template_id", BigId, primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("subjects", Json),  # a list of TEMPLATE_SUBJECTS; NULL or empty: any kind of case
    sa.Column("reason_code", sa.Text),  # the reason code it is written for, if one
    sa.Column("body", sa.Text, nullable=False),  # with {known} and [[free]] placeholders
    sa.Column("enabled", Flag, nullable=False, default=True, server_default=sa.true()),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    sa.Column("updated_by", sa.Text, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False, default=utcnow),
)

case_notes = sa.Table(
    "case_notes",
    metadata,
    # The team's private notes on a case: never in a statement of reasons nor in an export. Appended,
    # never edited (stream/review/notes.py); each with an audit_log row.
    sa.Column("note_id", BigId, primary_key=True, autoincrement=True),
    sa.Column("subject_type", sa.Text, nullable=False),
    sa.Column("subject_id", sa.Text, nullable=False),
    sa.Column("author", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    sa.CheckConstraint(_in("subject_type", NOTE_SUBJECTS), name="subject_type"),
    sa.Index(None, "subject_type", "subject_id"),
)

saved_filters = sa.Table(
    "saved_filters",
    metadata,
    # A reviewer's named set of flag-queue filters; a lead may share one with the team
    # (stream/review/saved_filters.py).
    sa.Column("filter_id", BigId, primary_key=True, autoincrement=True),
    sa.Column("owner", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("shared", Flag, nullable=False, default=False, server_default=sa.false()),
    sa.Column("filters", Json, nullable=False),  # the queue's choices (saved_filters.QueueChoices)
    sa.Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    sa.Column("updated_at", UTCDateTime, nullable=False, default=utcnow),
    sa.UniqueConstraint("owner", "name"),
)

#: Tables by name: the allowlist for anything that takes a table name from a caller.
TABLES: dict[str, sa.Table] = dict(metadata.tables)
