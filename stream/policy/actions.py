"""What people do with the policies' automated actions: read them, reverse them, acknowledge alerts.

The console's "Automated actions" page calls only this module (through ``dashboards/data.py``),
so every step a reviewer can take is a plain function over a :class:`~stream.store.database.Store` that the
tests drive directly, on SQLite and PostgreSQL.

**Reversal.** Only an action that was sent to the platform (``mode='active'``,
``status='emitted'``) can be reversed: a suppressed one (its rule's circuit breaker was open) or a
shadow record never reached the platform, so there is nothing to undo. Reversing writes
``reversed_at``/``reversed_by``/``reversal_reason`` with a compare-and-set on ``reversed_at IS
NULL`` (two reviewers reversing at once: one wins, the other is told) and the ``audit_log`` row in
the same transaction. Reviewers and leads may reverse; viewers may not.

**In force** (:func:`in_force`, :func:`why_not_in_force`): an action is in force while the
platform applies it: sent and not reversed. The post view lists a post's actions with that status
(:func:`post_actions`) and the flag queue counts them (:func:`in_force_count`). A review decision
that dismisses a flag may reverse its post's actions in its own transaction
(:func:`reverse_in_transaction`, called by :mod:`stream.review.decisions`); this package never
imports the review package, because the worker imports this one and must not load console code.

**Reaching the platform** (an outbox, because the console need not have Kafka credentials): the
console only writes the store. Each worker, every ``policy.reload_interval_s``, reads reversals
not yet sent (:func:`pending_reversals`), produces a ``chorus.action-reversal/1`` message for each
to the actions topic, keyed by the post id like the action itself (same partition, so a consumer
sees the reversal after the action), and only after the broker acknowledged them marks them sent
(:func:`mark_reversals_emitted`). At least once: a crash between the two, or two workers relaying
at once, sends a reversal twice with the same ``reversal_id``; consumers treat it as idempotent.
A replayed batch may re-send an action the console has reversed, with its same ``action_id``;
consumers treat a reversal as final for that id.

**Alerts** are the circuit breakers' trips and recoveries (``policy_alerts``, one per worker, since
each worker judges the share of the posts it sees). A breaker is open on a worker while its latest
alert there is a trip. Acknowledging an alert records who has seen it (audited); it does not close
the breaker, which closes itself when the rule's share falls (see :mod:`stream.policy.engine`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from stream.store.database import Store
from stream.store.reading import QueuePage, chunks, json_as_text, read_frame
from stream.store.reviewers import MAX_STATEMENT_CHARS, InvalidDecision, Outcome, Reviewer, audit, require_actor
from stream.store.tables import ACTION_STATUSES, POLICY_ACTIONS, POLICY_SLOTS, TABLES, utcnow

#: ``schema`` of a reversal message on the actions topic (actions themselves are ``chorus.action/1``).
REVERSAL_SCHEMA = "chorus.action-reversal/1"
#: Audit ``subject_type`` and actions for what this module changes.
AUDIT_ACTION_SUBJECT = "policy_action"
AUDIT_ALERT_SUBJECT = "policy_alert"
#: A reversal's reason is read by the platform's people and by auditors: say why in a sentence.
MIN_REASON_CHARS = 10

_actions = TABLES["policy_actions"]
_alerts = TABLES["policy_alerts"]
_posts = TABLES["posts"]

# --------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class ActionFilter:
    """What the actions list shows. Frozen and made of tuples so it can key a cache.

    ``reversed``: True for reversed actions only, False for standing ones only, None for both.
    ``policy``: ``policy_id`` or ``policy_id@version``.
    """

    modes: tuple[str, ...] = ("active",)
    statuses: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    rule_id: str = ""
    policy: str = ""
    account: str = ""
    reversed: bool | None = None


def _conditions(flt: ActionFilter) -> list[Any]:
    for name, values, allowed in (
        ("mode", flt.modes, POLICY_SLOTS),
        ("status", flt.statuses, ACTION_STATUSES),
        ("action", flt.actions, POLICY_ACTIONS),
    ):
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            raise ValueError(f"unknown {name} {', '.join(unknown)}; use some of {', '.join(allowed)}")
    where: list[Any] = []
    if flt.modes:
        where.append(_actions.c.mode.in_(flt.modes))
    if flt.statuses:
        where.append(_actions.c.status.in_(flt.statuses))
    if flt.actions:
        where.append(_actions.c.action.in_(flt.actions))
    if flt.rule_id.strip():
        where.append(_actions.c.rule_id == flt.rule_id.strip())
    if flt.policy.strip():
        policy_id, _, version = flt.policy.strip().partition("@")
        where.append(_actions.c.policy_id == policy_id)
        if version:
            where.append(_actions.c.policy_version == version)
    if flt.account.strip():
        where.append(_actions.c.account_id == flt.account.strip())
    if flt.reversed is True:
        where.append(_actions.c.reversed_at.is_not(None))
    elif flt.reversed is False:
        where.append(_actions.c.reversed_at.is_(None))
    return where


#: The columns of the actions list: what a reviewer scans; the detail adds scores and evidence.
_LIST_COLUMNS = (
    "action_id", "decided_at", "action", "status", "mode", "rule_id", "policy_id", "policy_version",
    "account_id", "post_id", "campaign_id", "reversed_at", "reversed_by", "reversal_emitted_at",
)  # fmt: skip


def action_list(store: Store, flt: ActionFilter = ActionFilter(), *, limit: int = 100, offset: int = 0) -> QueuePage:
    """A page of policy actions, newest first, filtered and paginated in SQL, with a text preview."""
    where = _conditions(flt)
    preview = sa.func.substr(_posts.c.text, 1, 200).label("preview")
    query = (
        sa.select(*(_actions.c[name] for name in _LIST_COLUMNS), preview)
        .select_from(_actions.outerjoin(_posts, _posts.c.post_id == _actions.c.post_id))
        .where(*where)
        .order_by(_actions.c.decided_at.desc(), _actions.c.action_id)
        .limit(limit)
        .offset(offset)
    )
    count = sa.select(sa.func.count()).select_from(_actions).where(*where)
    with store.engine.connect() as conn:
        rows = read_frame(conn, query)
        total = int(conn.execute(count).scalar_one())
    return QueuePage(rows, total, offset, limit)


def action_detail(store: Store, action_id: str) -> dict[str, Any] | None:
    """One action with its scores, evidence and parameters (decoded JSON) and its post's text."""
    query = (
        sa.select(_actions, _posts.c.text, _posts.c.created_at)
        .select_from(_actions.outerjoin(_posts, _posts.c.post_id == _actions.c.post_id))
        .where(_actions.c.action_id == action_id)
    )
    with store.engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    return dict(row) if row is not None else None


