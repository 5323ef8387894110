"""Controls the pages share: the decision form (reason code + statement of reasons) and claim buttons.

Keyboard shortcuts (Streamlit's ``shortcut=``; they do not fire while typing in a text box, except
with Ctrl): ``1``-``4`` pick confirm / dismiss / escalate / action, ``Ctrl+Enter`` submits,
``Shift+Enter`` submits and opens the next case, ``L`` claims, ``U`` releases. Each widget key
carries a per-form counter that moves on after a successful submit, so the next case starts with
an empty form (Streamlit forbids writing to a widget's state once it is drawn).

Nothing is chosen for the reviewer: the form starts with no decision and no reason code, and a
submit (a click or ``Ctrl+Enter``) without both is refused beside the button, never sent. The
reason codes fit the case (``subject``: AI-text grounds first on a machine-written post,
coordination grounds on a campaign). What an action answered is shown beside the submit button
too (:func:`keep_notice`), not at the top of the page where nobody looking at the button sees it.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import polars as pl
import streamlit as st

from dashboards import render
from dashboards.data import NOTICE_KEY
from stream.review.vocabulary import DECISIONS, REASON_CODES, reason_codes_for
from stream.store.reviewers import MAX_STATEMENT_CHARS, Reviewer

#: The decisions offered first, each with its shortcut key; the enforcement actions share "4".
QUICK_DECISIONS: tuple[tuple[str, str], ...] = (("confirm", "1"), ("dismiss", "2"), ("escalate", "3"), ("label", "4"))
DECISION_LABELS: dict[str, str] = {
    "confirm": "Confirm",
    "dismiss": "Dismiss",
    "escalate": "Escalate",
    "label": "Action: label",
    "reduce_reach": "Action: reduce reach",
    "remove": "Action: remove",
    "suspend_account": "Action: suspend account",
}


@dataclass(frozen=True)
class DecisionInput:
    """What the reviewer filled in and which submit button they pressed.

    ``submitted`` is True only for a complete form (a decision and a reason code chosen); a submit
    without them is refused beside the button and reads as not submitted. ``decision`` and
    ``reason_code`` are ``""`` while nothing is chosen.
    """

    decision: str
    reason_code: str
    statement: str
    submitted: bool
    and_next: bool


def _nonce(key: str) -> int:
    return int(st.session_state.setdefault(f"{key}-nonce", 0))


def reset_form(key: str) -> None:
    """Start the form ``key`` afresh on the next run (after a successful decision)."""
    st.session_state[f"{key}-nonce"] = _nonce(key) + 1


def _pick(state_key: str, decision: str) -> None:
    st.session_state[state_key] = decision


def _notice_key(key: str) -> str:
    return f"{key}-notice"


def keep_notice(key: str) -> None:
    """Show the notice the last action left (:func:`dashboards.data.notify`) beside form ``key``'s
    submit button on the next run, instead of at the top of the page. Call it after ``data.act``."""
    notice = st.session_state.pop(NOTICE_KEY, None)
    if notice:
        st.session_state[_notice_key(key)] = notice


def clear_notice(key: str) -> None:
    """Forget a notice kept for form ``key`` (the page moves on to where another notice says more)."""
    st.session_state.pop(_notice_key(key), None)


def show_notice(notice: dict[str, Any] | None) -> None:
    """A notice (``{"level", "message", "details"}``), its conflicts listed as a table."""
    if not notice:
        return
    box = {"success": st.success, "warning": st.warning, "error": st.error}.get(notice["level"], st.info)
    box(render.md_escape(notice["message"]))
    if notice.get("details"):
        details = notice["details"]
        st.dataframe(
            render.visible_columns(pl.DataFrame({"case": list(details), "why not": list(details.values())})),
            hide_index=True,
        )


def decision_form(
    key: str,
    reviewer: Reviewer,
    *,
    with_next: bool = False,
    submit_label: str = "Submit",
    subject: str | None = None,
) -> DecisionInput:
    """Decision, reason code and statement, nothing chosen in advance; submit buttons (disabled for
    viewers) with the notices of the last action beside them.

    ``subject`` (:data:`stream.review.vocabulary.SUBJECTS`, e.g. from
    :func:`~stream.review.vocabulary.subject_of`) puts the reason codes for that kind of case first.
    """
    nonce = _nonce(key)
    decision_key = f"{key}-decision-{nonce}"
    for pair in (QUICK_DECISIONS[:2], QUICK_DECISIONS[2:]):  # two by two: fits a side panel
        for column, (name, shortcut) in zip(st.columns(len(pair)), pair, strict=True):
            column.button(
                DECISION_LABELS[name],
                key=f"{key}-quick-{name}-{nonce}",
                shortcut=shortcut,
                on_click=_pick,
                args=(decision_key, name),
                width="stretch",
            )
    explained = "; ".join(f"{DECISION_LABELS[d]}: {kind.description}" for d, kind in DECISIONS.items())
    decision = st.selectbox(
        "Decision",
        list(DECISIONS),
        index=None,
        key=decision_key,
        format_func=DECISION_LABELS.__getitem__,
        placeholder="Choose a decision (keys 1-4)",
        help=explained,
    )
    codes = reason_codes_for(decision, subject) if decision else []
    reason = st.selectbox(
        "Reason code",
        codes,
        index=None,
        key=f"{key}-reason-{decision or 'none'}-{nonce}",
        format_func=lambda code: f"{code}: {REASON_CODES[code].description}",
        placeholder="Choose a reason code" if decision else "Choose a decision first",
        disabled=not decision,
    )
    needs_statement = bool(decision) and DECISIONS[decision].restrictive
    statement = st.text_area(
        "Statement of reasons" + (" (required)" if needs_statement else ""),
        key=f"{key}-statement-{nonce}",
        max_chars=MAX_STATEMENT_CHARS,
        placeholder="What you found and which policy it breaks; the user is told this.",
    )
    disabled = not reviewer.can_decide
    submitted = st.button(
        submit_label,
        key=f"{key}-submit-{nonce}",
        type="primary",
        shortcut="Ctrl+Enter",
        disabled=disabled,
        width="stretch",
    )
    and_next = False
    if with_next:
        and_next = st.button(
            "Submit and next",
            key=f"{key}-submit-next-{nonce}",
            shortcut="Shift+Enter",
            disabled=disabled,
            width="stretch",
        )
    if disabled:
        st.caption("Viewers cannot decide; ask a lead for the reviewer role.")
    complete = bool(decision and reason)
    if (submitted or and_next) and not complete:
        missing = "a decision and a reason code" if not decision else "a reason code"
        st.error(f"Nothing was decided: choose {missing} first.")
    show_notice(st.session_state.pop(_notice_key(key), None))
    return DecisionInput(
        decision or "", reason or "", statement or "", complete and (submitted or and_next), complete and and_next
    )


def selectable_table(frame: Any, *, prefix: str, state: Hashable, **kwargs: Any) -> list[int]:
    """A table whose rows can be ticked; returns the ticked row positions.

    The widget key changes with ``state`` (the filter and page shown) and after every action
    (:func:`after_action`), so a selection never outlives the rows it was made on: a decided row
    leaves the queue and the rows below it move up.
    """
    generation = st.session_state.get(f"{prefix}-generation", 0)
    key = f"{prefix}-table-{abs(hash((state, generation)))}"
    event = st.dataframe(frame, key=key, on_select="rerun", selection_mode="multi-row", hide_index=True, **kwargs)
    return [i for i in event.selection.rows if i < len(frame)]


def after_action(prefix: str) -> None:
    """Forget the table's selection and rerun, which shows the action's outcome."""
    st.session_state[f"{prefix}-generation"] = st.session_state.get(f"{prefix}-generation", 0) + 1
    st.rerun()


def pager(prefix: str, *, total: int, limit: int, shortcuts: bool = False) -> int:
    """Previous / next page buttons over ``total`` rows; returns the offset to show."""
    offset = int(st.session_state.setdefault(f"{prefix}-offset", 0))
    last_page = max((total - 1) // limit, 0)
    columns = st.columns([1, 1, 6])
    if columns[0].button("Previous page", key=f"{prefix}-previous", shortcut="P" if shortcuts else None,
                         disabled=offset == 0):  # fmt: skip
        st.session_state[f"{prefix}-offset"] = max(offset - limit, 0)
        st.rerun()
    if columns[1].button("Next page", key=f"{prefix}-next", shortcut="N" if shortcuts else None,
                         disabled=offset // limit >= last_page):  # fmt: skip
        st.session_state[f"{prefix}-offset"] = offset + limit
        st.rerun()
    return offset


def subject_id(param: str, *, title: str, hint: str) -> str:
    """The id in the query parameter ``param``; without one, ask for it and stop the page."""
    value = st.query_params.get(param)
    if value:
        return str(value)
    st.info(hint)
    entered = st.text_input(f"{title} id", key=f"{param}-open")
    if entered.strip():
        st.query_params[param] = entered.strip()
        st.rerun()
    st.stop()


def decision_history(history: Any, *, per_case: bool = False) -> None:
    """A case's decisions, reversals included, oldest first; ``per_case`` adds which case (a post's
    page gathers the decisions of all its flags)."""
    st.subheader("History")
    if history.is_empty():
        st.caption("No decisions yet.")
        return
    columns = ["decision_id", *(["subject_id"] if per_case else []), "decision", "reason_code", "statement",
               "reviewer", "decided_at", "reverses_decision_id", "reversed_by"]  # fmt: skip
    st.dataframe(history.select(columns), hide_index=True)
