"""Undoing decisions (appeals, mistakes): the case goes back to the queue it came from, audited.

A reversal is one more ``review_decisions`` row (``decision='reverse'``,
``reverses_decision_id``) written with its audit row and the case's status change in one
transaction: escalated cases return to the escalated queue, the others to the open queue,
unassigned. Only the latest decision on a case can be reversed; a reviewer reverses their own
decisions, a lead anyone's.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from stream.review.cases import KINDS, audit, claim_values, compare_and_set, insert_decision, moved_on, read_cases
from stream.review.vocabulary import DECISIONS, REVERSAL_REASONS, REVERSE
from stream.store.database import Store
from stream.store.reading import json_object
from stream.store.reviewers import (
    MAX_STATEMENT_CHARS,
    InvalidDecision,
    Outcome,
    PermissionDenied,
    Reviewer,
    require_actor,
)
from stream.store.tables import TABLES, utcnow

decisions_t = TABLES["review_decisions"]
audit_t = TABLES["audit_log"]


def _decision_audit(conn: Connection, subject_type: str, subject_id: str, decision_id: int) -> dict[str, Any] | None:
    """The audit row written with ``decision_id`` (its before/after), found through the subject index."""
    rows = conn.execute(
        sa.select(audit_t.c.before, audit_t.c.after)
        .where(
            audit_t.c.subject_type == subject_type,
            audit_t.c.subject_id == subject_id,
            audit_t.c.action == f"{subject_type}.decide",
        )
        .order_by(audit_t.c.audit_id.desc())
    )
    for before, after in rows:
        after = json_object(after)
        if after.get("decision_id") == decision_id:
            return {"before": json_object(before), "after": after}
    return None


def reverse(
    store: Store,
    reviewer: Reviewer,
    decision_ids: Iterable[int],
    reason_code: str,
    statement: str,
    *,
    now: datetime | None = None,
) -> Outcome:
    """Undo decisions: each case goes back to the queue it came from, with a reversal row and audit.

    Only the latest decision on a case can be reversed (a later decision or reversal supersedes
    it); a reviewer reverses their own decisions, a lead anyone's. Reversing a campaign decision
    also reverses the member-flag decisions made with it, where those are still the latest.
    ``Outcome`` keys are decision ids as strings.
    """
    require_actor(reviewer, "reverse decisions")
    if reason_code not in REVERSAL_REASONS:
        raise InvalidDecision(f"unknown reversal reason {reason_code!r}; use one of {', '.join(REVERSAL_REASONS)}")
    text = (statement or "").strip()
    if not text:
        raise InvalidDecision("a reversal needs a statement: why the earlier decision no longer stands")
    if len(text) > MAX_STATEMENT_CHARS:
        raise InvalidDecision(f"the statement has {len(text)} characters; keep it under {MAX_STATEMENT_CHARS}")
    now, outcome = now or utcnow(), Outcome()
    wanted = list(dict.fromkeys(int(d) for d in decision_ids))
    with store.transaction() as conn:
        rows = {
            row.decision_id: row
            for row in conn.execute(sa.select(decisions_t).where(decisions_t.c.decision_id.in_(wanted)))
        }
        others = sorted({row.reviewer for row in rows.values() if row.reviewer != reviewer.name})
        if others and not reviewer.is_lead:
            raise PermissionDenied(
                f"{reviewer.name} is a {reviewer.role}: only a lead reverses decisions of others "
                f"({', '.join(others)}); ask a lead"
            )
        for decision_id in wanted:
            row = rows.get(decision_id)
            if row is None:
                outcome.conflicts[str(decision_id)] = f"no decision #{decision_id}"
                continue
            reversal = _reverse_one(store, conn, reviewer, row, reason_code, text, now, outcome)
            if reversal is None or row.subject_type != "campaign":
                continue
            audit_row = _decision_audit(conn, "campaign", row.subject_id, decision_id) or {"after": {}}
            for flag_id, flag_decision in dict(audit_row["after"].get("flag_decisions") or {}).items():
                flag_row = conn.execute(
                    sa.select(decisions_t).where(decisions_t.c.decision_id == int(flag_decision))
                ).first()
                if flag_row is not None:
                    _reverse_one(
                        store, conn, reviewer, flag_row, reason_code, text, now, outcome, key=f"flag:{flag_id}"
                    )
    return outcome


def _reverse_one(
    store: Store,
    conn: Connection,
    reviewer: Reviewer,
    row: Any,
    reason_code: str,
    statement: str,
    now: datetime,
    outcome: Outcome,
    *,
    key: str | None = None,
) -> int | None:
    key = key or str(row.decision_id)
    if row.decision == REVERSE:
        outcome.conflicts[key] = "a reversal cannot be reversed; make a new decision instead"
        return None
    kind = KINDS.get(row.subject_type)
    if kind is None:
        outcome.conflicts[key] = f"decisions on a {row.subject_type} are not reversible here"
        return None
    latest = conn.execute(
        sa.select(decisions_t.c.decision_id, decisions_t.c.decision, decisions_t.c.reviewer)
        .where(decisions_t.c.subject_type == row.subject_type, decisions_t.c.subject_id == row.subject_id)
        .order_by(decisions_t.c.decision_id.desc())
        .limit(1)
    ).first()
    if latest is not None and latest.decision_id != row.decision_id:
        what = "reversed" if latest.decision == REVERSE else f"superseded by decision #{latest.decision_id}"
        outcome.conflicts[key] = f"already {what} by {latest.reviewer}"
        return None
    case = read_cases(conn, kind, [row.subject_id]).get(row.subject_id)
    expected = DECISIONS[row.decision].status if row.decision in DECISIONS else None
    if case is None or case.status != expected:
        outcome.conflicts[key] = f"the {row.subject_type} is no longer {expected}; reload"
        return None
    decided = _decision_audit(conn, row.subject_type, row.subject_id, row.decision_id)
    came_from = (decided or {}).get("before", {}).get("status")
    status = "escalated" if came_from == "escalated" else "open"
    if not compare_and_set(conn, kind, case, {"status": status, **claim_values(kind, None, now)}):
        outcome.conflicts[key] = moved_on(conn, kind, row.subject_id)
        return None
    reversal_id = insert_decision(
        conn,
        {
            "subject_type": row.subject_type,
            "subject_id": row.subject_id,
            "decision": REVERSE,
            "reason_code": reason_code,
            "statement": statement,
            "reviewer": reviewer.name,
            "decided_at": now,
            "reverses_decision_id": row.decision_id,
        },
    )
    audit(
        store,
        conn,
        reviewer,
        kind,
        "reverse",
        row.subject_id,
        case.state(),
        {
            "status": status,
            "assignee": None,
            "decision_id": reversal_id,
            "reverses_decision_id": row.decision_id,
            "reversed_decision": row.decision,
            "reason_code": reason_code,
            "statement": statement,
        },
    )
    outcome.applied.append(key)
    outcome.decision_ids[key] = reversal_id
    return reversal_id