def action_counts(store: Store) -> pl.DataFrame:
    """Per policy version, rule, action, mode and status: how many actions, how many reversed."""
    query = (
        sa.select(
            _actions.c.policy_id, _actions.c.policy_version, _actions.c.rule_id, _actions.c.action,
            _actions.c.mode, _actions.c.status,
            sa.func.count().label("actions"),
            sa.func.count(_actions.c.reversed_at).label("reversed"),
        )
        .group_by(_actions.c.policy_id, _actions.c.policy_version, _actions.c.rule_id, _actions.c.action,
                  _actions.c.mode, _actions.c.status)
        .order_by(_actions.c.policy_id, _actions.c.policy_version, _actions.c.rule_id, _actions.c.status)
    )
    with store.engine.connect() as conn:
        return read_frame(conn, query)


def in_force() -> sa.ColumnElement[bool]:
    """SQL for "in force on the platform": sent (active, emitted) and not reversed.

    The same rule as :func:`why_not_in_force` (None there), in SQL, for counts over many posts.
    """
    return sa.and_(_actions.c.mode == "active", _actions.c.status == "emitted", _actions.c.reversed_at.is_(None))


def in_force_count(post_id: sa.ColumnElement[str]) -> sa.ScalarSelect[int]:
    """A correlated subquery: how many actions are in force on the post ``post_id`` names (the queue's column)."""
    return (
        sa.select(sa.func.count())
        .select_from(_actions)
        .where(_actions.c.post_id == post_id, in_force())
        .scalar_subquery()
    )


