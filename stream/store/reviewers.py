"""The people who change the store by hand: who they are, what their role allows, what came of it.

Reviewers decide flags and campaigns in the console (:mod:`stream.review`) and reverse the
policies' automated actions (:mod:`stream.policy.actions`). Both record every change in the
append-only ``audit_log`` under the person's name and role, refuse a viewer in the same words,
and report a bulk change case by case. That shared part lives here, in the store layer, so the
policy package never imports the console's code (a worker runs the policy stage).

**Roles** (:data:`ROLES`): a *viewer* reads; a *reviewer* claims, decides and reverses their own
work; a *lead* also assigns, decides escalated cases and reverses anyone's decisions. What each
action allows beyond "a viewer cannot act" is checked by the module that owns the action.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

from stream.store.database import Store

#: Reviewer roles, least to most privileged.
ROLES: tuple[str, ...] = ("viewer", "reviewer", "lead")
#: Longest statement of reasons kept; a DSA statement is a paragraph, not a document.
MAX_STATEMENT_CHARS = 5_000


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


def require_actor(reviewer: Reviewer, what: str) -> None:
    """Refuse a viewer before anything is read or written; ``what`` completes "a viewer cannot ..."."""
    if not reviewer.can_decide:
        raise PermissionDenied(f"{reviewer.name} is a {reviewer.role}: a viewer cannot {what}; ask a lead for the role")


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


def audit(
    store: Store,
    conn: Connection,
    reviewer: Reviewer,
    *,
    action: str,
    subject_type: str,
    subject_id: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
) -> int:
    """Append the audit row of one change inside the change's own transaction (``conn``).

    The role is recorded with the new state because roles change: an appeal reads what the
    person was allowed to do when they acted, not what they may do now.
    """
    return store.append_audit(
        actor=reviewer.name,
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        before=dict(before) if before is not None else None,
        after={**after, "role": reviewer.role} if after is not None else None,
        conn=conn,
    )
