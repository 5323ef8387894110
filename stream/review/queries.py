"""Review data access: the queues, claims, decisions, reversals and read models of the console.

The console's pages call only this module (through ``dashboards/data.py``, which adds caching), so
every action a reviewer can take is a plain function over a :class:`~stream.store.database.Store` that the
tests drive directly, on SQLite and on PostgreSQL.

**Cases.** A *case* is a flag (one detector's flag on one post, ``flags``) or a campaign
(``campaigns``, written by the coordination stage). Both carry ``status`` and ``assignee``:

    open ──claim──► claimed ──decide──► confirmed | dismissed | actioned
      │                │                          ▲
      └─────decide─────┴──escalate──► escalated ──┘ (leads only)

A decision never deletes anything: it appends a ``review_decisions`` row and an ``audit_log`` row,
in the SAME transaction as the status change, so the record of who did what, when, from which
state to which, cannot disagree with the case. A reversal is one more decision row
(``decision='reverse'``, ``reverses_decision_id``) that puts the case back in the queue it came
from (escalated cases to the escalated queue, the others to the open queue, unassigned).

**Concurrency is optimistic.** Every change reads the case, checks the rules against what it read,
and updates with ``WHERE status = <read> AND assignee IS NOT DISTINCT FROM <read>``. If someone
else changed the case in between, the update matches no row and the case comes back in
:attr:`Outcome.conflicts` with what happened ("claimed by alice"), instead of being overwritten:
two reviewers claiming the same case at once -> one wins, the other is told. On PostgreSQL (READ
COMMITTED) the second UPDATE waits for the first's row lock and then re-checks its WHERE against
the new row; on SQLite write transactions are serialised by ``BEGIN IMMEDIATE``.

**Roles** (:data:`ROLES`): a *viewer* reads; a *reviewer* claims, releases their own claims,
decides open cases and their own, escalates, and reverses their own decisions; a *lead* also
assigns and releases anyone's cases, decides escalated cases and reverses anyone's decisions.
Nobody decides a case another reviewer holds (a lead reassigns it first, which is audited): that
is what "two analysts never work the same case unknowingly" means. Role checks are enforced here,
not only hidden in the UI: :class:`PermissionDenied` for a role that may not act at all.

**Campaign evidence** (what the coordination stage writes, read tolerantly by
:func:`campaign_edges`): ``campaigns.summary`` is a JSON object of campaign-level scores (any
numeric keys: ``density``, ``synchrony``, ``machine_share``, ...) and may hold ``"edges"``; each
``campaign_members.evidence`` may hold ``"edges"``. An edge is
``{"source", "target", "weight", "network", "evidence": [{"post_1", "time_1", "post_2", "time_2"}]}``
(``user_1``/``user_2`` and, in member evidence, a missing source meaning the member, also work).

**AI-text evidence**: ``{"tokens": [str, ...], "surprisal": [float | null, ...]}`` (the whole
post, in order) is highlighted; ``{"tokens": [{"token", "position", "surprisal"}, ...]}`` (top-k)
is listed; see :func:`token_surprisal`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from detectors.policy import ACCOUNT_WINDOW
from stream.store.database import Store, _polars_dtype
from stream.store.tables import TABLES, utcnow

posts_t = TABLES["posts"]
results_t = TABLES["detector_results"]
flags_t = TABLES["flags"]
campaigns_t = TABLES["campaigns"]
members_t = TABLES["campaign_members"]
decisions_t = TABLES["review_decisions"]
audit_t = TABLES["audit_log"]
dead_letters_t = TABLES["dead_letters"]
metrics_t = TABLES["worker_metrics"]

# --------------------------------------------------------------------------------------------
# Vocabulary

#: Reviewer roles, least to most privileged.
ROLES: tuple[str, ...] = ("viewer", "reviewer", "lead")
#: Case states in which a decision can still be made.
UNDECIDED: tuple[str, ...] = ("open", "claimed", "escalated")
#: The default review SLA: a case older than this (since it was flagged) is overdue.
DEFAULT_SLA = timedelta(hours=24)
#: Longest statement of reasons kept; a DSA statement is a paragraph, not a document.
MAX_STATEMENT_CHARS = 5_000
#: The decision value that marks a reversal row in ``review_decisions``.
REVERSE = "reverse"


@dataclass(frozen=True)
class DecisionKind:
    """What a decision does to a case and what it teaches the detectors.

    ``label`` is the training label of the export (1: the detector was right, 0: it was wrong,
    None: no verdict yet); ``restrictive`` decisions restrict content or an account, so the
    EU Digital Services Act (art. 17) requires a statement of reasons with each.
    """

    status: str
    label: int | None
    restrictive: bool
    description: str


DECISIONS: dict[str, DecisionKind] = {
    "confirm": DecisionKind("confirmed", 1, False, "The detector is right; no enforcement action."),
    "dismiss": DecisionKind("dismissed", 0, False, "The detector is wrong or the post breaks no policy."),
    "escalate": DecisionKind("escalated", None, False, "Hand the case to a lead."),
    "label": DecisionKind("actioned", 1, True, "Attach a visible label (machine-written / coordinated)."),
    "reduce_reach": DecisionKind("actioned", 1, True, "Keep the post up but stop recommending it."),
    "remove": DecisionKind("actioned", 1, True, "Take the post down."),
    "suspend_account": DecisionKind("actioned", 1, True, "Suspend the account behind the post."),
}
_POSITIVE = tuple(name for name, kind in DECISIONS.items() if kind.label == 1)


@dataclass(frozen=True)
class ReasonCode:
    """A policy ground a decision can cite; ``decisions`` are the decisions it fits."""

    description: str
    decisions: tuple[str, ...]


REASON_CODES: dict[str, ReasonCode] = {
    "undisclosed_ai_text": ReasonCode("Machine-written text presented as a person's own", _POSITIVE),
    "coordinated_inauthentic": ReasonCode("Coordinated inauthentic behaviour", _POSITIVE),
    "spam": ReasonCode("Spam or platform manipulation", _POSITIVE),
    "impersonation": ReasonCode("Impersonation of a person or organisation", _POSITIVE),
    "false_positive": ReasonCode("Detector false positive (human-written, not coordinated)", ("dismiss",)),
    "disclosed_automation": ReasonCode("Automation that is disclosed or allowed (labelled bots)", ("dismiss",)),
    "insufficient_evidence": ReasonCode("Not enough evidence to act", ("dismiss", "escalate")),
    "needs_policy_call": ReasonCode("Needs a policy decision by a lead", ("escalate",)),
    "legal_risk": ReasonCode("Possible legal or regulatory issue", ("escalate",)),
    "other": ReasonCode("Other (explain in the statement)", tuple(DECISIONS)),
}

#: Why a decision is reversed (appeals under DSA art. 20 are the common one).
REVERSAL_REASONS: dict[str, str] = {
    "appeal_upheld": "The user's appeal was upheld",
    "reviewer_error": "The decision was a mistake",
    "new_evidence": "New evidence changes the outcome",
    "policy_change": "The policy changed",
}


def reason_codes_for(decision: str) -> list[str]:
    """The reason codes a decision may cite, for the console's picker."""
    return [code for code, reason in REASON_CODES.items() if decision in reason.decisions]