#: The columns of a post's actions (:func:`post_actions`), then ``in_force`` and ``why_not``.
_POST_COLUMNS = (
    "action_id", "action", "rule_id", "policy_id", "policy_version", "mode", "status", "decided_at",
    "reversed_at", "reversed_by", "reversal_reason", "reversal_emitted_at", "post_id", "account_id",
)  # fmt: skip


def post_actions(store: Store, post_id: str) -> pl.DataFrame:
    """Every policy action on one post, oldest first, with whether it is in force and why not otherwise.

    ``in_force``: the platform applies it now (sent, not reversed), so a reviewer can reverse it;
    ``why_not``: for the others, in the reviewer's words (shadow record, held back by a circuit
    breaker, already reversed by whom and when); null for those in force.
    """
    query = (
        sa.select(*(_actions.c[name] for name in _POST_COLUMNS))
        .where(_actions.c.post_id == post_id)
        .order_by(_actions.c.decided_at, _actions.c.action_id)
    )
    with store.engine.connect() as conn:
        rows = read_frame(conn, query)
    why = pl.Series("why_not", [why_not_in_force(row) for row in rows.iter_rows(named=True)], dtype=pl.String)
    return rows.with_columns(why).with_columns(in_force=pl.col("why_not").is_null())


def alert_list(store: Store, *, unacknowledged_only: bool = False, limit: int = 200) -> pl.DataFrame:
    """Circuit-breaker alerts, newest first."""
    query = sa.select(*json_as_text(*_alerts.columns)).order_by(_alerts.c.alert_id.desc()).limit(limit)
    if unacknowledged_only:
        query = query.where(_alerts.c.acknowledged_at.is_(None))
    with store.engine.connect() as conn:
        return read_frame(conn, query)


def open_breakers(store: Store) -> pl.DataFrame:
    """The rules whose circuit breaker is open now on some worker: their latest alert there is a trip.

    Columns: ``policy_id, policy_version, rule_id, worker_id, alert_id, at, share, matched, posts``.
    """
    latest = (
        sa.select(sa.func.max(_alerts.c.alert_id))
        .group_by(_alerts.c.policy_id, _alerts.c.policy_version, _alerts.c.rule_id, _alerts.c.worker_id)
    )
    query = (
        sa.select(_alerts.c.policy_id, _alerts.c.policy_version, _alerts.c.rule_id, _alerts.c.worker_id,
                  _alerts.c.alert_id, _alerts.c.at, _alerts.c.share, _alerts.c.matched, _alerts.c.posts)
        .where(_alerts.c.alert_id.in_(latest), _alerts.c.kind == "breaker_tripped")
        .order_by(_alerts.c.at.desc())
    )
    with store.engine.connect() as conn:
        return read_frame(conn, query)


# --------------------------------------------------------------------------------------------
# Acting


def _unique(ids: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(ids))


def _check_reason(reason: str) -> str:
    text = (reason or "").strip()
    if len(text) < MIN_REASON_CHARS:
        raise InvalidDecision(
            f"say why the action is reversed (at least {MIN_REASON_CHARS} characters): the platform's "
            "team and the audit read it"
        )
    if len(text) > MAX_STATEMENT_CHARS:
        raise InvalidDecision(f"the reason has {len(text)} characters; keep it under {MAX_STATEMENT_CHARS}")
    return text


def why_not_in_force(row: Mapping[str, Any]) -> str | None:
    """Why an action is not in force on the platform (so there is nothing to reverse), or None when it is."""
    if row["reversed_at"] is not None:
        return f"already reversed by {row['reversed_by']} at {row['reversed_at']:%Y-%m-%d %H:%M} UTC"
    if row["mode"] != "active":
        return "a shadow record: the platform never received it, so there is nothing to reverse"
    if row["status"] != "emitted":
        return "held back by its rule's circuit breaker: the platform never received it, so there is nothing to reverse"
    return None


