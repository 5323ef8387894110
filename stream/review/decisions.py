"""Deciding cases: one or many (bulk), a campaign with its members' flags, each with its reasons.

A decision never deletes anything: it appends a ``review_decisions`` row and an ``audit_log`` row
in the SAME transaction as the status change, so the record of who did what, when, from which
state to which, cannot disagree with the case:

    open ──claim──► claimed ──decide──► confirmed | dismissed | actioned
      │                │                          ▲
      └─────decide─────┴──escalate──► escalated ──┘ (leads only)

Nobody decides a case another reviewer holds (a lead reassigns it first); escalated cases are
decided by leads. Restrictive decisions need a statement of reasons (DSA art. 17). A bulk decision
applies what it can and reports the rest, case by case.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from stream.review.cases import (
    KINDS,
    Case,
    Kind,
    audit,
    claim_values,
    compare_and_set,
    insert_decision,
    kind_of,
    moved_on,
    read_cases,
    unique,
)
from stream.review.vocabulary import DECISIONS, REASON_CODES, UNDECIDED, reason_codes_for
from stream.store.database import Store
from stream.store.reviewers import MAX_STATEMENT_CHARS, InvalidDecision, Outcome, Reviewer, require_actor
from stream.store.tables import TABLES, utcnow

flags_t = TABLES["flags"]
members_t = TABLES["campaign_members"]
decisions_t = TABLES["review_decisions"]


def _check_decision(decision: str, reason_code: str, statement: str | None) -> str:
    """Validate a decision's parts; returns the cleaned statement ('' when none)."""
    if decision not in DECISIONS:
        raise InvalidDecision(f"unknown decision {decision!r}; decisions are {', '.join(DECISIONS)}")
    reason = REASON_CODES.get(reason_code)
    if reason is None:
        raise InvalidDecision(f"unknown reason code {reason_code!r}; codes are {', '.join(REASON_CODES)}")
    if decision not in reason.decisions:
        raise InvalidDecision(
            f"reason {reason_code!r} does not fit a {decision!r} decision; use one of "
            f"{', '.join(reason_codes_for(decision))}"
        )
    text = (statement or "").strip()
    if len(text) > MAX_STATEMENT_CHARS:
        raise InvalidDecision(f"the statement has {len(text)} characters; keep it under {MAX_STATEMENT_CHARS}")
    if not text and (DECISIONS[decision].restrictive or reason_code == "other"):
        raise InvalidDecision(
            f"a {decision!r} decision needs a statement of reasons (what was found and why it breaks the "
            "policy): the user is told it, and the DSA requires one for every restriction"
        )
    return text


def _refusal(
    conn: Connection, reviewer: Reviewer, kind: Kind, case: Case | None, case_id: str, decision: str
) -> str | None:
    """Why ``reviewer`` may not make ``decision`` on this case now, or None when they may."""
    if case is None:
        return f"no {kind.subject_type} {case_id}"
    if case.status not in UNDECIDED:
        return f"already decided ({case.status}){_decided_by(conn, kind, case_id)}"
    if case.assignee and case.assignee != reviewer.name:
        return f"claimed by {case.assignee}: ask them or a lead to release or reassign it"
    if case.status == "escalated" and not reviewer.is_lead:
        return "escalated: only a lead decides it"
    if case.status == "escalated" and decision == "escalate":
        return "already escalated"
    return None


def _decided_by(conn: Connection, kind: Kind, case_id: str) -> str:
    row = conn.execute(
        sa.select(decisions_t.c.decision, decisions_t.c.reviewer)
        .where(decisions_t.c.subject_type == kind.subject_type, decisions_t.c.subject_id == case_id)
        .order_by(decisions_t.c.decision_id.desc())
        .limit(1)
    ).first()
    return f" by {row.reviewer}" if row is not None else ""


