"""The work queues: flags and campaigns filtered, sorted and paginated in SQL, with their SLA clocks.

In SQL, not in polars, so a page of a 100,000-flag queue is one indexed query; filters are frozen
dataclasses of tuples so the console can key its cache on them. Ages are seconds since the case
was raised (the SLA clock): ``age_s`` and ``sla_left_s`` (negative: overdue) on every row.

A flag row also says how far its score is over its detector's threshold (``margin``, the score
minus the threshold: the "largest margin first" order puts detectors whose scores live on
different scales side by side) and how many automated actions are in force on its post
(``actions_in_force``, read from the policies' actions with :func:`stream.policy.actions.in_force_count`).
The default filter is every undecided case, escalated ones included; ``search`` finds a post id,
a flag id, an account id or a piece of the text.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import polars as pl
import sqlalchemy as sa

from stream.policy.actions import in_force_count
from stream.review.cases import unique
from stream.review.vocabulary import DEFAULT_SLA, UNDECIDED
from stream.store.database import Store
from stream.store.reading import QueuePage, json_as_text, read_frame
from stream.store.reviewers import Reviewer
from stream.store.tables import TABLES, utcnow

posts_t = TABLES["posts"]
flags_t = TABLES["flags"]
campaigns_t = TABLES["campaigns"]
members_t = TABLES["campaign_members"]


@dataclass(frozen=True)
class FlagFilter:
    """What the flag queue shows. Frozen and made of tuples so it can key a cache.

    ``assignee``: a name, or ``""`` for unassigned only, or None for anyone. Ages are seconds
    since the flag was raised (the SLA clock). ``statuses`` defaults to every undecided state,
    escalated included. ``search``: see :func:`search_condition`.
    """

    statuses: tuple[str, ...] = UNDECIDED
    detectors: tuple[str, ...] = ()
    langs: tuple[str, ...] = ()
    account: str = ""
    assignee: str | None = None
    min_score: float | None = None
    max_score: float | None = None
    min_age_s: float | None = None
    max_age_s: float | None = None
    search: str = ""
    sort: str = "score"


#: How far a flag's score is over its detector's threshold (NULL without a threshold).
MARGIN = (flags_t.c.score - flags_t.c.threshold).label("margin")

#: Queue orders: name -> (label, ORDER BY). Ties break on flag_id so pages never overlap.
FLAG_SORTS: dict[str, tuple[str, tuple[Any, ...]]] = {
    "score": ("highest score first", (flags_t.c.score.desc(), flags_t.c.flagged_at.asc())),
    # Raw scores of two detectors need not share a scale; their margins over their own thresholds
    # compare better. Flags without a threshold come last on both dialects.
    "margin": (
        "largest margin over the threshold first",
        ((flags_t.c.score - flags_t.c.threshold).desc().nulls_last(), flags_t.c.flagged_at.asc()),
    ),
    "oldest": ("oldest flag first (SLA)", (flags_t.c.flagged_at.asc(),)),
    "newest": ("newest flag first", (flags_t.c.flagged_at.desc(),)),
    "post_newest": ("newest post first", (flags_t.c.post_created_at.desc(),)),
    "account": ("account", (flags_t.c.account_id.asc(), flags_t.c.flagged_at.asc())),
}


def search_condition(text: str) -> Any | None:
    """The queue's search box: the flags whose post id, flag id or account id is ``text`` exactly, or
    whose post's text contains it (any case; ``%`` and ``_`` are plain characters). None for blank.
    """
    query = text.strip()
    if not query:
        return None
    return sa.or_(
        flags_t.c.post_id == query,
        flags_t.c.flag_id == query,
        flags_t.c.account_id == query,
        flags_t.c.post_id.in_(sa.select(posts_t.c.post_id).where(posts_t.c.text.icontains(query, autoescape=True))),
    )


def _flag_conditions(flt: FlagFilter, now: datetime) -> list[Any]:
    conditions: list[Any] = []
    if flt.statuses:
        conditions.append(flags_t.c.status.in_(flt.statuses))
    if flt.detectors:
        conditions.append(flags_t.c.detector.in_(flt.detectors))
    if flt.langs:
        conditions.append(flags_t.c.post_id.in_(sa.select(posts_t.c.post_id).where(posts_t.c.lang.in_(flt.langs))))
    if flt.account.strip():
        conditions.append(flags_t.c.account_id.startswith(flt.account.strip(), autoescape=True))
    if flt.assignee == "":
        conditions.append(flags_t.c.assignee.is_(None))
    elif flt.assignee is not None:
        conditions.append(flags_t.c.assignee == flt.assignee)
    if flt.min_score is not None:
        conditions.append(flags_t.c.score >= flt.min_score)
    if flt.max_score is not None:
        conditions.append(flags_t.c.score <= flt.max_score)
    if flt.min_age_s is not None:
        conditions.append(flags_t.c.flagged_at <= now - timedelta(seconds=flt.min_age_s))
    if flt.max_age_s is not None:
        conditions.append(flags_t.c.flagged_at >= now - timedelta(seconds=flt.max_age_s))
    search = search_condition(flt.search)
    if search is not None:
        conditions.append(search)
    return conditions


def flag_queue(
    store: Store,
    flt: FlagFilter = FlagFilter(),
    *,
    limit: int = 50,
    offset: int = 0,
    sla: timedelta = DEFAULT_SLA,
    now: datetime | None = None,
) -> QueuePage:
    """A page of flagged posts: filtered, sorted and paginated in SQL, so 100,000 flags stay fast.

    Adds ``margin`` (score minus threshold), ``actions_in_force`` (automated actions the platform
    applies to the post now), ``age_s`` (since flagged), ``sla_left_s`` (negative: overdue) and a
    ``preview`` of the post's text (first 200 characters; display it as text, never as markup).
    """
    if flt.sort not in FLAG_SORTS:
        raise ValueError(f"unknown sort {flt.sort!r}; use one of {', '.join(FLAG_SORTS)}")
    now = now or utcnow()
    conditions = _flag_conditions(flt, now)
    columns = json_as_text(
        flags_t.c.flag_id,
        flags_t.c.post_id,
        flags_t.c.account_id,
        flags_t.c.detector,
        flags_t.c.score,
        flags_t.c.probability,
        flags_t.c.threshold_name,
        flags_t.c.threshold,
        flags_t.c.status,
        flags_t.c.assignee,
        flags_t.c.claimed_at,
        flags_t.c.flagged_at,
        flags_t.c.post_created_at,
        posts_t.c.lang,
    )
    order = (*FLAG_SORTS[flt.sort][1], flags_t.c.flag_id)
    # Page on the flags table alone, then join the page's posts: the skipped rows of a deep
    # page are never joined (10x faster at offset 50,000 of 100,000 on SQLite).
    page = sa.select(flags_t.c.flag_id).where(*conditions).order_by(*order).limit(limit).offset(offset)
    query = (
        sa.select(
            *columns,
            MARGIN,
            in_force_count(flags_t.c.post_id).label("actions_in_force"),
            sa.func.substr(posts_t.c.text, 1, 200).label("preview"),
        )
        .select_from(flags_t.outerjoin(posts_t, posts_t.c.post_id == flags_t.c.post_id))
        .where(flags_t.c.flag_id.in_(page.scalar_subquery()))
        .order_by(*order)
    )
    count = sa.select(sa.func.count()).select_from(flags_t).where(*conditions)
    with store.engine.connect() as conn:
        frame = read_frame(conn, query)
        total = int(conn.execute(count).scalar_one())
    return QueuePage(_with_ages(frame, "flagged_at", now, sla), total, offset, limit)


def _with_ages(frame: pl.DataFrame, column: str, now: datetime, sla: timedelta) -> pl.DataFrame:
    age = (pl.lit(now) - pl.col(column)).dt.total_seconds()
    return frame.with_columns(age_s=age, sla_left_s=sla.total_seconds() - age)


def next_flag(
    store: Store, reviewer: Reviewer, flt: FlagFilter = FlagFilter(), *, exclude: Iterable[str] = ()
) -> str | None:
    """The next flag this reviewer can decide, in the queue's order: theirs, or an unassigned one.

    "Submit and next" calls this after a decision; escalated flags come only to leads.
    """
    mine_or_free = sa.or_(
        flags_t.c.assignee == reviewer.name,
        sa.and_(flags_t.c.assignee.is_(None), flags_t.c.status == "open"),
        *([sa.and_(flags_t.c.assignee.is_(None), flags_t.c.status == "escalated")] if reviewer.is_lead else []),
    )
    statuses = flt.statuses or UNDECIDED
    undecided = [s for s in statuses if s in UNDECIDED]
    conditions = [*_flag_conditions(replace(flt, statuses=tuple(undecided)), utcnow()), mine_or_free]
    skip = unique(exclude)
    if skip:
        conditions.append(flags_t.c.flag_id.not_in(skip))
    query = (
        sa.select(flags_t.c.flag_id)
        .where(*conditions)
        .order_by(*FLAG_SORTS.get(flt.sort, FLAG_SORTS["score"])[1], flags_t.c.flag_id)
        .limit(1)
    )
    with store.engine.connect() as conn:
        return conn.execute(query).scalar()


@dataclass(frozen=True)
class CampaignFilter:
    """What the campaign queue shows (see :class:`FlagFilter`)."""

    statuses: tuple[str, ...] = ("open", "claimed")
    min_score: float | None = None
    min_size: int | None = None
    assignee: str | None = None
    account: str = ""
    sort: str = "score"


CAMPAIGN_SORTS: dict[str, tuple[str, tuple[Any, ...]]] = {
    "score": ("highest score first", (campaigns_t.c.score.desc(),)),
    "size": ("largest first", (campaigns_t.c.size.desc(),)),
    "oldest": ("oldest activity first (SLA)", (campaigns_t.c.first_seen.asc(),)),
    "recent": ("most recently active first", (campaigns_t.c.last_seen.desc(),)),
}


#: The campaign queue's stored columns, in the order both orders of the queue show them.
CAMPAIGN_COLUMNS = (
    campaigns_t.c.campaign_id,
    campaigns_t.c.score,
    campaigns_t.c.size,
    campaigns_t.c.first_seen,
    campaigns_t.c.last_seen,
    campaigns_t.c.status,
    campaigns_t.c.assignee,
    campaigns_t.c.updated_at,
)


def undecided_member_flags() -> Any:
    """``open_flags``: how many undecided flags the members of each campaign row have (a subquery correlated
    with ``campaigns``; a COUNT, so typed Int64 even on an empty page)."""
    return (
        sa.select(sa.func.count())
        .select_from(flags_t.join(members_t, members_t.c.account_id == flags_t.c.account_id))
        .where(members_t.c.campaign_id == campaigns_t.c.campaign_id, flags_t.c.status.in_(UNDECIDED))
        .correlate(campaigns_t)
        .scalar_subquery()
        .label("open_flags")
    )


def campaign_conditions(flt: CampaignFilter) -> list[Any]:
    """The campaign queue's filter as SQL conditions on ``campaigns``: one place for both orders of the
    queue (:func:`campaign_queue` and :func:`stream.review.campaigns.ranked_campaign_queue`), so a filter
    never means one thing sorted by score and another ranked."""
    conditions: list[Any] = []
    if flt.statuses:
        conditions.append(campaigns_t.c.status.in_(flt.statuses))
    if flt.min_score is not None:
        conditions.append(campaigns_t.c.score >= flt.min_score)
    if flt.min_size is not None:
        conditions.append(campaigns_t.c.size >= flt.min_size)
    if flt.assignee == "":
        conditions.append(campaigns_t.c.assignee.is_(None))
    elif flt.assignee is not None:
        conditions.append(campaigns_t.c.assignee == flt.assignee)
    if flt.account.strip():
        conditions.append(
            campaigns_t.c.campaign_id.in_(
                sa.select(members_t.c.campaign_id).where(
                    members_t.c.account_id.startswith(flt.account.strip(), autoescape=True)
                )
            )
        )
    return conditions


def campaign_queue(
    store: Store,
    flt: CampaignFilter = CampaignFilter(),
    *,
    limit: int = 50,
    offset: int = 0,
    sla: timedelta = DEFAULT_SLA,
    now: datetime | None = None,
) -> QueuePage:
    """A page of campaigns with their undecided member flags; the SLA clock runs from ``first_seen``."""
    if flt.sort not in CAMPAIGN_SORTS:
        raise ValueError(f"unknown sort {flt.sort!r}; use one of {', '.join(CAMPAIGN_SORTS)}")
    now = now or utcnow()
    conditions = campaign_conditions(flt)
    columns = json_as_text(*CAMPAIGN_COLUMNS, campaigns_t.c.summary)
    query = (
        sa.select(*columns, undecided_member_flags())
        .where(*conditions)
        .order_by(*CAMPAIGN_SORTS[flt.sort][1], campaigns_t.c.campaign_id)
        .limit(limit)
        .offset(offset)
    )
    count = sa.select(sa.func.count()).select_from(campaigns_t).where(*conditions)
    with store.engine.connect() as conn:
        frame = read_frame(conn, query)  # open_flags is a COUNT: typed Int64 even on an empty page
        total = int(conn.execute(count).scalar_one())
    return QueuePage(_with_ages(frame, "first_seen", now, sla), total, offset, limit)


def facets(store: Store) -> dict[str, list[str]]:
    """Values the queue filters offer: detectors with flags, languages of flagged posts."""
    with store.engine.connect() as conn:
        detectors = list(conn.execute(sa.select(flags_t.c.detector).distinct().order_by(flags_t.c.detector)).scalars())
        langs = list(
            conn.execute(
                sa.select(posts_t.c.lang)
                .where(posts_t.c.lang.is_not(None), posts_t.c.post_id.in_(sa.select(flags_t.c.post_id)))
                .distinct()
                .order_by(posts_t.c.lang)
            ).scalars()
        )
    return {"detectors": detectors, "langs": langs}


def queue_sizes(store: Store, *, sla: timedelta = DEFAULT_SLA, now: datetime | None = None) -> dict[str, Any]:
    """Cases by status for flags and campaigns, and how many undecided flags are past the SLA."""
    now = now or utcnow()
    with store.engine.connect() as conn:
        flag_counts = dict(conn.execute(sa.select(flags_t.c.status, sa.func.count()).group_by(flags_t.c.status)).all())
        campaign_counts = dict(
            conn.execute(sa.select(campaigns_t.c.status, sa.func.count()).group_by(campaigns_t.c.status)).all()
        )
        overdue = conn.execute(
            sa.select(sa.func.count())
            .select_from(flags_t)
            .where(flags_t.c.status.in_(UNDECIDED), flags_t.c.flagged_at < now - sla)
        ).scalar_one()
    return {"flags": flag_counts, "campaigns": campaign_counts, "overdue_flags": int(overdue)}