_REVERSAL_COLUMNS = (
    _actions.c.action_id, _actions.c.mode, _actions.c.status, _actions.c.action, _actions.c.rule_id,
    _actions.c.policy_id, _actions.c.policy_version, _actions.c.post_id, _actions.c.reversed_at,
    _actions.c.reversed_by,
)  # fmt: skip


def read_actions(conn: Connection, action_ids: Sequence[str]) -> dict[str, Mapping[str, Any]]:
    """The actions among ``action_ids`` that exist, by id: what :func:`why_not_in_force` and a reversal read."""
    rows: dict[str, Mapping[str, Any]] = {}
    for chunk in chunks(_unique(str(i) for i in action_ids)):
        query = sa.select(*_REVERSAL_COLUMNS).where(_actions.c.action_id.in_(chunk))
        rows.update({row["action_id"]: row for row in conn.execute(query).mappings()})
    return rows


def reverse_in_transaction(
    store: Store,
    conn: Connection,
    reviewer: Reviewer,
    action_ids: Sequence[str],
    reason: str,
    *,
    now: datetime | None = None,
    context: Mapping[str, Any] | None = None,
) -> Outcome:
    """:func:`reverse_actions` inside the caller's transaction ``conn``, so a reversal can go with another change.

    A review decision that dismisses a flag reverses its post's actions this way: the decision, its
    audit row, the reversals and theirs commit together or not at all. ``context`` is added to each
    reversal's audit ``after`` (e.g. the decision that asked for it). What a conflict means is the
    caller's call: :func:`reverse_actions` reports it; a decision refuses the whole change.
    """
    require_actor(reviewer, "reverse automated actions")
    text = _check_reason(reason)
    ids = _unique(str(i) for i in action_ids)
    outcome = Outcome()
    now = now or utcnow()
    rows = read_actions(conn, ids)
    for action_id in ids:
        row = rows.get(action_id)
        if row is None:
            outcome.conflicts[action_id] = "no such action"
            continue
        why = why_not_in_force(row)
        if why is not None:
            outcome.conflicts[action_id] = why
            continue
        changed = conn.execute(
            sa.update(_actions)
            .where(_actions.c.action_id == action_id, _actions.c.reversed_at.is_(None))
            .values(reversed_at=now, reversed_by=reviewer.name, reversal_reason=text)
        ).rowcount
        if changed != 1:  # PostgreSQL: another reviewer's reversal committed while we waited
            outcome.conflicts[action_id] = "someone reversed it meanwhile; reload"
            continue
        audit(
            store,
            conn,
            reviewer,
            action=f"{AUDIT_ACTION_SUBJECT}.reverse",
            subject_type=AUDIT_ACTION_SUBJECT,
            subject_id=action_id,
            before={"status": row["status"], "action": row["action"], "rule_id": row["rule_id"],
                    "policy": f"{row['policy_id']}@{row['policy_version']}", "post_id": row["post_id"]},
            after={"reversed_at": now.isoformat(), "reason": text, **(context or {})},
        )  # fmt: skip
        outcome.applied.append(action_id)
    return outcome


def reverse_actions(store: Store, reviewer: Reviewer, action_ids: Sequence[str], reason: str) -> Outcome:
    """Reverse emitted actions (audited, one transaction); the workers relay each to the actions topic.

    ``Outcome.applied``: reversed now; ``conflicts``: action id -> why not (unknown, never sent,
    already reversed, or reversed by someone else meanwhile).
    """
    require_actor(reviewer, "reverse automated actions")
    _check_reason(reason)  # refused before a transaction is opened
    with store.transaction() as conn:
        return reverse_in_transaction(store, conn, reviewer, action_ids, reason)