# --------------------------------------------------------------------------------------------
# Errors and results


class ReviewError(Exception):
    """A review action that cannot be done as asked; the message says why and what to do."""


class PermissionDenied(ReviewError):
    """The reviewer's role does not allow the action at all."""


class InvalidDecision(ReviewError, ValueError):
    """A decision, reason code or statement that is not acceptable."""


@dataclass(frozen=True)
class Reviewer:
    """The person acting: a name (the OIDC e-mail, or the local-mode name) and a role."""

    name: str
    role: str = "reviewer"

    def __post_init__(self) -> None:
        if not self.name or not self.name.strip():
            raise ValueError("a reviewer needs a name: set CHORUS_REVIEWER or log in")
        if self.role not in ROLES:
            raise ValueError(f"unknown reviewer role {self.role!r}; roles are {', '.join(ROLES)}")

    @property
    def can_decide(self) -> bool:
        """Viewers only read; reviewers and leads act on cases."""
        return self.role in ("reviewer", "lead")

    @property
    def is_lead(self) -> bool:
        return self.role == "lead"


@dataclass
class Outcome:
    """What an action did, case by case: a bulk action applies what it can and reports the rest.

    ``applied``: case ids changed; ``unchanged``: already in the asked-for state (claiming your own
    case again); ``conflicts``: case id -> why it was not changed, in words for the reviewer;
    ``decision_ids``: case id -> the ``review_decisions`` row written.
    """

    applied: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    conflicts: dict[str, str] = field(default_factory=dict)
    decision_ids: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Nothing was refused."""
        return not self.conflicts

    def summary(self) -> str:
        """One line for a toast or a banner."""
        parts = [f"{len(self.applied)} done"]
        if self.unchanged:
            parts.append(f"{len(self.unchanged)} already so")
        if self.conflicts:
            parts.append(f"{len(self.conflicts)} not changed")
        return ", ".join(parts)


# --------------------------------------------------------------------------------------------
# Cases: flags and campaigns behind one interface


@dataclass(frozen=True)
class _Kind:
    subject_type: str
    table: sa.Table
    key: sa.Column[Any]


_KINDS: dict[str, _Kind] = {
    "flag": _Kind("flag", flags_t, flags_t.c.flag_id),
    "campaign": _Kind("campaign", campaigns_t, campaigns_t.c.campaign_id),
}


def _kind(subject: str) -> _Kind:
    try:
        return _KINDS[subject]
    except KeyError:
        raise ValueError(f"unknown case type {subject!r}; use 'flag' or 'campaign'") from None


@dataclass(frozen=True)
class _Case:
    case_id: str
    status: str
    assignee: str | None

    def state(self) -> dict[str, Any]:
        return {"status": self.status, "assignee": self.assignee}


def _unique(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(str(i) for i in ids))


def _chunks(items: Sequence[str], size: int = 500) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _read_cases(conn: Connection, kind: _Kind, ids: Sequence[str]) -> dict[str, _Case]:
    cases: dict[str, _Case] = {}
    for chunk in _chunks(ids):
        query = sa.select(kind.key, kind.table.c.status, kind.table.c.assignee).where(kind.key.in_(chunk))
        for case_id, status, assignee in conn.execute(query):
            cases[case_id] = _Case(case_id, status, assignee)
    return cases


def _compare_and_set(conn: Connection, kind: _Kind, case: _Case, values: Mapping[str, Any]) -> bool:
    """Change ``case`` only if it is still as read; False means someone changed it meanwhile."""
    result = conn.execute(
        sa.update(kind.table)
        .where(
            kind.key == case.case_id,
            kind.table.c.status == case.status,
            kind.table.c.assignee.is_not_distinct_from(case.assignee),
        )
        .values(**values)
    )
    return result.rowcount == 1


def _moved_on(conn: Connection, kind: _Kind, case_id: str) -> str:
    """Why a compare-and-set missed: what the case looks like now."""
    now = _read_cases(conn, kind, [case_id]).get(case_id)
    if now is None:
        return "it no longer exists"
    return f"someone changed it meanwhile (now {_describe(now)}); reload and try again"


def _describe(case: _Case) -> str:
    return f"{case.status}, held by {case.assignee}" if case.assignee else case.status


def _require_actor(reviewer: Reviewer, what: str) -> None:
    if not reviewer.can_decide:
        raise PermissionDenied(f"{reviewer.name} is a {reviewer.role}: a viewer cannot {what}; ask a lead for the role")


def _audit(
    store: Store,
    conn: Connection,
    reviewer: Reviewer,
    kind: _Kind,
    action: str,
    case_id: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
) -> None:
    store.append_audit(
        actor=reviewer.name,
        action=f"{kind.subject_type}.{action}",
        subject_type=kind.subject_type,
        subject_id=case_id,
        before=dict(before) if before is not None else None,
        after={**after, "role": reviewer.role} if after is not None else None,
        conn=conn,
    )


def _claim_values(kind: _Kind, assignee: str | None, now: datetime) -> dict[str, Any]:
    values: dict[str, Any] = {"assignee": assignee}
    if "claimed_at" in kind.table.c:
        values["claimed_at"] = now if assignee else None
    return values


# --------------------------------------------------------------------------------------------
# Claim, release, assign


#: What a planner says about one case: ("conflict", why), ("unchanged", None) or ("change", new assignee).
_Plan = tuple[str, str | None]


def _reassign(
    store: Store,
    reviewer: Reviewer,
    subject: str,
    ids: Iterable[str],
    action: str,
    plan: Callable[[_Case], _Plan],
    now: datetime | None,
) -> Outcome:
    """Claim, release and assign: change who holds each case, case by case, audited, in one transaction.

    ``plan`` says what to do with a case as read. When the compare-and-set misses (someone changed
    the case meanwhile), the case is read again and planned again, so the reviewer is told what
    happened in the same words as if they had been second from the start ("already claimed by X").
    """
    kind, now, outcome = _kind(subject), now or utcnow(), Outcome()
    wanted = _unique(ids)
    with store.transaction() as conn:
        cases = _read_cases(conn, kind, wanted)
        for case_id in wanted:
            case = cases.get(case_id)
            for attempt in range(2):
                if case is None:
                    outcome.conflicts[case_id] = f"no {kind.subject_type} {case_id}"
                    break
                verdict, detail = plan(case)
                if verdict == "conflict":
                    outcome.conflicts[case_id] = str(detail)
                    break
                if verdict == "unchanged":
                    outcome.unchanged.append(case_id)
                    break
                status = ("claimed" if detail else "open") if case.status in ("open", "claimed") else case.status
                if _compare_and_set(conn, kind, case, {"status": status, **_claim_values(kind, detail, now)}):
                    _audit(store, conn, reviewer, kind, action, case_id, case.state(),
                           {"status": status, "assignee": detail})  # fmt: skip
                    outcome.applied.append(case_id)
                    break
                if attempt:
                    outcome.conflicts[case_id] = _moved_on(conn, kind, case_id)
                case = _read_cases(conn, kind, [case_id]).get(case_id)
    return outcome


def claim(
    store: Store, reviewer: Reviewer, ids: Iterable[str], *, subject: str = "flag", now: datetime | None = None
) -> Outcome:
    """Take cases to work on. A case someone else holds is refused and the reviewer is told who.

    Open cases become ``claimed``; escalated cases (leads only) stay ``escalated`` with an assignee.
    """
    _require_actor(reviewer, "claim cases")

    def plan(case: _Case) -> _Plan:
        if case.assignee == reviewer.name:
            return "unchanged", None
        if case.assignee:
            return "conflict", f"already claimed by {case.assignee}"
        if case.status not in UNDECIDED:
            return "conflict", f"already decided ({case.status})"
        if case.status == "escalated" and not reviewer.is_lead:
            return "conflict", "escalated: only a lead can take it"
        return "change", reviewer.name

    return _reassign(store, reviewer, subject, ids, "claim", plan, now)


def release(
    store: Store, reviewer: Reviewer, ids: Iterable[str], *, subject: str = "flag", now: datetime | None = None
) -> Outcome:
    """Give cases back to the queue: your own, or anyone's for a lead."""
    _require_actor(reviewer, "release cases")

    def plan(case: _Case) -> _Plan:
        if case.status not in UNDECIDED:
            return "conflict", f"already decided ({case.status})"
        if case.assignee is None:
            return "unchanged", None
        if case.assignee != reviewer.name and not reviewer.is_lead:
            return "conflict", f"held by {case.assignee}: only they or a lead can release it"
        return "change", None

    return _reassign(store, reviewer, subject, ids, "release", plan, now)


