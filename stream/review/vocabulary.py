"""The words of review: case states, decisions and what each teaches the detectors, reason codes.

Kept apart from the code that acts on cases because the console's forms, the training export and
the decision rules must all offer and check exactly the same lists. Reason codes carry the kinds of
case they fit (:data:`SUBJECTS`), so a form about a machine-written post offers the AI-text grounds
first and one about a campaign the coordination grounds.
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


#: What a case is about, as far as reason codes go: machine-written text, coordinated behaviour
#: (a campaign, or a post flagged by the coordination stage), spam.
SUBJECTS: tuple[str, ...] = ("ai_text", "coordination", "spam")
#: The subject of a flag raised by each detector, and of a campaign; anything else has none.
SUBJECT_OF: dict[str, str] = {
    "aitext": "ai_text",
    "llm_boilerplate": "ai_text",
    "coordination": "coordination",
    "campaign": "coordination",
}


@dataclass(frozen=True)
class ReasonCode:
    """A policy ground a decision can cite; ``decisions`` are the decisions it fits.

    ``subjects`` are the kinds of case it is the usual ground for (:data:`SUBJECTS`); empty means
    any case (a false positive, too little evidence, a policy call).
    """

    description: str
    decisions: tuple[str, ...]
    subjects: tuple[str, ...] = ()


REASON_CODES: dict[str, ReasonCode] = {
    "undisclosed_ai_text": ReasonCode("Machine-written text presented as a person's own", _POSITIVE, ("ai_text",)),
    "coordinated_inauthentic": ReasonCode("Coordinated inauthentic behaviour", _POSITIVE, ("coordination",)),
    "spam": ReasonCode("Spam or platform manipulation", _POSITIVE, ("spam", "coordination")),
    "impersonation": ReasonCode("Impersonation of a person or organisation", _POSITIVE, ("coordination",)),
    "false_positive": ReasonCode("Detector false positive (human-written, not coordinated)", ("dismiss",)),
    "disclosed_automation": ReasonCode(
        "Automation that is disclosed or allowed (labelled bots)", ("dismiss",), ("ai_text", "coordination")
    ),
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


def subject_of(kind: str | None) -> str | None:
    """The subject (:data:`SUBJECTS`) of a flag by detector ``kind``, or of ``"campaign"``; None if unknown."""
    return SUBJECT_OF.get(kind or "")


def reason_codes_for(decision: str, subject: str | None = None) -> list[str]:
    """The reason codes a decision may cite, for the console's picker.

    With a ``subject`` (:data:`SUBJECTS`) the codes for that kind of case come first, then those for
    any case, then those for other kinds of case (still offered: a post flagged as machine-written
    may turn out to be spam). Without one, the order of :data:`REASON_CODES`.
    """
    codes = [code for code, reason in REASON_CODES.items() if decision in reason.decisions]
    if subject is None:
        return codes

    def fit(code: str) -> int:
        subjects = REASON_CODES[code].subjects
        return 0 if subject in subjects else 1 if not subjects else 2

    return sorted(codes, key=fit)
