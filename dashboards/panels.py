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

**Statement templates** (:mod:`stream.review.templates`): where a page passes ``templates``, the
reviewer can start the statement from one; the case's known placeholders (``{account}``,
``{post_id}``, ...; the page passes their values as ``case``) are filled in as it is picked, and
``{reason}`` / ``{reason_code}`` from the reason code chosen when the decision is sent. A submit while
any ``[[...]]`` placeholder (or a known one the case cannot fill) is left in the statement is refused
beside the button and the form is kept as it was (:func:`stream.review.placeholders.refusal`).
On a laptop screen the panel's submit button must stay on the first screen, so nothing about templates
takes a row of its own: the picker is a small "Template" button beside the reason code, and what is left
to fill in ("2 to fill in") or, once nothing is, the statement as it will be sent ("Preview") is a small
popover beside the submit button. Leads write the templates on their
own page (``views/templates.py``, :mod:`dashboards.templates_view`).

**The action panel** (:func:`action_panel`, :func:`claim_buttons`): the post and campaign pages put
their decision panel in a right column kept in view while the page scrolls, with Claim / Release at
its top. A page's **sections** (:func:`section`) say in a sentence when they have nothing to show.

**Team notes** (:func:`notes_section`, :mod:`stream.review.notes`): the notes on a case with author
and time, and (for reviewers and leads) a box to add one. Notes are internal: never part of a
statement, never exported.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from dashboards import data, evidence_view, render
from dashboards.data import NOTICE_KEY
from stream.review import placeholders
from stream.review.claims import claim, release
from stream.review.notes import MAX_NOTE_CHARS, add_note
from stream.review.templates import StatementTemplate
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

    ``submitted`` is True only for a complete form (a decision and a reason code chosen, no placeholder
    left in the statement); a submit without them is refused beside the button and reads as not
    submitted. ``decision`` and ``reason_code`` are ``""`` while nothing is chosen; ``statement`` is
    the one to send, the case's known placeholders filled.
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


def show_kept_notice(key: str) -> None:
    """Show (once) the notice :func:`keep_notice` kept for ``key``, where the page calls this."""
    show_notice(st.session_state.pop(_notice_key(key), None))


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


def _use_template(key: str, nonce: int, templates: dict[int, StatementTemplate], case: dict[str, str]) -> None:
    """A template was picked: its body, the case's placeholders filled, becomes the statement; its reason
    code is chosen too when a decision it fits is chosen and no reason code is yet."""
    picked = st.session_state.get(f"{key}-template-{nonce}")
    template = templates.get(picked) if picked is not None else None
    if template is None:
        return
    st.session_state[f"{key}-statement-{nonce}"] = placeholders.fill(template.body, case)
    decision = st.session_state.get(f"{key}-decision-{nonce}")
    reason_key = f"{key}-reason-{decision or 'none'}-{nonce}"
    fits = decision and template.reason_code in reason_codes_for(decision)
    if fits and not st.session_state.get(reason_key):
        st.session_state[reason_key] = template.reason_code


def _template_picker(key: str, nonce: int, templates: Sequence[StatementTemplate], case: dict[str, str]) -> None:
    """The templates to start form ``key``'s statement from; picking one replaces the statement."""
    by_id = {t.template_id: t for t in templates}
    st.selectbox(
        "Statement template",
        list(by_id),
        index=None,
        key=f"{key}-template-{nonce}",
        format_func=lambda i: by_id[i].label(),
        placeholder="Start the statement from a template (optional)",
        help="A lead's statement with this case's ids filled in (picking one replaces the statement); "
        "replace every [[...]] with what you found",
        on_change=_use_template,
        args=(key, nonce, by_id, case),
    )


def _statement_check(row: DeltaGenerator, to_write: Sequence[str], sent: str | None) -> None:
    """Beside the submit button, in ``row``: a small popover naming what is ``to_write`` before the statement
    can go ("2 to fill in"), and the statement as the user will be told it (``sent``, placeholders filled)
    when it differs from what is typed. Nothing when there is neither: the button keeps the row."""
    if not to_write and sent is None:
        return
    label = f"{len(to_write)} to fill in" if to_write else "Preview"
    icon = ":material/edit_note:" if to_write else ":material/visibility:"
    with row.popover(label, icon=icon, help="What is left to fill in; the statement the user will be told"):
        if to_write:
            st.caption("To fill in before submitting: " + ", ".join(render.md_escape(p) for p in to_write))
        if sent is not None:
            st.caption("The statement the user will be told, placeholders filled:")
            st.text(render.visible(sent))