def assign(
    store: Store,
    reviewer: Reviewer,
    ids: Iterable[str],
    assignee: str,
    *,
    subject: str = "flag",
    now: datetime | None = None,
) -> Outcome:
    """A lead hands cases to a named reviewer (or takes them), even from someone else: audited."""
    _require_actor(reviewer, "assign cases")
    if not reviewer.is_lead:
        raise PermissionDenied(f"{reviewer.name} is a reviewer: only a lead assigns cases; claim them instead")
    assignee = assignee.strip()
    if not assignee:
        raise InvalidDecision("name the reviewer to assign to (use release to unassign)")

    def plan(case: _Case) -> _Plan:
        if case.status not in UNDECIDED:
            return "conflict", f"already decided ({case.status})"
        if case.assignee == assignee:
            return "unchanged", None
        return "change", assignee

    return _reassign(store, reviewer, subject, ids, "assign", plan, now)


# --------------------------------------------------------------------------------------------
# Decisions


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


def _insert_decision(conn: Connection, values: Mapping[str, Any]) -> int:
    result = conn.execute(sa.insert(decisions_t).values(**values))
    return int(result.inserted_primary_key[0])


def _refusal(
    conn: Connection, reviewer: Reviewer, kind: _Kind, case: _Case | None, case_id: str, decision: str
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


def _decide_one(
    store: Store,
    conn: Connection,
    reviewer: Reviewer,
    kind: _Kind,
    case: _Case | None,
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
    if not _compare_and_set(conn, kind, case, {"status": status, **_claim_values(kind, assignee, now)}):
        outcome.conflicts[case_id] = _moved_on(conn, kind, case_id)
        return None
    decision_id = _insert_decision(
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
    _audit(store, conn, reviewer, kind, "decide", case_id, case.state(), after)
    outcome.applied.append(case_id)
    outcome.decision_ids[case_id] = decision_id
    return decision_id


def _decided_by(conn: Connection, kind: _Kind, case_id: str) -> str:
    row = conn.execute(
        sa.select(decisions_t.c.decision, decisions_t.c.reviewer)
        .where(decisions_t.c.subject_type == kind.subject_type, decisions_t.c.subject_id == case_id)
        .order_by(decisions_t.c.decision_id.desc())
        .limit(1)
    ).first()
    return f" by {row.reviewer}" if row is not None else ""


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
    _require_actor(reviewer, "decide cases")
    text = _check_decision(decision, reason_code, statement)
    kind, now, outcome = _kind(subject), now or utcnow(), Outcome()
    wanted = _unique(ids)
    with store.transaction() as conn:
        cases = _read_cases(conn, kind, wanted)
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
    case: _Case | None,
    campaign_id: str,
    decision: str,
    reason_code: str,
    statement: str,
    now: datetime,
    outcome: Outcome,
) -> None:
    """A campaign decision and the same decision on its members' undecided flags, together."""
    flag_kind = _KINDS["flag"]
    member_flags = _unique(
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
    refusal = _refusal(conn, reviewer, _KINDS["campaign"], case, campaign_id, decision)
    if refusal is not None:
        outcome.conflicts[campaign_id] = refusal
        return
    flag_outcome = Outcome()
    flag_cases = _read_cases(conn, flag_kind, member_flags)
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
        _KINDS["campaign"],
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


# --------------------------------------------------------------------------------------------
# Reversal


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
        after = _as_dict(after)
        if after.get("decision_id") == decision_id:
            return {"before": _as_dict(before), "after": after}
    return None


def _as_dict(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:  # evidence is written by other stages: bad JSON is "no evidence", not a crash
            return {}
    return dict(value) if isinstance(value, Mapping) else {}


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
    _require_actor(reviewer, "reverse decisions")
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
            audit = _decision_audit(conn, "campaign", row.subject_id, decision_id) or {"after": {}}
            for flag_id, flag_decision in dict(audit["after"].get("flag_decisions") or {}).items():
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
    kind = _kind(row.subject_type) if row.subject_type in _KINDS else None
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
    case = _read_cases(conn, kind, [row.subject_id]).get(row.subject_id)
    expected = DECISIONS[row.decision].status if row.decision in DECISIONS else None
    if case is None or case.status != expected:
        outcome.conflicts[key] = f"the {row.subject_type} is no longer {expected}; reload"
        return None
    audit = _decision_audit(conn, row.subject_type, row.subject_id, row.decision_id)
    came_from = (audit or {}).get("before", {}).get("status")
    status = "escalated" if came_from == "escalated" else "open"
    if not _compare_and_set(conn, kind, case, {"status": status, **_claim_values(kind, None, now)}):
        outcome.conflicts[key] = _moved_on(conn, kind, row.subject_id)
        return None
    reversal_id = _insert_decision(
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
    _audit(
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


# --------------------------------------------------------------------------------------------
# Reading: frames


def _select_columns(*columns: Any) -> list[Any]:
    """JSON columns as JSON text (as ``Store.frame`` does), so a frame column has one type."""
    out = []
    for column in columns:
        if isinstance(getattr(column, "type", None), sa.JSON):
            out.append(sa.cast(column, sa.Text).label(column.name))
        else:
            out.append(column)
    return out


def _frame(conn: Connection, query: sa.Select[Any]) -> pl.DataFrame:
    schema = {c.name: _polars_dtype(c) for c in query.selected_columns}  # type: ignore[arg-type]
    return pl.read_database(query, conn, schema_overrides=schema, infer_schema_length=None)


@dataclass(frozen=True)
class FlagFilter:
    """What the flag queue shows. Frozen and made of tuples so it can key a cache.

    ``assignee``: a name, or ``""`` for unassigned only, or None for anyone. Ages are seconds
    since the flag was raised (the SLA clock).
    """

    statuses: tuple[str, ...] = ("open", "claimed")
    detectors: tuple[str, ...] = ()
    langs: tuple[str, ...] = ()
    account: str = ""
    assignee: str | None = None
    min_score: float | None = None
    max_score: float | None = None
    min_age_s: float | None = None
    max_age_s: float | None = None
    sort: str = "score"


#: Queue orders: name -> (label, ORDER BY). Ties break on flag_id so pages never overlap.
FLAG_SORTS: dict[str, tuple[str, tuple[Any, ...]]] = {
    "score": ("highest score first", (flags_t.c.score.desc(), flags_t.c.flagged_at.asc())),
    "oldest": ("oldest flag first (SLA)", (flags_t.c.flagged_at.asc(),)),
    "newest": ("newest flag first", (flags_t.c.flagged_at.desc(),)),
    "post_newest": ("newest post first", (flags_t.c.post_created_at.desc(),)),
    "account": ("account", (flags_t.c.account_id.asc(), flags_t.c.flagged_at.asc())),
}


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
    return conditions


@dataclass(frozen=True)
class QueuePage:
    """One page of a queue and the size of the whole filtered queue."""

    rows: pl.DataFrame
    total: int
    offset: int
    limit: int


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

    Adds ``age_s`` (since flagged), ``sla_left_s`` (negative: overdue) and a ``preview`` of the
    post's text (first 200 characters; display it as text, never as markup).
    """
    if flt.sort not in FLAG_SORTS:
        raise ValueError(f"unknown sort {flt.sort!r}; use one of {', '.join(FLAG_SORTS)}")
    now = now or utcnow()
    conditions = _flag_conditions(flt, now)
    columns = _select_columns(
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
        sa.select(*columns, sa.func.substr(posts_t.c.text, 1, 200).label("preview"))
        .select_from(flags_t.outerjoin(posts_t, posts_t.c.post_id == flags_t.c.post_id))
        .where(flags_t.c.flag_id.in_(page.scalar_subquery()))
        .order_by(*order)
    )
    count = sa.select(sa.func.count()).select_from(flags_t).where(*conditions)
    with store.engine.connect() as conn:
        frame = _frame(conn, query)
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
    skip = _unique(exclude)
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
    open_flags = (
        sa.select(sa.func.count())
        .select_from(flags_t.join(members_t, members_t.c.account_id == flags_t.c.account_id))
        .where(members_t.c.campaign_id == campaigns_t.c.campaign_id, flags_t.c.status.in_(UNDECIDED))
        .scalar_subquery()
        .label("open_flags")
    )
    columns = _select_columns(
        campaigns_t.c.campaign_id,
        campaigns_t.c.score,
        campaigns_t.c.size,
        campaigns_t.c.first_seen,
        campaigns_t.c.last_seen,
        campaigns_t.c.status,
        campaigns_t.c.assignee,
        campaigns_t.c.updated_at,
        campaigns_t.c.summary,
    )
    query = (
        sa.select(*columns, open_flags)
        .where(*conditions)
        .order_by(*CAMPAIGN_SORTS[flt.sort][1], campaigns_t.c.campaign_id)
        .limit(limit)
        .offset(offset)
    )
    count = sa.select(sa.func.count()).select_from(campaigns_t).where(*conditions)
    with store.engine.connect() as conn:
        frame = pl.read_database(
            query,
            conn,
            infer_schema_length=None,
            schema_overrides={**{c.name: _polars_dtype(c) for c in columns}, "open_flags": pl.Int64()},  # type: ignore[arg-type]
        )
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


# --------------------------------------------------------------------------------------------
# Reading: one post, one account, one campaign


def _rows(conn: Connection, query: sa.Select[Any]) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in conn.execute(query)]


def post_detail(store: Store, post_id: str) -> dict[str, Any] | None:
    """Everything the post view shows: the post, every detector's result, its flags and history.

    JSON columns come back parsed (dicts and lists); ``None`` when the post does not exist.
    """
    with store.engine.connect() as conn:
        post = conn.execute(sa.select(posts_t).where(posts_t.c.post_id == post_id)).first()
        if post is None:
            return None
        results = _rows(conn, sa.select(results_t).where(results_t.c.post_id == post_id).order_by(results_t.c.detector))
        flags = _rows(conn, sa.select(flags_t).where(flags_t.c.post_id == post_id).order_by(flags_t.c.flag_id))
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
        scores = _rows(
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
        "first_post": _utc(posts_row[1]),
        "last_post": _utc(posts_row[2]),
        "flags": flag_counts,
        "detectors": scores,
        "campaigns": campaigns_of_account(store, account_id),
    }


def _utc(value: Any) -> datetime | None:
    """A timestamp from an expression SQLite returns as text (date functions, some aggregates)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


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
        return _rows(conn, query)


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


def posts_by_id(store: Store, post_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Posts by id (for co-action evidence side by side); missing ids are left out."""
    wanted = _unique(post_ids)
    out: dict[str, dict[str, Any]] = {}
    with store.engine.connect() as conn:
        for chunk in _chunks(wanted):
            query = sa.select(posts_t.c.post_id, posts_t.c.account_id, posts_t.c.created_at, posts_t.c.text).where(
                posts_t.c.post_id.in_(chunk)
            )
            out.update({row["post_id"]: row for row in _rows(conn, query)})
    return out


@dataclass(frozen=True)
class Edge:
    """A link between two member accounts and the co-actions behind it."""

    source: str
    target: str
    weight: float
    network: str
    evidence: tuple[dict[str, Any], ...] = ()
    inferred: bool = False


def campaign_edges(summary: Any, members: Sequence[Mapping[str, Any]]) -> list[Edge]:
    """The account graph's links from the stored evidence (format in the module docstring).

    Tolerant by design: the coordination stage's format may grow; unknown keys are ignored and
    malformed entries skipped, never fatal. Undirected: a-b and b-a of one network merge.
    """
    raw: list[tuple[str | None, Mapping[str, Any]]] = []
    summary = _as_dict(summary) if not isinstance(summary, Mapping) else summary
    for entry in summary.get("edges") or []:
        if isinstance(entry, Mapping):
            raw.append((None, entry))
    for member in members:
        evidence = member.get("evidence")
        evidence = _as_dict(evidence) if not isinstance(evidence, Mapping) else evidence
        for entry in evidence.get("edges") or evidence.get("links") or []:
            if isinstance(entry, Mapping):
                raw.append((member.get("account_id"), entry))
    merged: dict[tuple[str, str, str], Edge] = {}
    for default_source, entry in raw:
        source = entry.get("source") or entry.get("user_1") or default_source
        target = entry.get("target") or entry.get("user_2") or entry.get("account_id")
        if not source or not target or source == target:
            continue
        a, b = sorted((str(source), str(target)))
        network = str(entry.get("network") or entry.get("type") or "co_action")
        try:
            weight = float(entry.get("weight") if entry.get("weight") is not None else 1.0)
        except (TypeError, ValueError):
            weight = 1.0
        evidence = tuple(e for e in (entry.get("evidence") or []) if isinstance(e, Mapping))
        key = (a, b, network)
        if key in merged:
            old = merged[key]
            seen = {json.dumps(e, sort_keys=True, default=str) for e in old.evidence}
            extra = tuple(e for e in evidence if json.dumps(e, sort_keys=True, default=str) not in seen)
            merged[key] = Edge(a, b, max(old.weight, weight), network, old.evidence + extra)
        else:
            merged[key] = Edge(a, b, weight, network, evidence)
    return sorted(merged.values(), key=lambda e: (-e.weight, e.source, e.target, e.network))


def inferred_edges(member_posts: pl.DataFrame, *, window_s: float = 3600.0, max_evidence: int = 3) -> list[Edge]:
    """Fallback links when a campaign has no stored edges: members who posted the same link or
    hashtag within ``window_s``. Marked ``inferred`` so the console says where they came from.
    """
    if member_posts.is_empty() or "urls" not in member_posts.columns:
        return []
    actions = []
    for network, column in (("co_link", "urls"), ("co_hashtag", "hashtags")):
        exploded = (
            member_posts.select(
                "post_id",
                "account_id",
                "created_at",
                pl.col(column).map_elements(_json_list, return_dtype=pl.List(pl.String)).alias("value"),
            )
            .explode("value")
            .drop_nulls("value")
            .with_columns(network=pl.lit(network))
        )
        actions.append(exploded)
    frame = pl.concat(actions)
    pairs = (
        frame.join(frame, on=["network", "value"], suffix="_2")
        .filter(
            (pl.col("account_id") < pl.col("account_id_2"))
            & ((pl.col("created_at") - pl.col("created_at_2")).dt.total_seconds().abs() <= window_s)
        )
        .sort("created_at")
    )
    edges = []
    for (a, b, network), group in pairs.group_by(["account_id", "account_id_2", "network"], maintain_order=True):
        evidence = tuple(
            {
                "post_1": r["post_id"],
                "time_1": r["created_at"].isoformat(),
                "post_2": r["post_id_2"],
                "time_2": r["created_at_2"].isoformat(),
                "value": r["value"],
            }
            for r in group.head(max_evidence).iter_rows(named=True)
        )
        edges.append(Edge(str(a), str(b), float(group.height), str(network), evidence, inferred=True))
    return sorted(edges, key=lambda e: (-e.weight, e.source, e.target, e.network))


def _json_list(value: Any) -> list[str]:
    if value is None:
        return []
    try:
        parsed = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return []
    return [str(v) for v in parsed] if isinstance(parsed, list) else []


def campaign_detail(store: Store, campaign_id: str, *, max_posts: int = 2_000) -> dict[str, Any] | None:
    """Everything the campaign view shows: scores, members with their activity, links, timeline."""
    with store.engine.connect() as conn:
        campaign = conn.execute(sa.select(campaigns_t).where(campaigns_t.c.campaign_id == campaign_id)).first()
        if campaign is None:
            return None
        members = _rows(
            conn,
            sa.select(members_t.c.account_id, members_t.c.weight, members_t.c.evidence)
            .where(members_t.c.campaign_id == campaign_id)
            .order_by(members_t.c.account_id),
        )
        member_ids = sa.select(members_t.c.account_id).where(members_t.c.campaign_id == campaign_id)
        stats = _frame(
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
        flag_stats = _rows(
            conn,
            sa.select(flags_t.c.account_id, flags_t.c.status, sa.func.count().label("n"))
            .where(flags_t.c.account_id.in_(member_ids))
            .group_by(flags_t.c.account_id, flags_t.c.status),
        )
        timeline = _frame(
            conn,
            sa.select(
                *_select_columns(
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
        edges = inferred_edges(timeline)
    return {
        "campaign": campaign_row,
        "members": members,
        "member_stats": stats,
        "member_flags": flag_stats,
        "edges": edges,
        "timeline": timeline,
        "decisions": decision_history(store, subject_type="campaign", subject_ids=[campaign_id], limit=200),
    }


# --------------------------------------------------------------------------------------------
# Reading: decisions, audit, export, overview


def decision_history(
    store: Store,
    *,
    subject_type: str | None = None,
    subject_ids: Sequence[str] | None = None,
    reviewer: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> pl.DataFrame:
    """Decisions newest first, each with ``reversed_by`` (the reversal's id, if any)."""
    reversal = decisions_t.alias("reversal")
    query = (
        sa.select(*decisions_t.c, reversal.c.decision_id.label("reversed_by"))
        .outerjoin(reversal, reversal.c.reverses_decision_id == decisions_t.c.decision_id)
        .order_by(decisions_t.c.decision_id.desc())
        .limit(limit)
        .offset(offset)
    )
    if subject_type:
        query = query.where(decisions_t.c.subject_type == subject_type)
    if subject_ids is not None:
        query = query.where(decisions_t.c.subject_id.in_(list(subject_ids) or [""]))
    if reviewer:
        query = query.where(decisions_t.c.reviewer == reviewer)
    with store.engine.connect() as conn:
        return _frame(conn, query)


def audit_trail(
    store: Store,
    *,
    subject_type: str | None = None,
    subject_id: str | None = None,
    actor: str | None = None,
    limit: int = 200,
    offset: int = 0,
) -> pl.DataFrame:
    """Audit rows newest first; ``before`` and ``after`` as JSON text."""
    query = sa.select(*_select_columns(*audit_t.c)).order_by(audit_t.c.audit_id.desc()).limit(limit).offset(offset)
    if subject_type:
        query = query.where(audit_t.c.subject_type == subject_type)
    if subject_id:
        query = query.where(audit_t.c.subject_id == subject_id)
    if actor:
        query = query.where(audit_t.c.actor == actor)
    with store.engine.connect() as conn:
        return _frame(conn, query)


def labelled_decisions(store: Store, *, include_text: bool = False, labelled_only: bool = True) -> pl.DataFrame:
    """The reviewers' verdicts as training and calibration data: one row per flag still decided.

    A flag's *standing* decision is its latest decision row unless that row is a reversal.
    ``label`` is 1 when the reviewer agreed with the detector (confirm or an action), 0 on a
    dismissal, null on an escalation (left out when ``labelled_only``). The detector's score,
    probability, threshold and model version are as they were flagged.
    """
    latest = (
        sa.select(decisions_t.c.subject_id, sa.func.max(decisions_t.c.decision_id).label("decision_id"))
        .where(decisions_t.c.subject_type == "flag")
        .group_by(decisions_t.c.subject_id)
        .subquery()
    )
    columns = [
        flags_t.c.flag_id,
        flags_t.c.post_id,
        flags_t.c.account_id,
        flags_t.c.detector,
        flags_t.c.model_version,
        flags_t.c.score,
        flags_t.c.probability,
        flags_t.c.threshold_name,
        flags_t.c.threshold,
        flags_t.c.post_created_at,
        flags_t.c.flagged_at,
        decisions_t.c.decision_id,
        decisions_t.c.decision,
        decisions_t.c.reason_code,
        decisions_t.c.reviewer,
        decisions_t.c.decided_at,
    ]
    if include_text:
        columns.append(posts_t.c.text)
    query = (
        sa.select(*columns)
        .select_from(
            latest.join(decisions_t, decisions_t.c.decision_id == latest.c.decision_id)
            .join(flags_t, flags_t.c.flag_id == latest.c.subject_id)
            .join(posts_t, posts_t.c.post_id == flags_t.c.post_id)
        )
        .where(decisions_t.c.decision != REVERSE)
        .order_by(decisions_t.c.decision_id)
    )
    with store.engine.connect() as conn:
        frame = _frame(conn, query)
    labels = {name: kind.label for name, kind in DECISIONS.items()}
    frame = frame.with_columns(label=pl.col("decision").replace_strict(labels, default=None, return_dtype=pl.Int8))
    if labelled_only:
        frame = frame.filter(pl.col("label").is_not_null())
    return frame


def detector_precision(store: Store, *, cutoffs: Sequence[float] = ()) -> pl.DataFrame:
    """How often reviewers agree with each detector: precision by detector and threshold.

    Precision = confirmed / (confirmed + dismissed) among standing decisions. With ``cutoffs``,
    adds one row per cutoff with the precision among decided flags scoring at least that much
    (``threshold_name = ">= cutoff"``), which shows where a higher threshold would have helped.
    """
    data = labelled_decisions(store)
    schema = {
        "detector": pl.String,
        "threshold_name": pl.String,
        "threshold": pl.Float64,
        "decided": pl.UInt32,
        "confirmed": pl.Int64,
        "dismissed": pl.Int64,
        "precision": pl.Float64,
    }
    if data.is_empty():
        return pl.DataFrame(schema=schema)

    def agg(frame: pl.DataFrame, by: list[str]) -> pl.DataFrame:
        return frame.group_by(by).agg(
            decided=pl.len(),
            confirmed=pl.col("label").cast(pl.Int64).sum(),
            dismissed=(pl.col("label") == 0).cast(pl.Int64).sum(),
            precision=pl.col("label").cast(pl.Float64).mean(),
        )

    rows = [agg(data, ["detector", "threshold_name", "threshold"])]
    for cutoff in cutoffs:
        above = data.filter(pl.col("score") >= cutoff)
        if above.height:
            rows.append(
                agg(above, ["detector"]).with_columns(
                    threshold_name=pl.lit(f">= {cutoff:g}"), threshold=pl.lit(float(cutoff))
                )
            )
    return pl.concat([r.select(list(schema)).cast(schema) for r in rows]).sort(["detector", "threshold"])  # type: ignore[arg-type]


def _bucket(column: sa.Column[Any], dialect: str, unit: str) -> Any:
    if unit not in ("hour", "day"):
        raise ValueError(f"unknown time bucket {unit!r}; use 'hour' or 'day'")
    if dialect == "postgresql":
        return sa.func.date_trunc(unit, column)
    return sa.func.strftime("%Y-%m-%d %H:00:00" if unit == "hour" else "%Y-%m-%d 00:00:00", column)


def flag_volume(
    store: Store, *, by: str = "flagged_at", unit: str = "hour", since: datetime | None = None
) -> pl.DataFrame:
    """Flags per time bucket and detector (``by``: ``flagged_at`` or ``post_created_at``)."""
    if by not in ("flagged_at", "post_created_at"):
        raise ValueError("flag_volume: by must be 'flagged_at' or 'post_created_at'")
    column = flags_t.c[by]
    bucket = _bucket(column, store.dialect, unit).label("bucket")
    query = sa.select(bucket, flags_t.c.detector, sa.func.count().label("flags")).where(column.is_not(None))
    if since is not None:
        query = query.where(column >= since)
    query = query.group_by(bucket, flags_t.c.detector).order_by(bucket, flags_t.c.detector)
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    return pl.DataFrame(
        {
            "bucket": [_utc(r[0]) for r in rows],
            "detector": [r[1] for r in rows],
            "flags": [int(r[2]) for r in rows],
        },
        schema={"bucket": pl.Datetime("us", "UTC"), "detector": pl.String, "flags": pl.Int64},
    )


def worker_throughput(store: Store, *, since: datetime | None = None, limit: int = 5_000) -> pl.DataFrame:
    """The workers' per-batch metrics (throughput, lag, rejects), newest ``limit`` batches, oldest first."""
    columns = [
        metrics_t.c.at,
        metrics_t.c.worker_id,
        metrics_t.c.batch_size,
        metrics_t.c.valid,
        metrics_t.c.rejected,
        metrics_t.c.flagged,
        metrics_t.c.lag_total,
        metrics_t.c.posts_per_s,
    ]
    query = sa.select(*columns).order_by(metrics_t.c.at.desc()).limit(limit)
    if since is not None:
        query = query.where(metrics_t.c.at >= since)
    with store.engine.connect() as conn:
        return _frame(conn, query).sort("at")


def dead_letter_reasons(store: Store) -> pl.DataFrame:
    """Dead letters by reason code, with the latest one's time."""
    query = (
        sa.select(
            dead_letters_t.c.reason,
            sa.func.count().label("messages"),
            sa.func.max(dead_letters_t.c.received_at).label("latest"),
        )
        .group_by(dead_letters_t.c.reason)
        .order_by(sa.func.count().desc(), dead_letters_t.c.reason)
    )
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    return pl.DataFrame(
        {"reason": [r[0] for r in rows], "messages": [int(r[1]) for r in rows], "latest": [_utc(r[2]) for r in rows]},
        schema={"reason": pl.String, "messages": pl.Int64, "latest": pl.Datetime("us", "UTC")},
    )


# --------------------------------------------------------------------------------------------
# Evidence helpers (pure)


def token_surprisal(evidence: Any) -> tuple[str, list[tuple[str, float | None]]] | None:
    """Per-token surprisal from a detector's evidence, if it has any.

    Returns ``("sequence", pairs)`` when ``tokens`` and ``surprisal`` are parallel lists covering
    the post (they can be highlighted in place), ``("top", pairs)`` for a list of
    ``{"token", "surprisal"}`` objects (a top-k list, shown as a table), or None. Non-finite or
    missing values become None; malformed evidence is None, never an error.
    """
    evidence = _as_dict(evidence) if not isinstance(evidence, Mapping) else evidence
    tokens = evidence.get("tokens")
    if not isinstance(tokens, list) or not tokens:
        return None
    if all(isinstance(t, Mapping) for t in tokens):
        ordered = sorted(tokens, key=lambda t: (t.get("position") is None, t.get("position") or 0))
        return "top", [(str(t.get("token", "")), _finite(t.get("surprisal"))) for t in ordered]
    surprisal = evidence.get("surprisal")
    if not isinstance(surprisal, list) or len(surprisal) != len(tokens):
        return None
    return "sequence", [(str(t), _finite(s)) for t, s in zip(tokens, surprisal, strict=True)]


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
