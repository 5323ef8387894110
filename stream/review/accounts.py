"""Reading one account for review: its aggregate (with the machine share policies act on), posts, campaigns.

An analyst judging a post needs the account behind it: how much it posts, how often it is
flagged, and the number a policy's account rule read when it limited the account.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import sqlalchemy as sa

from detectors.policy import ACCOUNT_WINDOW
from stream.store.database import Store
from stream.store.reading import read_rows, utc_datetime
from stream.store.tables import TABLES

posts_t = TABLES["posts"]
results_t = TABLES["detector_results"]
flags_t = TABLES["flags"]
campaigns_t = TABLES["campaigns"]
members_t = TABLES["campaign_members"]


def account_summary(store: Store, account_id: str, window: int = ACCOUNT_WINDOW) -> dict[str, Any]:
    """An account's aggregate: posts, flags by status, per detector its mean score and machine share, campaigns.

    The machine share is the estimate the account rules of a policy act on (``account = "lower"``
    in a policy file): the mean calibrated probability of the account's ``window`` most recent
    scored posts, with a 95% Wilson interval (:class:`detectors.policy.AccountWindows`). An analyst
    looking at a rate-limited account sees the number that limited it; a detector without
    probabilities has none (``None``). The engine keeps its window in memory in arrival order and
    starts afresh after a partition moves; this one is read from the store by post time, so the two
    agree while posts arrive in time order.
    """
    from detectors.aitext.aggregate import wilson_interval

    recent = (
        sa.select(
            results_t.c.detector,
            results_t.c.probability,
            sa.func.row_number()
            .over(partition_by=results_t.c.detector, order_by=(posts_t.c.created_at.desc(), posts_t.c.post_id.desc()))
            .label("recency"),
        )
        .join(posts_t, posts_t.c.post_id == results_t.c.post_id)
        .where(posts_t.c.account_id == account_id, results_t.c.probability.is_not(None))
        .subquery()
    )
    with store.engine.connect() as conn:
        posts_row = conn.execute(
            sa.select(sa.func.count(), sa.func.min(posts_t.c.created_at), sa.func.max(posts_t.c.created_at)).where(
                posts_t.c.account_id == account_id
            )
        ).one()
        flag_counts = dict(
            conn.execute(
                sa.select(flags_t.c.status, sa.func.count())
                .where(flags_t.c.account_id == account_id)
                .group_by(flags_t.c.status)
            ).all()
        )
        scores = read_rows(
            conn,
            sa.select(
                results_t.c.detector,
                sa.func.count().label("posts"),
                sa.func.avg(results_t.c.score).label("mean_score"),
                sa.func.sum(sa.case((results_t.c.flagged == sa.true(), 1), else_=0)).label("flagged"),
            )
            .join(posts_t, posts_t.c.post_id == results_t.c.post_id)
            .where(posts_t.c.account_id == account_id)
            .group_by(results_t.c.detector)
            .order_by(results_t.c.detector),
        )
        share_query = (
            sa.select(recent.c.detector, sa.func.count().label("n"), sa.func.sum(recent.c.probability).label("total"))
            .where(recent.c.recency <= window)
            .group_by(recent.c.detector)
        )
        shares = {row.detector: (int(row.n), float(row.total)) for row in conn.execute(share_query)}
    for row in scores:
        n, total = shares.get(row["detector"], (0, 0.0))
        lower, upper = wilson_interval(total, n) if n else (None, None)
        row |= {"recent_posts": n, "machine_share": total / n if n else None}
        row |= {"share_lower": lower, "share_upper": upper}
    return {
        "account_id": account_id,
        "posts": int(posts_row[0]),
        "first_post": utc_datetime(posts_row[1]),
        "last_post": utc_datetime(posts_row[2]),
        "flags": flag_counts,
        "detectors": scores,
        "campaigns": campaigns_of_account(store, account_id),
    }


def campaigns_of_account(store: Store, account_id: str) -> list[dict[str, Any]]:
    """The campaigns an account belongs to, best score first."""
    query = (
        sa.select(
            campaigns_t.c.campaign_id, campaigns_t.c.score, campaigns_t.c.size, campaigns_t.c.status, members_t.c.weight
        )
        .join(members_t, members_t.c.campaign_id == campaigns_t.c.campaign_id)
        .where(members_t.c.account_id == account_id)
        .order_by(campaigns_t.c.score.desc(), campaigns_t.c.campaign_id)
    )
    with store.engine.connect() as conn:
        return read_rows(conn, query)


def account_posts(store: Store, account_id: str, *, limit: int = 50) -> pl.DataFrame:
    """An account's latest posts with their highest detector score (text: display as text)."""
    top = (
        sa.select(results_t.c.post_id, sa.func.max(results_t.c.score).label("max_score"))
        .group_by(results_t.c.post_id)
        .subquery()
    )
    query = (
        sa.select(
            posts_t.c.post_id,
            posts_t.c.created_at,
            sa.func.substr(posts_t.c.text, 1, 200).label("preview"),
            top.c.max_score,
        )
        .outerjoin(top, top.c.post_id == posts_t.c.post_id)
        .where(posts_t.c.account_id == account_id)
        .order_by(posts_t.c.created_at.desc(), posts_t.c.post_id)
        .limit(limit)
    )
    with store.engine.connect() as conn:
        return pl.read_database(
            query,
            conn,
            infer_schema_length=None,
            schema_overrides={
                "post_id": pl.String(),
                "created_at": pl.Datetime("us", "UTC"),
                "preview": pl.String(),
                "max_score": pl.Float64(),
            },
        )