def decision_form(
    key: str,
    reviewer: Reviewer,
    *,
    with_next: bool = False,
    submit_label: str = "Submit",
    subject: str | None = None,
    templates: Sequence[StatementTemplate] = (),
    case: Mapping[str, str] | None = None,
) -> DecisionInput:
    """Decision, reason code and statement, nothing chosen in advance; submit buttons (disabled for
    viewers) with the notices of the last action beside them.

    ``subject`` (:data:`stream.review.vocabulary.SUBJECTS`, e.g. from
    :func:`~stream.review.vocabulary.subject_of`) puts the reason codes for that kind of case first.
    ``templates`` are offered to start the statement from (each named with the reason code it is written
    for); ``case`` holds the values of the known placeholders this case fills
    (:func:`stream.review.placeholders.case_values`).
    """
    nonce = _nonce(key)
    case_values = dict(case or {})
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
    # With templates, the picker is a small button beside the reason code: a row of its own would push the
    # submit button off a laptop's first screen (measured by tests/test_console_browser.py).
    reason_row = st.container(horizontal=True, wrap=False, vertical_alignment="bottom") if templates else st.container()
    reason = reason_row.selectbox(
        "Reason code",
        codes,
        index=None,
        key=f"{key}-reason-{decision or 'none'}-{nonce}",
        format_func=lambda code: f"{code}: {REASON_CODES[code].description}",
        placeholder="Choose a reason code" if decision else "Choose a decision first",
        disabled=not decision,
    )
    if templates:
        with reason_row.popover("Template", icon=":material/description:", help="Start the statement from a template"):
            _template_picker(key, nonce, templates, case_values)
    needs_statement = bool(decision) and DECISIONS[decision].restrictive
    typed = st.text_area(
        "Statement of reasons" + (" (required)" if needs_statement else ""),
        key=f"{key}-statement-{nonce}",
        max_chars=MAX_STATEMENT_CHARS,
        placeholder="What you found and which policy it breaks; the user is told this.",
    )
    statement = placeholders.fill(typed, {**case_values, **placeholders.case_values(reason_code=reason)})
    left = placeholders.unfilled(statement)
    # {reason} and {reason_code} fill themselves once a reason code is chosen: not the reviewer's to write.
    to_write = [p for p in left if reason or p not in ("{reason}", "{reason_code}")]
    disabled = not reviewer.can_decide
    # What is left to fill in and the statement as it will be sent sit beside the submit button, in a small
    # popover: above it, they pushed the button off a laptop's first screen (tests/test_console_browser.py).
    submit_row = st.container(horizontal=True, vertical_alignment="center")
    submitted = submit_row.button(
        submit_label,
        key=f"{key}-submit-{nonce}",
        type="primary",
        shortcut="Ctrl+Enter",
        disabled=disabled,
        width="stretch",
    )
    _statement_check(submit_row, to_write, statement if statement != (typed or "") else None)
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
    elif (submitted or and_next) and left:
        st.error(render.md_escape(placeholders.refusal(statement)))
        complete = False  # refused: nothing is sent and the form stays as it is
    show_notice(st.session_state.pop(_notice_key(key), None))
    return DecisionInput(
        decision or "", reason or "", statement, complete and (submitted or and_next), complete and and_next
    )


def action_panel(key: str) -> tuple[DeltaGenerator, DeltaGenerator]:
    """The page's body (left, three fifths) and its decision panel (right): a bordered container keyed
    ``key``, kept in view while the page scrolls (:func:`dashboards.evidence_view.action_panel_css`), so
    the decision is always beside whatever part of the evidence the reviewer is reading."""
    body, side = st.columns([3, 2], gap="large")
    with side:
        st.html(evidence_view.action_panel_css(key))
        panel = st.container(key=key, border=True)
    return body, panel


def claim_buttons(
    reviewer: Reviewer, case_id: str, holder: str | None, *, form_key: str, subject: str = "flag"
) -> None:
    """Claim (``L``) and Release (``U``) of one case, side by side, at the top of a decision panel.

    ``holder`` is who holds the case now (None: nobody); ``subject`` is ``"flag"`` or ``"campaign"``.
    What the action answered is shown beside form ``form_key``'s submit button (:func:`keep_notice`),
    where the reviewer is looking, not at the top of the page.
    """
    columns = st.columns(2)
    claim_clicked = columns[0].button(
        "Claim", shortcut="L", disabled=not reviewer.can_decide or holder == reviewer.name, width="stretch"
    )
    release_clicked = columns[1].button(
        "Release", shortcut="U", disabled=not reviewer.can_decide or holder is None, width="stretch"
    )
    if claim_clicked or release_clicked:
        data.act(claim if claim_clicked else release, reviewer, [case_id], subject=subject)
        keep_notice(form_key)
        st.rerun()


def section(title: str, rows: pl.DataFrame, *, empty: str) -> bool:
    """A section's heading and, when ``rows`` is empty, the sentence ``empty`` saying so; whether there is
    anything to show under the heading (the caller draws it: a table, a chart)."""
    st.subheader(title)
    if rows.is_empty():
        st.caption(empty)
        return False
    return True


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


# --------------------------------------------------------------------------------------------
# Team notes and statement templates


def notes_section(
    reviewer: Reviewer,
    notes: pl.DataFrame,
    *,
    key: str,
    subject_type: str,
    subject_id: str,
    subject_label: str,
) -> None:
    """The team's notes (newest first, author and time, what each is about) and, for reviewers and leads,
    a box to add one to ``subject_type`` ``subject_id`` (``subject_label`` names it for people)."""
    st.caption("Internal to the review team: never part of the statement of reasons the user is told, never exported.")
    if notes.is_empty():
        st.caption("No notes yet.")
    for note in notes.iter_rows(named=True):
        with st.container(border=True):
            about = f"{note['subject_type']} {render.visible(note['subject_id'])}"
            st.caption(
                f"{render.md_escape(note['author'])} · {render.when(note['created_at'])} · on {render.md_escape(about)}"
            )
            st.text(render.visible(note["body"]))
    generation = int(st.session_state.get(f"{key}-note-generation", 0))
    body = st.text_area(
        f"Note on {render.md_escape(subject_label)}",
        key=f"{key}-note-{generation}",
        max_chars=MAX_NOTE_CHARS,
        placeholder="What the next reviewer should know; the user never sees it.",
        disabled=not reviewer.can_decide,
    )
    if st.button("Add note", key=f"{key}-note-add", disabled=not reviewer.can_decide):
        if data.act(add_note, reviewer, subject_type, subject_id, body) is not None:
            data.notify("success", f"Note added to {subject_label}: only the team sees it.")
            st.session_state[f"{key}-note-generation"] = generation + 1
        keep_notice(f"{key}-note")
        st.rerun()
    if not reviewer.can_decide:
        st.caption("Viewers read the notes but cannot add one.")
    show_kept_notice(f"{key}-note")