def acknowledge_alerts(store: Store, reviewer: Reviewer, alert_ids: Sequence[int]) -> Outcome:
    """Record that ``reviewer`` has seen these alerts (audited); the breakers are not touched."""
    require_actor(reviewer, "acknowledge alerts")
    ids = _unique(int(i) for i in alert_ids)
    outcome = Outcome()
    now = utcnow()
    with store.transaction() as conn:
        seen = {r.alert_id: r for r in conn.execute(
            sa.select(_alerts.c.alert_id, _alerts.c.rule_id, _alerts.c.kind, _alerts.c.acknowledged_by)
            .where(_alerts.c.alert_id.in_(ids))
        )}
        for alert_id in ids:
            row = seen.get(alert_id)
            if row is None:
                outcome.conflicts[str(alert_id)] = "no such alert"
                continue
            changed = conn.execute(
                sa.update(_alerts)
                .where(_alerts.c.alert_id == alert_id, _alerts.c.acknowledged_at.is_(None))
                .values(acknowledged_by=reviewer.name, acknowledged_at=now)
            ).rowcount
            if changed != 1:
                outcome.unchanged.append(str(alert_id))
                continue
            audit(
                store,
                conn,
                reviewer,
                action=f"{AUDIT_ALERT_SUBJECT}.acknowledge",
                subject_type=AUDIT_ALERT_SUBJECT,
                subject_id=str(alert_id),
                before={"kind": row.kind, "rule_id": row.rule_id},
                after={"acknowledged_at": now.isoformat()},
            )
            outcome.applied.append(str(alert_id))
    return outcome


# --------------------------------------------------------------------------------------------
# The outbox: reversals on their way to the actions topic


@dataclass(frozen=True)
class PendingReversal:
    """A reversal the console wrote that no worker has sent yet."""

    action_id: str
    action: str
    post_id: str
    account_id: str
    rule_id: str
    policy_id: str
    policy_version: str
    reversed_at: datetime
    reversed_by: str
    reason: str

    def message(self) -> bytes:
        """The actions-topic value: which action to undo, who decided, why."""
        return msgspec.json.encode({
            "schema": REVERSAL_SCHEMA,
            "reversal_id": f"{self.action_id}:reversal",
            "action_id": self.action_id,
            "action": self.action,
            "post_id": self.post_id,
            "account_id": self.account_id,
            "rule_id": self.rule_id,
            "policy_id": self.policy_id,
            "policy_version": self.policy_version,
            "reversed_at": self.reversed_at.isoformat(),
            "reversed_by": self.reversed_by,
            "reason": self.reason,
        })


def pending_reversals(store: Store, *, limit: int = 500) -> list[PendingReversal]:
    """Reversals not yet sent, oldest first (the ``reversed_at`` index keeps this off a full scan)."""
    query = (
        sa.select(_actions.c.action_id, _actions.c.action, _actions.c.post_id, _actions.c.account_id,
                  _actions.c.rule_id, _actions.c.policy_id, _actions.c.policy_version, _actions.c.reversed_at,
                  _actions.c.reversed_by, _actions.c.reversal_reason)
        .where(_actions.c.reversed_at.is_not(None), _actions.c.reversal_emitted_at.is_(None))
        .order_by(_actions.c.reversed_at, _actions.c.action_id)
        .limit(limit)
    )
    with store.engine.connect() as conn:
        return [PendingReversal(*row) for row in conn.execute(query)]


def mark_reversals_emitted(store: Store, action_ids: Sequence[str], at: datetime | None = None) -> int:
    """Mark reversals sent (after the broker acknowledged them); returns how many this call marked."""
    if not action_ids:
        return 0
    with store.transaction() as conn:
        return conn.execute(
            sa.update(_actions)
            .where(_actions.c.action_id.in_(list(action_ids)), _actions.c.reversal_emitted_at.is_(None))
            .values(reversal_emitted_at=at or utcnow())
        ).rowcount


def relay_reversals(store: Store, producer: Any, topic: str, *, timeout_s: float, limit: int = 500) -> int:
    """Send pending reversals to ``topic`` and mark them sent once the broker acknowledged them.

    Called by each worker every ``policy.reload_interval_s``; returns how many were sent. A delivery
    error propagates (nothing is marked, so the next call sends them again).
    """
    pending = pending_reversals(store, limit=limit)
    if not pending:
        return 0
    futures = [producer.send(topic, key=r.post_id.encode(), value=r.message()) for r in pending]
    producer.flush(timeout=timeout_s)
    for future in futures:
        future.get(timeout=timeout_s)
    mark_reversals_emitted(store, [r.action_id for r in pending])
    return len(pending)
