"""One account, everything about it: what the console's account page shows (modelled on Ozone's account view).

An analyst deciding about an account (a suspension, an appeal against a label) needs its whole record
in one place: its posts with their flags and probabilities, its flags by status and detector, how its
machine share moved day by day, the campaigns it belongs to, what the policies did to its posts on
their own and whether that still stands, every review decision on it and the audit entries behind them.

Each function is one query (or two) over a :class:`~stream.store.database.Store`, filtered in SQL by
the indexed ``account_id`` columns; account-wide lists are subqueries, never id lists carried through
Python. Frames have fixed columns and dtypes (empty ones too). Post text, ids and decision statements
are whatever someone wrote: callers display them as text. Read only.

* :func:`account_counts` — the header: posts, flags, decisions, automated actions, campaigns;
* :func:`account_flags` — flags by detector and status;
* :func:`account_post_page` — posts newest first, a page at a time, each with its flags and probability;
* :func:`machine_share_by_day` — the mean calibrated probability per UTC day with a 95% Wilson interval;
* :func:`account_campaigns` — the campaigns it belongs to, with their size and score;
* :func:`account_actions` — the automated actions on its posts: in force or why not, and why taken;
* :func:`account_decisions` — every review decision on its flags, posts, itself and its campaigns;
* :func:`account_audit` — the audit entries about it, its posts, flags and automated actions.

The short aggregate the post view shows (machine share of the last posts, the number a policy's
account rule reads) stays in :mod:`~stream.review.accounts`.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import sqlalchemy as sa

from stream.policy.actions import AUDIT_ACTION_SUBJECT, in_force, why_not_in_force
from stream.review.vocabulary import UNDECIDED
from stream.store.database import Store
from stream.store.reading import QueuePage, chunks, json_as_text, json_object, read_frame, utc_datetime
from stream.store.tables import TABLES

posts_t = TABLES["posts"]
results_t = TABLES["detector_results"]
flags_t = TABLES["flags"]
campaigns_t = TABLES["campaigns"]
members_t = TABLES["campaign_members"]
actions_t = TABLES["policy_actions"]
decisions_t = TABLES["review_decisions"]
audit_t = TABLES["audit_log"]

#: Rows of the decisions, actions and audit lists read at most (newest first); the page says when cut.
LIST_LIMIT = 500
#: Characters of each post's text in the posts list.
PREVIEW_CHARS = 200
#: Confidence of the daily machine-share interval.
SHARE_CONFIDENCE = 0.95


def _post_ids(account_id: str) -> sa.Select[Any]:
    return sa.select(posts_t.c.post_id).where(posts_t.c.account_id == account_id)


def _flag_ids(account_id: str) -> sa.Select[Any]:
    return sa.select(flags_t.c.flag_id).where(flags_t.c.account_id == account_id)


def _campaign_ids(account_id: str) -> sa.Select[Any]:
    return sa.select(members_t.c.campaign_id).where(members_t.c.account_id == account_id)


def _action_ids(account_id: str) -> sa.Select[Any]:
    return sa.select(actions_t.c.action_id).where(actions_t.c.account_id == account_id)


def account_counts(store: Store, account_id: str) -> dict[str, Any]:
    """The page's header: how much there is about the account (all zero: the store does not know it).

    Keys: ``posts``, ``first_post``, ``last_post`` (UTC), ``flags``, ``undecided_flags``,
    ``flags_by_status`` (status -> count), ``campaigns``, ``actions``, ``actions_in_force``,
    ``decisions`` (on its flags, posts, itself and its campaigns, reversals included), ``known``.
    """
    decisions = sa.select(sa.func.count()).select_from(decisions_t).where(_decisions_about(account_id))
    with store.engine.connect() as conn:
        posts, first, last = conn.execute(
            sa.select(sa.func.count(), sa.func.min(posts_t.c.created_at), sa.func.max(posts_t.c.created_at)).where(
                posts_t.c.account_id == account_id
            )
        ).one()
        by_status = {
            status: int(n)
            for status, n in conn.execute(
                sa.select(flags_t.c.status, sa.func.count())
                .where(flags_t.c.account_id == account_id)
                .group_by(flags_t.c.status)
                .order_by(flags_t.c.status)
            )
        }
        campaigns = conn.execute(sa.select(sa.func.count()).select_from(_campaign_ids(account_id).subquery())).scalar()
        actions, live = conn.execute(
            sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(sa.case((in_force(), 1), else_=0)), 0)).where(
                actions_t.c.account_id == account_id
            )
        ).one()
        n_decisions = conn.execute(decisions).scalar()
    counts = {
        "account_id": account_id,
        "posts": int(posts),
        "first_post": utc_datetime(first),
        "last_post": utc_datetime(last),
        "flags": sum(by_status.values()),
        "undecided_flags": sum(n for status, n in by_status.items() if status in UNDECIDED),
        "flags_by_status": by_status,
        "campaigns": int(campaigns or 0),
        "actions": int(actions),
        "actions_in_force": int(live),
        "decisions": int(n_decisions or 0),
    }
    counts["known"] = bool(counts["posts"] or counts["flags"] or counts["campaigns"] or counts["actions"])
    return counts


def account_flags(store: Store, account_id: str) -> pl.DataFrame:
    """Flags by detector and status: ``detector, status, flags, mean_score, first_flagged, last_flagged``."""
    query = (
        sa.select(
            flags_t.c.detector,
            flags_t.c.status,
            sa.func.count().label("flags"),
            sa.cast(sa.func.avg(flags_t.c.score), sa.Float).label("mean_score"),
            sa.func.min(flags_t.c.flagged_at).label("first_flagged"),
            sa.func.max(flags_t.c.flagged_at).label("last_flagged"),
        )
        .where(flags_t.c.account_id == account_id)
        .group_by(flags_t.c.detector, flags_t.c.status)
        .order_by(flags_t.c.detector, flags_t.c.status)
    )
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    return pl.DataFrame(
        [(r[0], r[1], int(r[2]), r[3], utc_datetime(r[4]), utc_datetime(r[5])) for r in rows],
        schema={"detector": pl.String, "status": pl.String, "flags": pl.Int64, "mean_score": pl.Float64,
                "first_flagged": pl.Datetime("us", "UTC"), "last_flagged": pl.Datetime("us", "UTC")},
        orient="row",
    )  # fmt: skip


_POST_PAGE_SCHEMA = {
    "post_id": pl.String, "created_at": pl.Datetime("us", "UTC"), "lang": pl.String, "preview": pl.String,
    "flags": pl.String, "undecided_flags": pl.Int64, "probability": pl.Float64, "probability_detector": pl.String,
    "max_score": pl.Float64, "actions_in_force": pl.Int64,
}  # fmt: skip


def account_post_page(store: Store, account_id: str, *, limit: int = 50, offset: int = 0) -> QueuePage:
    """The account's posts, newest first, ``limit`` from ``offset``, with the total.

    Per post: ``flags`` (each flag as ``detector: status``, by detector; empty when none),
    ``undecided_flags``, ``probability`` (the highest calibrated probability a detector gave it, and
    which detector in ``probability_detector``; null when no detector's score is a probability),
    ``max_score`` (the highest raw score of any detector), ``actions_in_force`` (automated actions
    the platform applies to it now) and ``preview`` (its first :data:`PREVIEW_CHARS` characters).
    Paged in SQL; the flags, scores and actions are read for the page's posts only.
    """
    page_query = (
        sa.select(
            posts_t.c.post_id,
            posts_t.c.created_at,
            posts_t.c.lang,
            sa.func.substr(posts_t.c.text, 1, PREVIEW_CHARS).label("preview"),
        )
        .where(posts_t.c.account_id == account_id)
        .order_by(posts_t.c.created_at.desc(), posts_t.c.post_id.desc())
        .limit(limit)
        .offset(offset)
    )
    total_query = sa.select(sa.func.count()).select_from(posts_t).where(posts_t.c.account_id == account_id)
    flags: dict[str, list[tuple[str, str]]] = {}
    best: dict[str, tuple[float | None, str | None, float | None]] = {}
    live: dict[str, int] = {}
    with store.engine.connect() as conn:
        page = read_frame(conn, page_query)
        total = int(conn.execute(total_query).scalar_one())
        for chunk in chunks(page["post_id"].to_list()):
            for post_id, detector, status in conn.execute(
                sa.select(flags_t.c.post_id, flags_t.c.detector, flags_t.c.status).where(flags_t.c.post_id.in_(chunk))
            ):
                flags.setdefault(post_id, []).append((detector, status))
            for post_id, detector, score, probability in conn.execute(
                sa.select(results_t.c.post_id, results_t.c.detector, results_t.c.score, results_t.c.probability)
                .where(results_t.c.post_id.in_(chunk))
                .order_by(results_t.c.post_id, results_t.c.detector)
            ):
                p, p_detector, top = best.get(post_id, (None, None, None))
                if probability is not None and (p is None or probability > p):
                    p, p_detector = probability, detector
                if score is not None and (top is None or score > top):
                    top = score
                best[post_id] = (p, p_detector, top)
            live.update(
                conn.execute(
                    sa.select(actions_t.c.post_id, sa.func.count())
                    .where(actions_t.c.post_id.in_(chunk), in_force())
                    .group_by(actions_t.c.post_id)
                ).all()
            )
    rows = []
    for post in page.iter_rows(named=True):
        post_id = post["post_id"]
        on_post = sorted(flags.get(post_id, []))
        probability, detector, top = best.get(post_id, (None, None, None))
        rows.append({
            **post,
            "flags": ", ".join(f"{d}: {s}" for d, s in on_post),
            "undecided_flags": sum(s in UNDECIDED for _, s in on_post),
            "probability": probability,
            "probability_detector": detector,
            "max_score": top,
            "actions_in_force": int(live.get(post_id, 0)),
        })  # fmt: skip
    return QueuePage(pl.DataFrame(rows, schema=_POST_PAGE_SCHEMA), total, offset, limit)


def _utc_day(store: Store, column: Any) -> Any:
    """The UTC calendar day of a timestamp, as ``YYYY-MM-DD`` text, on both dialects."""
    if store.dialect == "postgresql":
        return sa.func.to_char(sa.func.timezone("UTC", column), "YYYY-MM-DD")
    return sa.func.strftime("%Y-%m-%d", column)  # SQLite stores UTC wall-clock text


def machine_share_by_day(store: Store, account_id: str) -> pl.DataFrame:
    """Per UTC day and detector: the mean calibrated probability of the account's posts that day, with its 95% interval.

    Columns: ``day`` (date, UTC), ``detector``, ``posts`` (scored posts that day), ``machine_share``,
    ``share_lower``, ``share_upper``. Only posts a detector scored with a calibrated probability
    count (a detector whose scores are not probabilities has no rows); a post's day is its
    ``created_at`` in UTC.

    The interval is the **Wilson score interval** on the day's mean, the sum of the probabilities
    taken as fractional successes out of the day's posts
    (:func:`detectors.aitext.aggregate.wilson_interval`), the same estimator as the machine share a
    policy's account rules read (:func:`stream.review.accounts.account_summary`), so the chart and
    that number agree in kind. Unlike a normal approximation it stays inside 0-100% and is wide on
    a day of one or two posts, which is the honest reading of so little evidence.
    """
    from detectors.aitext.aggregate import wilson_interval

    day = _utc_day(store, posts_t.c.created_at).label("day")
    query = (
        sa.select(
            day,
            results_t.c.detector,
            sa.func.count().label("posts"),
            sa.cast(sa.func.sum(results_t.c.probability), sa.Float).label("total"),
        )
        .join(posts_t, posts_t.c.post_id == results_t.c.post_id)
        .where(
            posts_t.c.account_id == account_id,
            posts_t.c.created_at.is_not(None),
            results_t.c.probability.is_not(None),
        )
        .group_by(day, results_t.c.detector)
        .order_by(day, results_t.c.detector)
    )
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    out = []
    for day_text, detector, n, total in rows:
        lower, upper = wilson_interval(float(total), int(n), SHARE_CONFIDENCE)
        out.append((day_text, detector, int(n), float(total) / int(n), lower, upper))
    frame = pl.DataFrame(
        out,
        schema={"day": pl.String, "detector": pl.String, "posts": pl.Int64, "machine_share": pl.Float64,
                "share_lower": pl.Float64, "share_upper": pl.Float64},
        orient="row",
    )  # fmt: skip
    return frame.with_columns(pl.col("day").str.to_date("%Y-%m-%d"))


def account_campaigns(store: Store, account_id: str) -> pl.DataFrame:
    """The campaigns the account is a member of, best score first.

    Columns: ``campaign_id, status, size, score, weight`` (the account's weight in it),
    ``first_seen, last_seen``.
    """
    query = (
        sa.select(
            campaigns_t.c.campaign_id,
            campaigns_t.c.status,
            campaigns_t.c.size,
            campaigns_t.c.score,
            members_t.c.weight,
            campaigns_t.c.first_seen,
            campaigns_t.c.last_seen,
        )
        .join(members_t, members_t.c.campaign_id == campaigns_t.c.campaign_id)
        .where(members_t.c.account_id == account_id)
        .order_by(campaigns_t.c.score.desc(), campaigns_t.c.campaign_id)
    )
    with store.engine.connect() as conn:
        return read_frame(conn, query)


_ACTION_COLUMNS = (
    "action_id", "decided_at", "action", "rule_id", "policy_id", "policy_version", "mode", "status", "post_id",
    "campaign_id", "reversed_at", "reversed_by", "reversal_reason",
)  # fmt: skip


def account_actions(store: Store, account_id: str, *, limit: int = LIST_LIMIT) -> pl.DataFrame:
    """The policies' automated actions on the account's posts, newest first, at most ``limit``.

    Columns: those of ``policy_actions`` a reviewer reads (``action_id`` ... ``reversal_reason``),
    then ``why`` (the rule's conditions that held, from the action's evidence, joined by ``and``),
    ``why_not`` (why it is not in force, in the words of
    :func:`stream.policy.actions.why_not_in_force`; null while in force) and ``in_force``.
    """
    evidence = sa.cast(actions_t.c.evidence, sa.Text).label("evidence")
    query = (
        sa.select(*(actions_t.c[name] for name in _ACTION_COLUMNS), evidence)
        .where(actions_t.c.account_id == account_id)
        .order_by(actions_t.c.decided_at.desc(), actions_t.c.action_id)
        .limit(limit)
    )
    with store.engine.connect() as conn:
        rows = read_frame(conn, query)
    why = [_conditions(e) for e in rows["evidence"].to_list()]
    why_not = [why_not_in_force(row) for row in rows.iter_rows(named=True)]
    return (
        rows.drop("evidence")
        .with_columns(
            pl.Series("why", why, dtype=pl.String),
            pl.Series("why_not", why_not, dtype=pl.String),
        )
        .with_columns(in_force=pl.col("why_not").is_null())
    )


def _conditions(evidence: Any) -> str:
    """The conditions that held, as the policy stage wrote them in the action's evidence."""
    held = json_object(evidence).get("conditions")
    if not isinstance(held, list):
        return ""
    return " and ".join(str(c) for c in held)


def _decisions_about(account_id: str) -> sa.ColumnElement[bool]:
    """Decisions on the account's flags, its posts, the account itself and the campaigns it is in."""
    subject_type, subject_id = decisions_t.c.subject_type, decisions_t.c.subject_id
    return sa.or_(
        sa.and_(subject_type == "flag", subject_id.in_(_flag_ids(account_id))),
        sa.and_(subject_type == "post", subject_id.in_(_post_ids(account_id))),
        sa.and_(subject_type == "account", subject_id == account_id),
        sa.and_(subject_type == "campaign", subject_id.in_(_campaign_ids(account_id))),
    )


def account_decisions(store: Store, account_id: str, *, limit: int = LIST_LIMIT) -> pl.DataFrame:
    """Every review decision on the account, newest first, at most ``limit``.

    On its flags, its posts, the account itself and the campaigns it belongs to (a campaign decision
    also decides its members' undecided flags, each with a row of its own). Columns:
    ``decision_id, decided_at, subject_type, subject_id, post_id`` (the post a flag or post
    decision is about, to open it), ``decision, reason_code, statement, reviewer,
    reverses_decision_id`` (set on a reversal), ``reversed_by`` (the reversal's id) and
    ``reversed`` (whether a later decision reversed this one).
    """
    reversal = decisions_t.alias("reversal")
    post_id = sa.case(
        (decisions_t.c.subject_type == "flag", flags_t.c.post_id),
        (decisions_t.c.subject_type == "post", decisions_t.c.subject_id),
        else_=sa.null(),
    ).label("post_id")
    query = (
        sa.select(
            decisions_t.c.decision_id,
            decisions_t.c.decided_at,
            decisions_t.c.subject_type,
            decisions_t.c.subject_id,
            post_id,
            decisions_t.c.decision,
            decisions_t.c.reason_code,
            decisions_t.c.statement,
            decisions_t.c.reviewer,
            decisions_t.c.reverses_decision_id,
            reversal.c.decision_id.label("reversed_by"),
        )
        .select_from(
            decisions_t.outerjoin(reversal, reversal.c.reverses_decision_id == decisions_t.c.decision_id).outerjoin(
                flags_t, sa.and_(decisions_t.c.subject_type == "flag", flags_t.c.flag_id == decisions_t.c.subject_id)
            )
        )
        .where(_decisions_about(account_id))
        .order_by(decisions_t.c.decision_id.desc())
        .limit(limit)
    )
    with store.engine.connect() as conn:
        rows = read_frame(conn, query)
    return rows.with_columns(reversed=pl.col("reversed_by").is_not_null())


def account_audit(store: Store, account_id: str, *, limit: int = LIST_LIMIT) -> pl.DataFrame:
    """The audit entries about the account, newest first, at most ``limit``: on the account itself,
    its posts, its flags (claims, decisions, reversals) and the automated actions on its posts.
    ``before`` and ``after`` as JSON text. (A campaign's own entries are on the campaign's page.)"""
    subject_type, subject_id = audit_t.c.subject_type, audit_t.c.subject_id
    about = sa.or_(
        sa.and_(subject_type == "account", subject_id == account_id),
        sa.and_(subject_type == "post", subject_id.in_(_post_ids(account_id))),
        sa.and_(subject_type == "flag", subject_id.in_(_flag_ids(account_id))),
        sa.and_(subject_type == AUDIT_ACTION_SUBJECT, subject_id.in_(_action_ids(account_id))),
    )
    query = sa.select(*json_as_text(*audit_t.c)).where(about).order_by(audit_t.c.audit_id.desc()).limit(limit)
    with store.engine.connect() as conn:
        return read_frame(conn, query)