def _decide_one(
    store: Store,
    conn: Connection,
    reviewer: Reviewer,
    kind: Kind,
    case: Case | None,
    case_id: str,
    decision: str,
    reason_code: str,
    statement: str,
    now: datetime,
    outcome: Outcome,
    extra_after: Mapping[str, Any] | None = None,
) -> int | None:
    """Decide one case inside ``conn``'s transaction; returns the decision id or None (conflict)."""
    refusal = _refusal(conn, reviewer, kind, case, case_id, decision)
    if case is None or refusal is not None:
        outcome.conflicts[case_id] = refusal or f"no {kind.subject_type} {case_id}"
        return None
    status = DECISIONS[decision].status
    # An escalated case goes back to the leads' pool; any other decision stays with its decider.
    assignee = None if decision == "escalate" else reviewer.name
    if not compare_and_set(conn, kind, case, {"status": status, **claim_values(kind, assignee, now)}):
        outcome.conflicts[case_id] = moved_on(conn, kind, case_id)
        return None
    decision_id = insert_decision(
        conn,
        {
            "subject_type": kind.subject_type,
            "subject_id": case_id,
            "decision": decision,
            "reason_code": reason_code,
            "statement": statement or None,
            "reviewer": reviewer.name,
            "decided_at": now,
        },
    )
    after = {
        "status": status,
        "assignee": assignee,
        "decision_id": decision_id,
        "decision": decision,
        "reason_code": reason_code,
        "statement": statement or None,
        **(extra_after or {}),
    }
    audit(store, conn, reviewer, kind, "decide", case_id, case.state(), after)
    outcome.applied.append(case_id)
    outcome.decision_ids[case_id] = decision_id
    return decision_id


def decide(
    store: Store,
    reviewer: Reviewer,
    ids: Iterable[str],
    decision: str,
    reason_code: str,
    statement: str | None = None,
    *,
    subject: str = "flag",
    include_member_flags: bool = True,
    now: datetime | None = None,
) -> Outcome:
    """Decide one case or many (a bulk decision) with a reason code and a statement of reasons.

    Every case gets its own decision row and audit row, all in one transaction; cases that cannot
    be decided (someone else holds it, already decided, escalated and you are not a lead) are left
    alone and reported in ``conflicts``. For a campaign, ``include_member_flags`` applies the same
    decision to the undecided flags of its member accounts (the campaign decision's audit row lists
    them, so reversing it reverses them too).
    """
    require_actor(reviewer, "decide cases")
    text = _check_decision(decision, reason_code, statement)
    kind, now, outcome = kind_of(subject), now or utcnow(), Outcome()
    wanted = unique(ids)
    with store.transaction() as conn:
        cases = read_cases(conn, kind, wanted)
        for case_id in wanted:
            case = cases.get(case_id)
            if kind.subject_type == "campaign" and include_member_flags and decision != "escalate":
                _decide_campaign(store, conn, reviewer, case, case_id, decision, reason_code, text, now, outcome)
            else:
                _decide_one(store, conn, reviewer, kind, case, case_id, decision, reason_code, text, now, outcome)
    return outcome


def _decide_campaign(
    store: Store,
    conn: Connection,
    reviewer: Reviewer,
    case: Case | None,
    campaign_id: str,
    decision: str,
    reason_code: str,
    statement: str,
    now: datetime,
    outcome: Outcome,
) -> None:
    """A campaign decision and the same decision on its members' undecided flags, together."""
    flag_kind = KINDS["flag"]
    member_flags = unique(
        conn.execute(
            sa.select(flags_t.c.flag_id)
            .where(
                flags_t.c.account_id.in_(
                    sa.select(members_t.c.account_id).where(members_t.c.campaign_id == campaign_id)
                ),
                flags_t.c.status.in_(UNDECIDED),
            )
            .order_by(flags_t.c.flag_id)
        ).scalars()
    )
    # Check the campaign first: if it is refused, its flags are left alone too.
    refusal = _refusal(conn, reviewer, KINDS["campaign"], case, campaign_id, decision)
    if refusal is not None:
        outcome.conflicts[campaign_id] = refusal
        return
    flag_outcome = Outcome()
    flag_cases = read_cases(conn, flag_kind, member_flags)
    for flag_id in member_flags:
        _decide_one(
            store,
            conn,
            reviewer,
            flag_kind,
            flag_cases.get(flag_id),
            flag_id,
            decision,
            reason_code,
            statement,
            now,
            flag_outcome,
            extra_after={"campaign_id": campaign_id},
        )
    _decide_one(
        store,
        conn,
        reviewer,
        KINDS["campaign"],
        case,
        campaign_id,
        decision,
        reason_code,
        statement,
        now,
        outcome,
        extra_after={"flag_decisions": flag_outcome.decision_ids},
    )
    for flag_id, why in flag_outcome.conflicts.items():
        outcome.conflicts[f"flag:{flag_id}"] = why
    outcome.applied += [f"flag:{f}" for f in flag_outcome.applied]
    outcome.decision_ids.update({f"flag:{f}": d for f, d in flag_outcome.decision_ids.items()})
