"""The overview's operational numbers: flag volume over time, worker throughput and lag, dead letters,
decisions by reviewer.

Read for the console's overview page, next to the queue sizes (:func:`~stream.review.queues.queue_sizes`)
and reviewer precision (:func:`~stream.review.labels.detector_precision`). Times come back as UTC
datetimes (never as text), so charts put them on a time axis. A reversed decision is not counted as a
decision (nor is the reversal): what the overview counts is what still stands, as precision does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import polars as pl
import sqlalchemy as sa

from stream.review.vocabulary import REVERSE
from stream.store.database import Store
from stream.store.reading import read_frame, utc_datetime
from stream.store.tables import TABLES

flags_t = TABLES["flags"]
dead_letters_t = TABLES["dead_letters"]
metrics_t = TABLES["worker_metrics"]
decisions_t = TABLES["review_decisions"]


def _bucket(column: sa.Column[Any], dialect: str, unit: str) -> Any:
    if unit not in ("hour", "day"):
        raise ValueError(f"unknown time bucket {unit!r}; use 'hour' or 'day'")
    if dialect == "postgresql":
        return sa.func.date_trunc(unit, column)
    return sa.func.strftime("%Y-%m-%d %H:00:00" if unit == "hour" else "%Y-%m-%d 00:00:00", column)


def flag_volume(
    store: Store, *, by: str = "flagged_at", unit: str = "hour", since: datetime | None = None
) -> pl.DataFrame:
    """Flags per time bucket and detector (``by``: ``flagged_at`` or ``post_created_at``)."""
    if by not in ("flagged_at", "post_created_at"):
        raise ValueError("flag_volume: by must be 'flagged_at' or 'post_created_at'")
    column = flags_t.c[by]
    bucket = _bucket(column, store.dialect, unit).label("bucket")
    query = sa.select(bucket, flags_t.c.detector, sa.func.count().label("flags")).where(column.is_not(None))
    if since is not None:
        query = query.where(column >= since)
    query = query.group_by(bucket, flags_t.c.detector).order_by(bucket, flags_t.c.detector)
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    return pl.DataFrame(
        {
            "bucket": [utc_datetime(r[0]) for r in rows],
            "detector": [r[1] for r in rows],
            "flags": [int(r[2]) for r in rows],
        },
        schema={"bucket": pl.Datetime("us", "UTC"), "detector": pl.String, "flags": pl.Int64},
    )


def worker_throughput(store: Store, *, since: datetime | None = None, limit: int = 5_000) -> pl.DataFrame:
    """The workers' per-batch metrics (throughput, lag, rejects), newest ``limit`` batches, oldest first."""
    columns = [
        metrics_t.c.at,
        metrics_t.c.worker_id,
        metrics_t.c.batch_size,
        metrics_t.c.valid,
        metrics_t.c.rejected,
        metrics_t.c.flagged,
        metrics_t.c.lag_total,
        metrics_t.c.posts_per_s,
    ]
    query = sa.select(*columns).order_by(metrics_t.c.at.desc()).limit(limit)
    if since is not None:
        query = query.where(metrics_t.c.at >= since)
    with store.engine.connect() as conn:
        return read_frame(conn, query).sort("at")


def dead_letter_reasons(store: Store) -> pl.DataFrame:
    """Dead letters by reason code, with the latest one's time."""
    query = (
        sa.select(
            dead_letters_t.c.reason,
            sa.func.count().label("messages"),
            sa.func.max(dead_letters_t.c.received_at).label("latest"),
        )
        .group_by(dead_letters_t.c.reason)
        .order_by(sa.func.count().desc(), dead_letters_t.c.reason)
    )
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    return pl.DataFrame(
        {
            "reason": [r[0] for r in rows],
            "messages": [int(r[1]) for r in rows],
            "latest": [utc_datetime(r[2]) for r in rows],
        },
        schema={"reason": pl.String, "messages": pl.Int64, "latest": pl.Datetime("us", "UTC")},
    )


def decisions_by_reviewer(store: Store) -> pl.DataFrame:
    """Decisions per reviewer and decision, counting only those that stand.

    ``decisions``: the reviewer's decisions of that kind not reversed since (a decision superseded by
    a later one still counts: it was made and it was not undone); ``reversed``: those that were
    reversed, shown apart and never counted as decisions. Reversal rows themselves are not decisions
    and are left out. Sorted by reviewer, then decision.
    """
    reversal = decisions_t.alias("reversal")
    was_reversed = sa.exists().where(reversal.c.reverses_decision_id == decisions_t.c.decision_id)
    reversed_count = sa.func.sum(sa.case((was_reversed, 1), else_=0))
    query = (
        sa.select(
            decisions_t.c.reviewer,
            decisions_t.c.decision,
            sa.func.count().label("made"),
            reversed_count.label("reversed"),
        )
        .where(decisions_t.c.decision != REVERSE)
        .group_by(decisions_t.c.reviewer, decisions_t.c.decision)
        .order_by(decisions_t.c.reviewer, decisions_t.c.decision)
    )
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    return pl.DataFrame(
        {
            "reviewer": [r[0] for r in rows],
            "decision": [r[1] for r in rows],
            "decisions": [int(r[2]) - int(r[3] or 0) for r in rows],
            "reversed": [int(r[3] or 0) for r in rows],
        },
        schema={"reviewer": pl.String, "decision": pl.String, "decisions": pl.Int64, "reversed": pl.Int64},
    )
