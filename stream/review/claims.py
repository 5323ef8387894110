"""Who works a case: claim, release and assign, each change audited, refusals explained.

A claim is how "two analysts never work the same case unknowingly" holds: nobody decides a case
another reviewer holds, so the second reviewer to claim is told who has it. A reviewer claims
and releases their own cases; a lead also assigns (audited, even away from someone else) and
releases anyone's. Open cases become ``claimed``; escalated cases (leads only) stay
``escalated`` with an assignee.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from stream.review.cases import Case, audit, claim_values, compare_and_set, kind_of, moved_on, read_cases, unique
from stream.review.vocabulary import UNDECIDED
from stream.store.database import Store
from stream.store.reviewers import InvalidDecision, Outcome, PermissionDenied, Reviewer, require_actor
from stream.store.tables import utcnow

#: What a planner says about one case: ("conflict", why), ("unchanged", None) or ("change", new assignee).
_Plan = tuple[str, str | None]


def _reassign(
    store: Store,
    reviewer: Reviewer,
    subject: str,
    ids: Iterable[str],
    action: str,
    plan: Callable[[Case], _Plan],
    now: datetime | None,
) -> Outcome:
    """Change who holds each case, case by case, audited, in one transaction.

    ``plan`` says what to do with a case as read. When the compare-and-set misses (someone changed
    the case meanwhile), the case is read again and planned again, so the reviewer is told what
    happened in the same words as if they had been second from the start ("already claimed by X").
    """
    kind, now, outcome = kind_of(subject), now or utcnow(), Outcome()
    wanted = unique(ids)
    with store.transaction() as conn:
        cases = read_cases(conn, kind, wanted)
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
                if compare_and_set(conn, kind, case, {"status": status, **claim_values(kind, detail, now)}):
                    audit(store, conn, reviewer, kind, action, case_id, case.state(),
                          {"status": status, "assignee": detail})  # fmt: skip
                    outcome.applied.append(case_id)
                    break
                if attempt:
                    outcome.conflicts[case_id] = moved_on(conn, kind, case_id)
                case = read_cases(conn, kind, [case_id]).get(case_id)
    return outcome


def claim(
    store: Store, reviewer: Reviewer, ids: Iterable[str], *, subject: str = "flag", now: datetime | None = None
) -> Outcome:
    """Take cases to work on. A case someone else holds is refused and the reviewer is told who."""
    require_actor(reviewer, "claim cases")

    def plan(case: Case) -> _Plan:
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
    require_actor(reviewer, "release cases")

    def plan(case: Case) -> _Plan:
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
    require_actor(reviewer, "assign cases")
    if not reviewer.is_lead:
        raise PermissionDenied(f"{reviewer.name} is a reviewer: only a lead assigns cases; claim them instead")
    assignee = assignee.strip()
    if not assignee:
        raise InvalidDecision("name the reviewer to assign to (use release to unassign)")

    def plan(case: Case) -> _Plan:
        if case.status not in UNDECIDED:
            return "conflict", f"already decided ({case.status})"
        if case.assignee == assignee:
            return "unchanged", None
        return "change", assignee

    return _reassign(store, reviewer, subject, ids, "assign", plan, now)
