"""Reading one campaign for review: its scores, members and their activity, links, timeline, decisions.

Campaigns are written by the coordination stage (``campaigns``, ``campaign_members``); the links
come from the evidence it stored or, when it stored none, are computed from the members' posts
(:mod:`stream.review.edges`).
"""

from __future__ import annotations

from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from stream.config import CoordinatorSettings
from stream.review.edges import campaign_edges, inferred_edges
from stream.review.history import decision_history
from stream.store.database import Store
from stream.store.reading import json_as_text, read_frame, read_rows
from stream.store.tables import TABLES

posts_t = TABLES["posts"]
flags_t = TABLES["flags"]
campaigns_t = TABLES["campaigns"]
members_t = TABLES["campaign_members"]


def campaign_detail(
    store: Store,
    campaign_id: str,
    *,
    max_posts: int = 2_000,
    coordination: CoordinatorSettings | None = None,
) -> dict[str, Any] | None:
    """Everything the campaign view shows: scores, members with their activity, links, timeline.

    ``max_posts`` bounds the timeline and the posts links are inferred from (the members' first
    posts); ``coordination`` is the ``[coordinator]`` configuration those links are computed with
    (its defaults when None). ``None`` when the campaign does not exist.
    """
    with store.engine.connect() as conn:
        campaign = conn.execute(sa.select(campaigns_t).where(campaigns_t.c.campaign_id == campaign_id)).first()
        if campaign is None:
            return None
        members = read_rows(
            conn,
            sa.select(members_t.c.account_id, members_t.c.weight, members_t.c.evidence)
            .where(members_t.c.campaign_id == campaign_id)
            .order_by(members_t.c.account_id),
        )
        member_ids = sa.select(members_t.c.account_id).where(members_t.c.campaign_id == campaign_id)
        stats = read_frame(
            conn,
            sa.select(
                posts_t.c.account_id,
                sa.func.count().label("posts"),
                sa.func.min(posts_t.c.created_at).label("first_post"),
                sa.func.max(posts_t.c.created_at).label("last_post"),
            )
            .where(posts_t.c.account_id.in_(member_ids))
            .group_by(posts_t.c.account_id),
        )
        flag_stats = read_rows(
            conn,
            sa.select(flags_t.c.account_id, flags_t.c.status, sa.func.count().label("n"))
            .where(flags_t.c.account_id.in_(member_ids))
            .group_by(flags_t.c.account_id, flags_t.c.status),
        )
        timeline = read_frame(
            conn,
            sa.select(
                *json_as_text(
                    posts_t.c.post_id, posts_t.c.account_id, posts_t.c.created_at, posts_t.c.urls, posts_t.c.hashtags
                ),
                sa.func.substr(posts_t.c.text, 1, 200).label("preview"),
            )
            .where(posts_t.c.account_id.in_(member_ids))
            .order_by(posts_t.c.created_at, posts_t.c.post_id)
            .limit(max_posts),
        )
        campaign_row = dict(campaign._mapping)
        edges = campaign_edges(campaign_row.get("summary") or {}, members)
        if not edges:
            edges = inferred_edges(_member_posts(conn, member_ids, max_posts), coordination)
    return {
        "campaign": campaign_row,
        "members": members,
        "member_stats": stats,
        "member_flags": flag_stats,
        "edges": edges,
        "timeline": timeline,
        "decisions": decision_history(store, subject_type="campaign", subject_ids=[campaign_id], limit=200),
    }


def _member_posts(conn: Connection, member_ids: sa.Select[Any], max_posts: int) -> pl.DataFrame:
    """The members' posts with every column a co-action network reads (whole texts: read only to infer links)."""
    return read_frame(
        conn,
        sa.select(
            *json_as_text(
                posts_t.c.post_id,
                posts_t.c.account_id,
                posts_t.c.created_at,
                posts_t.c.text,
                posts_t.c.reply_to,
                posts_t.c.repost_of,
                posts_t.c.urls,
                posts_t.c.hashtags,
            )
        )
        .where(posts_t.c.account_id.in_(member_ids))
        .order_by(posts_t.c.created_at, posts_t.c.post_id)
        .limit(max_posts),
    )
