"""Reading campaigns for review: the ranked campaign queue, and one campaign's scores, members, links, timeline.

Campaigns are written by the coordination stage (``campaigns``, ``campaign_members``); the links
come from the evidence it stored or, when it stored none, are computed from the members' posts
(:mod:`stream.review.edges`).

**The rank** (:func:`campaign_rank`, and :func:`ranked_campaign_queue`, the campaign queue in that
order) puts the campaigns that are most coordinated *and* most machine-written first:

    rank = coordination * machine

* ``coordination``: the campaign's ``score`` from the coordination stage (density * synchrony: how
  many member pairs are linked, and how tightly in time they act), or its stored ``density`` when
  it has no score, or 0;
* ``machine``: the mean probability that the members' posts are machine-written: the stage's
  ``summary.machine_share`` when it stored one, else the mean of the calibrated probabilities the
  detectors wrote for the members' posts (``detector_results.probability``; one detector's only
  when ``detector`` is given, as ``[coordinator] machine_detector`` does), else
  :data:`UNKNOWN_MACHINE` (no evidence either way).

Both are in [0, 1], and a product is high only when both are: a tight network of people sharing a
link ranks below the same network posting machine text, and a loose group of machine-written
accounts below a tight one. It orders the queue in SQL, so paging stays one indexed query.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from stream.config import CoordinatorSettings
from stream.review.edges import account_pairs, campaign_edges, evidence_post_ids, inferred_edges, link_coverage
from stream.review.history import decision_history
from stream.review.queues import (
    CAMPAIGN_COLUMNS,
    CAMPAIGN_SORTS,
    CampaignFilter,
    campaign_conditions,
    undecided_member_flags,
)
from stream.review.vocabulary import DEFAULT_SLA
from stream.store.database import Store
from stream.store.reading import QueuePage, json_as_text, read_frame, read_rows
from stream.store.tables import TABLES, utcnow

posts_t = TABLES["posts"]
flags_t = TABLES["flags"]
campaigns_t = TABLES["campaigns"]
members_t = TABLES["campaign_members"]
results_t = TABLES["detector_results"]

#: ``machine`` of a campaign with no machine-written probability at all: as likely as not.
UNKNOWN_MACHINE = 0.5
#: The campaign queue's default order (see the module docstring), beside the SQL sorts of
#: :data:`stream.review.queues.CAMPAIGN_SORTS`.
RANK_SORT = "rank"
CAMPAIGN_ORDERS: dict[str, str] = {
    RANK_SORT: "most coordinated and machine-written first",
    **{key: label for key, (label, _) in CAMPAIGN_SORTS.items()},
}
#: The campaign queue's default filter in rank order.
RANKED = CampaignFilter(sort=RANK_SORT)


def campaign_detail(
    store: Store,
    campaign_id: str,
    *,
    max_posts: int = 2_000,
    coordination: CoordinatorSettings | None = None,
) -> dict[str, Any] | None:
    """Everything the campaign view shows: scores, members with their activity, links, timeline.

    ``edges`` are the links as stored (one per co-action type; the graph draws them), ``pairs``
    the same links per pair of accounts with each pair of matched posts once
    (:func:`~stream.review.edges.account_pairs`), ``coverage`` how many of the campaign's links
    they are (:func:`~stream.review.edges.link_coverage`, with the stage's ``summary_edges`` cap).
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
        inferred = not edges
        if inferred:
            edges = inferred_edges(_member_posts(conn, member_ids, max_posts), coordination)
        post_accounts = _post_accounts(conn, evidence_post_ids(edges))
    coverage = link_coverage(
        edges,
        [m["account_id"] for m in members],
        campaign_row.get("summary"),
        cap=(coordination or CoordinatorSettings()).summary_edges,
        inferred=inferred,
    )
    return {
        "campaign": campaign_row,
        "members": members,
        "member_stats": stats,
        "member_flags": flag_stats,
        "edges": edges,
        "pairs": account_pairs(edges, post_accounts),
        "coverage": coverage,
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


def _post_accounts(conn: Connection, post_ids: Sequence[str]) -> dict[str, str]:
    """post id -> account id, for the posts the evidence names (to orient each matched pair)."""
    out: dict[str, str] = {}
    for start in range(0, len(post_ids), 500):  # bounded IN lists
        chunk = list(post_ids[start : start + 500])
        query = sa.select(posts_t.c.post_id, posts_t.c.account_id).where(posts_t.c.post_id.in_(chunk))
        out.update({post_id: account_id for post_id, account_id in conn.execute(query)})
    return out


# ---------------------------------------------------------------------------------------------
# The campaign queue, most coordinated and machine-written first


@dataclass(frozen=True)
class RankParts:
    """A campaign's place in the queue and what it is made of (see the module docstring)."""

    coordination: float
    machine: float
    machine_known: bool

    @property
    def rank(self) -> float:
        return self.coordination * self.machine


def campaign_rank(score: float | None, density: float | None = None, machine_share: float | None = None) -> RankParts:
    """The rank of one campaign from its stored ``score``, ``density`` and the members' machine share.

    The pure form of the order :func:`ranked_campaign_queue` sorts by in SQL (the tests hold the two
    together): ``coordination`` = ``score``, else ``density``, else 0; ``machine`` = the share, else
    :data:`UNKNOWN_MACHINE`; rank = their product.
    """
    coordination = score if score is not None else density if density is not None else 0.0
    known = machine_share is not None
    return RankParts(float(coordination), float(machine_share) if known else UNKNOWN_MACHINE, known)


def _summary_number(store: Store, key: str) -> Any:
    """``campaigns.summary[key]`` as a float in SQL, NULL when absent or not a number (never an error)."""
    value = campaigns_t.c.summary[key]
    if store.dialect == "postgresql":
        kind = sa.func.jsonb_typeof(value)
        return sa.case((kind == "number", value.as_float()), else_=None)
    kind = sa.func.json_type(campaigns_t.c.summary, f'$."{key}"')
    return sa.case((kind.in_(("real", "integer")), value.as_float()), else_=None)


def _rank_columns(store: Store, detector: str | None) -> tuple[Any, Any, Any]:
    """SQL for ``coordination``, ``machine`` (NULL when unknown) and ``rank`` of each campaign row."""
    coordination = sa.func.coalesce(campaigns_t.c.score, _summary_number(store, "density"), 0.0)
    conditions = [members_t.c.campaign_id == campaigns_t.c.campaign_id, results_t.c.probability.is_not(None)]
    if detector is not None:
        conditions.append(results_t.c.detector == detector)
    mean_probability = (
        sa.select(sa.func.avg(results_t.c.probability))
        .select_from(
            members_t.join(posts_t, posts_t.c.account_id == members_t.c.account_id).join(
                results_t, results_t.c.post_id == posts_t.c.post_id
            )
        )
        .where(*conditions)
        .correlate(campaigns_t)
        .scalar_subquery()
    )
    machine = sa.func.coalesce(_summary_number(store, "machine_share"), mean_probability)
    rank = coordination * sa.func.coalesce(machine, UNKNOWN_MACHINE)
    return coordination, machine, rank


def ranked_campaign_queue(
    store: Store,
    flt: CampaignFilter = RANKED,
    *,
    limit: int = 50,
    offset: int = 0,
    sla: timedelta = DEFAULT_SLA,
    now: datetime | None = None,
    detector: str | None = None,
) -> QueuePage:
    """A page of the campaign queue with each campaign's rank, in ``flt.sort`` order (``"rank"``: the rank).

    The rows of :func:`stream.review.queues.campaign_queue` (without the stored ``summary``) plus
    ``coordination``, ``machine`` (null when unknown) and ``rank`` (module docstring); the other
    sorts are :data:`~stream.review.queues.CAMPAIGN_SORTS`'. ``detector`` restricts the members'
    probabilities to one detector's. Ties go to the larger campaign, then by id.
    """
    if flt.sort not in CAMPAIGN_ORDERS:
        raise ValueError(f"unknown sort {flt.sort!r}; use one of {', '.join(CAMPAIGN_ORDERS)}")
    now = now or utcnow()
    conditions = campaign_conditions(flt)
    coordination, machine, rank = _rank_columns(store, detector)
    order = (
        (sa.desc("rank"), campaigns_t.c.size.desc().nulls_last())
        if flt.sort == RANK_SORT
        else CAMPAIGN_SORTS[flt.sort][1]
    )
    query = (
        sa.select(
            *CAMPAIGN_COLUMNS,
            undecided_member_flags(),
            sa.cast(coordination, sa.Float).label("coordination"),
            sa.cast(machine, sa.Float).label("machine"),
            sa.cast(rank, sa.Float).label("rank"),
        )
        .where(*conditions)
        .order_by(*order, campaigns_t.c.campaign_id)
        .limit(limit)
        .offset(offset)
    )
    count = sa.select(sa.func.count()).select_from(campaigns_t).where(*conditions)
    with store.engine.connect() as conn:
        frame = read_frame(conn, query)
        total = int(conn.execute(count).scalar_one())
    age = (pl.lit(now) - pl.col("first_seen")).dt.total_seconds()
    frame = frame.with_columns(age_s=age, sla_left_s=sla.total_seconds() - age)
    return QueuePage(frame, total, offset, limit)
