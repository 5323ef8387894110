"""The words of review: case states, decisions and what each teaches the detectors, reason codes.

Kept apart from the code that acts on cases because the console's forms, the training export and
the decision rules must all offer and check exactly the same lists.
"""

from __future__ import annotations

from dataclasses import dataclass

from stream.config import ReviewConfig

#: Case states in which a decision can still be made.
UNDECIDED: tuple[str, ...] = ("open", "claimed", "escalated")
#: The review SLA when none is configured (``[review] sla_hours``): older undecided cases are overdue.
DEFAULT_SLA = ReviewConfig().sla
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
