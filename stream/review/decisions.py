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

**A dismissal can take back what the policies did on their own.** ``decide(...,
reverse_actions=[action ids])`` on flags dismisses them and reverses those automated actions (a
label, reduced reach) on their posts in the SAME transaction: the decision's audit row lists the
action ids (``after.reversed_actions``) and each reversal writes its own ``policy_action.reverse``
row naming the decision, as a reversal from the Automated actions page does
(:func:`stream.policy.actions.reverse_in_transaction`, so the workers relay it to the platform the
same way). It is all or nothing: an action that is not in force or not on a decided flag's post
refuses the whole decision (:class:`InvalidDecision`, nothing written), and a case that cannot be
decided leaves every case and every action as it was. Only a dismissal reverses actions: the other
decisions agree with the detector, and escalating hands the call to a lead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from stream.policy.actions import read_actions, reverse_in_transaction, why_not_in_force
from stream.review import placeholders
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
from stream.store.reading import chunks
from stream.store.reviewers import MAX_STATEMENT_CHARS, InvalidDecision, Outcome, Reviewer, require_actor
from stream.store.tables import TABLES, utcnow

flags_t = TABLES["flags"]
members_t = TABLES["campaign_members"]
decisions_t = TABLES["review_decisions"]

#: The one decision that may reverse the automated actions on the case's post with it.
REVERSING_DECISION = "dismiss"


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
    unfilled = placeholders.refusal(text)  # a template's [[...]] left in: every caller, not only the console
    if unfilled is not None:
        raise InvalidDecision(unfilled)
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
    reverse_actions: Sequence[str] | None = None,
    now: datetime | None = None,
) -> Outcome:
    """Decide one case or many (a bulk decision) with a reason code and a statement of reasons.

    Every case gets its own decision row and audit row, all in one transaction; cases that cannot
    be decided (someone else holds it, already decided, escalated and you are not a lead) are left
    alone and reported in ``conflicts``. For a campaign, ``include_member_flags`` applies the same
    decision to the undecided flags of its member accounts (the campaign decision's audit row lists
    them, so reversing it reverses them too).

    ``reverse_actions``: automated actions (``policy_actions.action_id``) in force on the posts of
    the flags dismissed, to reverse with the dismissal, all or nothing (see the module docstring).
    Each shows in ``applied`` as ``policy_action:ACTION_ID``.
    """
    require_actor(reviewer, "decide cases")
    text = _check_decision(decision, reason_code, statement)
    kind, now, outcome = kind_of(subject), now or utcnow(), Outcome()
    wanted = unique(ids)
    reversals = unique(reverse_actions or ())
    if reversals:
        _check_reversals_fit(decision, kind)
    try:
        with store.transaction() as conn:
            cases = read_cases(conn, kind, wanted)
            to_reverse = _actions_on_the_flags_posts(conn, wanted, reversals) if reversals else {}
            for case_id in wanted:
                case = cases.get(case_id)
                if kind.subject_type == "campaign" and include_member_flags and decision != "escalate":
                    _decide_campaign(store, conn, reviewer, case, case_id, decision, reason_code, text, now, outcome)
                else:
                    listed = {"reversed_actions": to_reverse[case_id]} if to_reverse.get(case_id) else None
                    _decide_one(
                        store, conn, reviewer, kind, case, case_id, decision, reason_code, text, now, outcome, listed
                    )
            if reversals:
                _reverse_with_the_decisions(store, conn, reviewer, to_reverse, reason_code, text, now, outcome)
    except _Undone as undone:
        return undone.outcome
    return outcome


class _Undone(Exception):
    """Raised inside the transaction to roll back a dismissal whose cases could not all be decided."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__("a dismissal that reverses automated actions is all or nothing")
        self.outcome = outcome


def _check_reversals_fit(decision: str, kind: Kind) -> None:
    """Refuse reversals with any decision but a flag's dismissal, before anything is read."""
    if decision != REVERSING_DECISION:
        raise InvalidDecision(
            f"only a dismissal reverses automated actions with it, not a {decision!r} decision: dismiss the "
            "case, or reverse the actions on the Automated actions page"
        )
    if kind.subject_type != "flag":
        raise InvalidDecision(
            f"a {kind.subject_type} decision does not reverse automated actions: dismiss the flags of the posts "
            "they are on, or reverse them on the Automated actions page"
        )


def _actions_on_the_flags_posts(
    conn: Connection, flag_ids: Sequence[str], action_ids: Sequence[str]
) -> dict[str, list[str]]:
    """Flag id -> the named actions on its post; InvalidDecision (nothing written yet) if any cannot be reversed."""
    posts: dict[str, str] = {}
    for chunk in chunks(flag_ids):
        query = sa.select(flags_t.c.flag_id, flags_t.c.post_id).where(flags_t.c.flag_id.in_(chunk))
        posts.update({flag_id: post_id for flag_id, post_id in conn.execute(query)})
    decided_posts = set(posts.values())
    actions = read_actions(conn, action_ids)
    problems: dict[str, str] = {}
    for action_id in action_ids:
        row = actions.get(action_id)
        why = "no such action" if row is None else why_not_in_force(row)
        if why is None and row is not None and row["post_id"] not in decided_posts:
            why = f"it is on post {row['post_id']}, not on the post of {_listed(posts) or 'a flag decided here'}"
        if why is not None:
            problems[action_id] = why
    if problems:
        raise InvalidDecision(
            "nothing was decided or reversed: "
            + "; ".join(f"{action_id}: {why}" for action_id, why in problems.items())
            + ". Reload the post and choose the actions again"
        )
    return {flag_id: [a for a in action_ids if actions[a]["post_id"] == post_id] for flag_id, post_id in posts.items()}


def _listed(posts: Mapping[str, str]) -> str:
    return ", ".join(f"flag {flag_id}" for flag_id in posts)


def _reverse_with_the_decisions(
    store: Store,
    conn: Connection,
    reviewer: Reviewer,
    to_reverse: Mapping[str, Sequence[str]],
    reason_code: str,
    statement: str,
    now: datetime,
    outcome: Outcome,
) -> None:
    """Reverse each decided flag's actions inside the decision's transaction, or undo it all."""
    if outcome.conflicts:
        undone = Outcome(conflicts=dict(outcome.conflicts))
        for case_id in outcome.applied:
            undone.conflicts[case_id] = (
                "not decided: the dismissal also reverses automated actions, so it is made for all of its "
                "cases or none; decide the others again"
            )
        raise _Undone(undone)
    reversed_now: set[str] = set()
    for flag_id in outcome.applied:
        action_ids = [a for a in to_reverse.get(flag_id, ()) if a not in reversed_now]
        if not action_ids:
            continue
        decision_id = outcome.decision_ids[flag_id]
        head = f"review decision {decision_id} dismissed flag {flag_id} ({reason_code})"
        reason = f"{head}: {statement}" if statement else head
        result = reverse_in_transaction(
            store,
            conn,
            reviewer,
            action_ids,
            reason[:MAX_STATEMENT_CHARS],
            now=now,
            context={"decision_id": decision_id, "flag_id": flag_id},
        )
        if result.conflicts:  # reversed by someone else since it was read: roll the decision back too
            raise InvalidDecision(
                "nothing was decided or reversed: "
                + "; ".join(f"{action_id}: {why}" for action_id, why in result.conflicts.items())
            )
        reversed_now.update(result.applied)
        outcome.applied += [f"policy_action:{a}" for a in result.applied]


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
