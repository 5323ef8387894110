"""The Chorus store: the one data-access module for the worker, the review console and notebooks.

SQL is written once, in SQLAlchemy Core, for two databases:

* SQLite (the embedded default): WAL, so readers never block the writer; every write transaction
  starts with ``BEGIN IMMEDIATE``, so concurrent writers queue on the write lock (up to the
  busy timeout) instead of failing half-way when a read transaction tries to upgrade.
* PostgreSQL (multi-host deployments), through psycopg 3.

Writes are idempotent because delivery is at-least-once: offsets are committed after
:meth:`Store.write_batch` returns, so a crash replays the batch, and a replay must change nothing.
Every upsert therefore updates a row only when its content differs (``IS DISTINCT FROM``), which
also keeps first-seen timestamps (``ingested_at``, ``scored_at``, ``flagged_at``) stable.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import polars as pl
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.url import URL, make_url

from stream.store import migrations
from stream.store.tables import TABLES, UTCDateTime

#: How long a SQLite writer waits for the write lock before giving up (milliseconds).
SQLITE_BUSY_TIMEOUT_MS = 30_000

#: Execution option that makes a SQLite transaction start with BEGIN IMMEDIATE.
_WRITE = "chorus_write"


# --------------------------------------------------------------------------------------------
# JSON: numpy values and NaN come out of detectors; JSON (and PostgreSQL's jsonb) takes neither.


def _json_fallback(value: Any) -> Any:
    to_list = getattr(value, "tolist", None)  # numpy scalars and arrays
    if callable(to_list):
        return to_list()
    raise TypeError(f"cannot store a {type(value).__name__} in a JSON column: convert it to str, number, list or dict")


_JSON = msgspec.json.Encoder(enc_hook=_json_fallback)


def json_dumps(value: Any) -> str:
    """Serialise for a JSON column: NaN and infinities become null (JSON has no such numbers).

    msgspec rather than ``json``: it is several times faster, which matters with five JSON
    columns per post in a 10,000-post batch, and it writes non-finite floats as null by itself.
    """
    return _JSON.encode(value).decode()


# --------------------------------------------------------------------------------------------
# Connecting


def _database_url(url: str) -> URL:
    """Parse ``url``; a bare filesystem path means SQLite, and PostgreSQL always goes through psycopg 3."""
    if "://" not in url:
        return URL.create("sqlite", database=str(Path(url).expanduser().resolve()))
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and parsed.get_driver_name() == "pysqlite":
        return parsed
    raise ValueError(
        f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}: "
        "use sqlite:///PATH (or a bare path) or postgresql+psycopg://USER:PASS@HOST:PORT/DB"
    )


def _enable_wal(cursor: sqlite3.Cursor) -> None:
    """Switch the database to WAL, waiting while another process holds the lock it needs.

    SQLite does not apply busy_timeout to a journal-mode change: when several processes open a
    new database at once, all but one get "database is locked" at once. The mode is stored in
    the file, so a retry usually finds WAL already set by the winner.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
            if mode.lower() not in ("wal", "memory"):
                mode = cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
    if mode.lower() not in ("wal", "memory"):
        raise RuntimeError(
            f"SQLite kept journal_mode={mode!r} instead of WAL: WAL needs a local filesystem with "
            "shared memory; put the database on a local disk or use PostgreSQL"
        )


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, json_serializer=json_dumps)

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module (it would BEGIN lazily and
        # DEFERRED), so the "begin" hook below decides; see SQLAlchemy's pysqlite docs.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            _enable_wal(cursor)
            cursor.execute("PRAGMA synchronous = NORMAL")  # durable at checkpoints; safe with WAL
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front (waiting on busy_timeout); readers stay deferred
        # so they never block the worker.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")

    return engine


# --------------------------------------------------------------------------------------------
# Upserts


@dataclass(frozen=True)
class _Upsert:
    """How one table is written idempotently.

    ``compare``: the columns whose difference makes a re-sent row a change; ``update``: what a
    change overwrites. Columns in neither keep their first value. ``update=()`` means insert
    or ignore.
    """

    table: sa.Table
    key: tuple[str, ...]
    compare: tuple[str, ...] = ()
    update: tuple[str, ...] = ()


_POST_CONTENT = (
    "account_id", "created_at", "text", "lang", "reply_to", "repost_of", "quote_of",
    "urls", "hashtags", "mentions", "meta", "schema_version",
)  # fmt: skip
_SCORE_FIELDS = ("model_version", "score", "probability", "threshold_name", "threshold")

_POSTS = _Upsert(
    TABLES["posts"],
    key=("post_id",),
    compare=_POST_CONTENT,
    # Provenance follows the content it delivered; ingested_at stays the first ingest.
    update=(*_POST_CONTENT, "source_topic", "source_partition", "source_offset"),
)
_RESULTS = _Upsert(
    TABLES["detector_results"],
    key=("post_id", "detector"),
    compare=(*_SCORE_FIELDS, "flagged", "evidence"),
    update=(*_SCORE_FIELDS, "flagged", "evidence", "scored_at"),
)
_FLAGS = _Upsert(
    TABLES["flags"],
    key=("flag_id",),
    # Detector fields only: status, assignee and claimed_at belong to the reviewers, and
    # flagged_at stays the first flagging so the review queue order does not jump on replay.
    compare=("post_id", "account_id", "detector", *_SCORE_FIELDS, "evidence", "post_created_at"),
    update=("post_id", "account_id", "detector", *_SCORE_FIELDS, "evidence", "post_created_at"),
)
_DEAD_LETTERS = _Upsert(TABLES["dead_letters"], key=("source_topic", "source_partition", "source_offset"))
_ACTION_CONTENT = (
    "mode", "status", "policy_id", "policy_version", "rule_id", "action", "post_id", "account_id",
    "campaign_id", "params", "scores", "evidence", "post_created_at",
)  # fmt: skip
_ACTIONS = _Upsert(
    TABLES["policy_actions"],
    key=("action_id",),
    # The policy's fields only: the reversal columns belong to the console, and decided_at stays the
    # first decision. A replay that finds the rule's breaker in another state updates the status.
    compare=_ACTION_CONTENT,
    update=(*_ACTION_CONTENT, "worker_id"),
)

_INSERTS: dict[str, Callable[[sa.Table], Any]] = {
    "sqlite": sqlite_dialect.insert,
    "postgresql": pg_dialect.insert,
}


def _writable_columns(table: sa.Table) -> list[sa.Column[Any]]:
    """Columns a caller may set: all but database-generated keys."""
    return [c for c in table.columns if not (c.primary_key and c.autoincrement is True)]


def _rows_for(table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every row with every writable column: missing keys become the column default or NULL.

    executemany needs the same keys in every row. Unknown keys are an error, not dropped, so a
    misspelt field fails the first test instead of silently losing data.
    """
    columns = _writable_columns(table)
    names = {c.name for c in columns}
    defaults: dict[str, Any] = {}
    for column in columns:
        default = column.default
        if isinstance(default, sa.ColumnDefault) and default.is_callable:
            defaults[column.name] = default.arg(None)  # one timestamp for the whole batch
        elif isinstance(default, sa.ColumnDefault) and default.is_scalar:
            defaults[column.name] = default.arg
        else:
            defaults[column.name] = None
    out = []
    for i, row in enumerate(rows):
        if not names.issuperset(row):
            raise ValueError(
                f"{table.name} row {i} has unknown keys {sorted(row.keys() - names)}; its columns are {sorted(names)}"
            )
        out.append({**defaults, **row})
    return out


# --------------------------------------------------------------------------------------------


def _polars_dtype(column: sa.Column[Any]) -> pl.DataType:
    """The frame dtype of a column, so empty and all-NULL columns still get the right type."""
    kind = column.type
    if isinstance(kind, sa.JSON):
        return pl.String()
    if isinstance(kind, UTCDateTime):
        return pl.Datetime("us", "UTC")
    if isinstance(kind, sa.TypeDecorator):
        kind = kind.impl_instance
    if isinstance(kind, sa.Boolean):
        return pl.Boolean()
    if isinstance(kind, sa.Integer):
        return pl.Int64()
    if isinstance(kind, sa.Float):
        return pl.Float64()
    if isinstance(kind, sa.LargeBinary):
        return pl.Binary()
    return pl.String()


class Store:
    """The Chorus database: migrations, the worker's batch writes, and reads for people.

    Open with :meth:`Store.open`; one instance per process (it holds a connection pool).
    """

    dialect: str
    engine: Engine

    def __init__(self, engine: Engine) -> None:
        if engine.dialect.name not in _INSERTS:
            raise ValueError(f"unsupported database dialect {engine.dialect.name!r}: use SQLite or PostgreSQL")
        self.engine = engine
        self.dialect = engine.dialect.name
        self._insert = _INSERTS[self.dialect]

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Store:
        """Connect to ``url`` (``sqlite:///path.db``, a bare path, or ``postgresql+psycopg://...``).

        ``migrate=True`` brings the schema up to date, which every writer should do at start;
        readers that must never take the write lock (notebooks) pass ``migrate=False``.
        """
        parsed = _database_url(url)
        if parsed.get_backend_name() == "sqlite":
            engine = _sqlite_engine(parsed)
        else:
            engine = sa.create_engine(parsed, json_serializer=json_dumps, pool_pre_ping=True)
        store = cls(engine)
        if migrate:
            try:
                store.migrate()
            except BaseException:
                store.close()
                raise
        return store

    def close(self) -> None:
        """Close pooled connections (on SQLite this also lets the last one checkpoint the WAL)."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.engine.url.render_as_string(hide_password=True)!r})"

    # ----------------------------------------------------------------------------------------
    # Schema

    def migrate(self) -> list[int]:
        """Apply missing migrations (see :mod:`stream.store.migrations`); returns the versions applied."""
        with self.transaction() as conn:
            return migrations.upgrade(conn)

    def schema_version(self) -> int:
        """The newest applied migration, 0 for an empty database."""
        with self.engine.connect() as conn:
            return migrations.current_version(conn)

    # ----------------------------------------------------------------------------------------
    # Writing

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A connection in a write transaction: committed on normal exit, rolled back on error.

        On SQLite it starts with BEGIN IMMEDIATE, so it waits for other writers up front rather
        than failing with "database is locked" when it first writes.
        """
        with self.engine.connect() as conn:
            conn.execution_options(**{_WRITE: True})
            with conn.begin():
                yield conn

    def write_batch(
        self,
        *,
        posts: list[dict[str, Any]],
        results: list[dict[str, Any]],
        flags: list[dict[str, Any]],
        dead_letters: list[dict[str, Any]],
        metrics: dict[str, Any] | None = None,
        actions: list[dict[str, Any]] | None = None,
        alerts: list[dict[str, Any]] | None = None,
    ) -> None:
        """Write one micro-batch of the worker in ONE transaction; replaying it changes nothing.

        Dict keys are column names (missing optional keys -> NULL or the column default; unknown
        keys -> ValueError). Posts upsert by ``post_id``, results by ``(post_id, detector)``,
        flags by ``flag_id`` (detector fields only, review state untouched), dead letters are
        insert-or-ignore, and ``metrics`` appends one ``worker_metrics`` row. Policy ``actions``
        (active, suppressed and shadow) upsert by ``action_id`` (reversal state untouched), and
        ``alerts`` (circuit-breaker changes) are appended.
        """
        with self.transaction() as conn:
            self._upsert(conn, _POSTS, posts)
            self._upsert(conn, _RESULTS, results)
            self._upsert(conn, _FLAGS, flags)
            self._upsert(conn, _DEAD_LETTERS, dead_letters)
            self._upsert(conn, _ACTIONS, actions or [])
            if alerts:
                policy_alerts = TABLES["policy_alerts"]
                conn.execute(sa.insert(policy_alerts), _rows_for(policy_alerts, alerts))
            if metrics is not None:
                worker_metrics = TABLES["worker_metrics"]
                conn.execute(sa.insert(worker_metrics), _rows_for(worker_metrics, [metrics]))

    def _upsert(self, conn: Connection, spec: _Upsert, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        filled = _rows_for(spec.table, rows)
        # One row per key (the last wins; PostgreSQL refuses to upsert a key twice in one
        # statement), in key order so concurrent writers lock rows in the same order and cannot
        # deadlock each other.
        by_key = {tuple(row[k] for k in spec.key): row for row in filled}
        unique = [by_key[k] for k in sorted(by_key, key=lambda key: tuple(map(str, key)))]
        stmt = self._insert(spec.table)
        if spec.update:
            stmt = stmt.on_conflict_do_update(
                index_elements=list(spec.key),
                set_={name: stmt.excluded[name] for name in spec.update},
                where=sa.or_(*(spec.table.c[name].is_distinct_from(stmt.excluded[name]) for name in spec.compare)),
            )
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=list(spec.key))
        conn.execute(stmt, unique)

    def append_audit(
        self,
        *,
        actor: str,
        action: str,
        subject_type: str,
        subject_id: str,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        conn: Connection | None = None,
    ) -> int:
        """Append one audit row and return its ``audit_id``.

        Pass the ``conn`` of :meth:`transaction` to commit the audit row together with the change
        it records; without it the row is written in its own transaction.
        """
        values = {
            "actor": actor,
            "action": action,
            "subject_type": subject_type,
            "subject_id": subject_id,
            "before": before,
            "after": after,
        }
        if conn is None:
            with self.transaction() as own:
                return self.append_audit(**values, conn=own)
        audit_log = TABLES["audit_log"]
        result = conn.execute(sa.insert(audit_log).values(**_rows_for(audit_log, [values])[0]))
        return int(result.inserted_primary_key[0])

    # ----------------------------------------------------------------------------------------
    # Reading
    def policy_matches(self, policy_id: str, version: str, mode: str) -> pl.DataFrame:
        """``rule_id, action, status, post_id`` of every record ``policy_id@version`` made in ``mode``
        (``active`` or ``shadow``): what the shadow comparison counts."""
        actions = TABLES["policy_actions"]
        query = sa.select(actions.c.rule_id, actions.c.action, actions.c.status, actions.c.post_id).where(
            actions.c.policy_id == policy_id, actions.c.policy_version == version, actions.c.mode == mode
        )
        schema = {"rule_id": pl.String, "action": pl.String, "status": pl.String, "post_id": pl.String}
        with self.engine.connect() as conn:
            return pl.DataFrame([tuple(r) for r in conn.execute(query)], schema=schema, orient="row")

    def post_review_decisions(self) -> pl.DataFrame:
        """``post_id, decision``: each post's standing reviewer decision, about the post itself or one
        of its flags; a decision that a later one reverses no longer stands, and the latest wins."""
        decisions, flags = TABLES["review_decisions"], TABLES["flags"]
        query = (
            sa.select(
                decisions.c.decision_id,
                sa.case((decisions.c.subject_type == "flag", flags.c.post_id), else_=decisions.c.subject_id),
                decisions.c.decision,
                decisions.c.reverses_decision_id,
            )
            .select_from(
                decisions.outerjoin(
                    flags, sa.and_(decisions.c.subject_type == "flag", flags.c.flag_id == decisions.c.subject_id)
                )
            )
            .where(decisions.c.subject_type.in_(("post", "flag")))
        )
        schema = {"decision_id": pl.Int64, "post_id": pl.String, "decision": pl.String, "reverses": pl.Int64}
        with self.engine.connect() as conn:
            frame = pl.DataFrame([tuple(r) for r in conn.execute(query)], schema=schema, orient="row")
        reversed_ids = frame.get_column("reverses").drop_nulls().unique()
        return (
            frame.filter(~pl.col("decision_id").is_in(reversed_ids.implode()) & pl.col("post_id").is_not_null())
            .sort("decision_id")
            .group_by("post_id", maintain_order=True)
            .agg(pl.col("decision").last())
        )

    def campaign_memberships(self, account_ids: Sequence[str]) -> pl.DataFrame:
        """For each account that belongs to a campaign, its strongest one: ``account_id, campaign_id,
        campaign_score, campaign_size``. Policies read it per batch, so one query, keyed by account."""
        members, campaigns = TABLES["campaign_members"], TABLES["campaigns"]
        schema = {
            "account_id": pl.String,
            "campaign_id": pl.String,
            "campaign_score": pl.Float64,
            "campaign_size": pl.Int64,
        }
        wanted = sorted(set(account_ids))
        rows: list[tuple[Any, ...]] = []
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), 1000):  # bounded IN lists
                query = (
                    sa.select(members.c.account_id, campaigns.c.campaign_id, campaigns.c.score, campaigns.c.size)
                    .join(campaigns, campaigns.c.campaign_id == members.c.campaign_id)
                    .where(members.c.account_id.in_(wanted[start : start + 1000]))
                )
                rows.extend(tuple(r) for r in conn.execute(query))
        frame = pl.DataFrame(rows, schema=schema, orient="row")
        return frame.sort(
            ["account_id", "campaign_score", "campaign_id"], descending=[False, True, False], nulls_last=True
        ).unique("account_id", keep="first", maintain_order=True)

    @staticmethod
    def _table(name: str) -> sa.Table:
        try:
            return TABLES[name]
        except KeyError:
            raise ValueError(f"unknown table {name!r}; the store has {sorted(TABLES)}") from None

    def count(self, table: str) -> int:
        """Number of rows in ``table`` (one of the store's tables)."""
        query = sa.select(sa.func.count()).select_from(self._table(table))
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def frame(self, table: str, *, where: str | None = None, limit: int | None = None) -> pl.DataFrame:
        """Rows of ``table`` as a polars DataFrame, in primary-key order.

        ``where`` is a raw SQL condition (``"status = 'open'"``) for tests and notebooks: it is
        trusted text, never put user input in it. JSON columns come back as JSON text,
        timestamps as ``Datetime("us", "UTC")``.
        """
        source = self._table(table)
        columns = [sa.cast(c, sa.Text).label(c.name) if isinstance(c.type, sa.JSON) else c for c in source.columns]
        query = sa.select(*columns).order_by(*source.primary_key.columns)
        if where:
            query = query.where(sa.text(where))
        if limit is not None:
            query = query.limit(limit)
        schema = {c.name: _polars_dtype(c) for c in source.columns}
        with self.engine.connect() as conn:
            return pl.read_database(query, conn, schema_overrides=schema, infer_schema_length=None)
