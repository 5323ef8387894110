"""The record: decisions (with who reversed them) and the audit log, newest first.

What an appeal or an auditor reads, and what the post and campaign views show under a case. Read
only: rows are appended by :mod:`~stream.review.decisions` and :mod:`~stream.review.reversal`.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
import sqlalchemy as sa

from stream.store.database import Store
from stream.store.reading import json_as_text, read_frame
from stream.store.tables import TABLES

decisions_t = TABLES["review_decisions"]
audit_t = TABLES["audit_log"]


def decision_history(
    store: Store,
    *,
    subject_type: str | None = None,
    subject_ids: Sequence[str] | None = None,
    reviewer: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> pl.DataFrame:
    """Decisions newest first, each with ``reversed_by`` (the reversal's id, if any)."""
    reversal = decisions_t.alias("reversal")
    query = (
        sa.select(*decisions_t.c, reversal.c.decision_id.label("reversed_by"))
        .outerjoin(reversal, reversal.c.reverses_decision_id == decisions_t.c.decision_id)
        .order_by(decisions_t.c.decision_id.desc())
        .limit(limit)
        .offset(offset)
    )
    if subject_type:
        query = query.where(decisions_t.c.subject_type == subject_type)
    if subject_ids is not None:
        query = query.where(decisions_t.c.subject_id.in_(list(subject_ids) or [""]))
    if reviewer:
        query = query.where(decisions_t.c.reviewer == reviewer)
    with store.engine.connect() as conn:
        return read_frame(conn, query)


def audit_trail(
    store: Store,
    *,
    subject_type: str | None = None,
    subject_id: str | None = None,
    actor: str | None = None,
    limit: int = 200,
    offset: int = 0,
) -> pl.DataFrame:
    """Audit rows newest first; ``before`` and ``after`` as JSON text."""
    query = sa.select(*json_as_text(*audit_t.c)).order_by(audit_t.c.audit_id.desc()).limit(limit).offset(offset)
    if subject_type:
        query = query.where(audit_t.c.subject_type == subject_type)
    if subject_id:
        query = query.where(audit_t.c.subject_id == subject_id)
    if actor:
        query = query.where(audit_t.c.actor == actor)
    with store.engine.connect() as conn:
        return read_frame(conn, query)
