"""Reading posts for review: one post with everything behind its flags, and posts by id.

Post text is whatever someone posted, hostile markup included: callers display it as text.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from stream.review.cases import unique
from stream.review.history import decision_history
from stream.store.database import Store
from stream.store.reading import chunks, read_rows
from stream.store.tables import TABLES

posts_t = TABLES["posts"]
results_t = TABLES["detector_results"]
flags_t = TABLES["flags"]


def post_detail(store: Store, post_id: str) -> dict[str, Any] | None:
    """Everything the post view shows: the post, every detector's result, its flags and history.

    JSON columns come back parsed (dicts and lists); ``None`` when the post does not exist.
    """
    with store.engine.connect() as conn:
        post = conn.execute(sa.select(posts_t).where(posts_t.c.post_id == post_id)).first()
        if post is None:
            return None
        results = read_rows(
            conn, sa.select(results_t).where(results_t.c.post_id == post_id).order_by(results_t.c.detector)
        )
        flags = read_rows(conn, sa.select(flags_t).where(flags_t.c.post_id == post_id).order_by(flags_t.c.flag_id))
    flag_ids = [f["flag_id"] for f in flags]
    return {
        "post": dict(post._mapping),
        "results": results,
        "flags": flags,
        "decisions": decision_history(store, subject_type="flag", subject_ids=flag_ids, limit=200),
    }


def post_of_flag(store: Store, flag_id: str) -> str | None:
    """The post a flag is about (for links that name the case, as "submit and next" does)."""
    with store.engine.connect() as conn:
        return conn.execute(sa.select(flags_t.c.post_id).where(flags_t.c.flag_id == flag_id)).scalar()


def posts_by_id(store: Store, post_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Posts by id (for co-action evidence side by side); missing ids are left out."""
    wanted = unique(post_ids)
    out: dict[str, dict[str, Any]] = {}
    with store.engine.connect() as conn:
        for chunk in chunks(wanted):
            query = sa.select(posts_t.c.post_id, posts_t.c.account_id, posts_t.c.created_at, posts_t.c.text).where(
                posts_t.c.post_id.in_(chunk)
            )
            out.update({row["post_id"]: row for row in read_rows(conn, query)})
    return out
