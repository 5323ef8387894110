"""The statement templates page's parts: the templates as a table, and the lead's editor.

Leads create, edit, disable and enable the templates reviewers start a statement of reasons from
(:mod:`stream.review.templates`; every change audited there, in the same transaction); everyone else
reads them here. The editor's fields are keyed by a generation counter that moves on after each save,
so a saved template leaves an empty form (Streamlit forbids writing to a drawn widget's state).
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
import streamlit as st

from dashboards import data, render
from dashboards.panels import keep_notice, show_kept_notice
from stream.review import placeholders
from stream.review.templates import MAX_NAME_CHARS, StatementTemplate, save_template, set_enabled
from stream.review.vocabulary import REASON_CODES
from stream.store.reviewers import MAX_STATEMENT_CHARS, Reviewer
from stream.store.tables import TEMPLATE_SUBJECTS

#: The editor's widget keys, one per field (with the editor's generation appended).
_EDITOR_FIELDS = ("name", "subjects", "reason", "body")


def _load_template(prefix: str, generation: int, templates: dict[int, StatementTemplate]) -> None:
    """The template chosen to edit fills the editor's fields (a new one empties them)."""
    picked = templates.get(st.session_state.get(f"{prefix}-pick-{generation}"))
    values = {
        "name": picked.name if picked else "",
        "subjects": list(picked.subjects) if picked else [],
        "reason": picked.reason_code if picked else None,
        "body": picked.body if picked else "",
    }
    for name in _EDITOR_FIELDS:
        st.session_state[f"{prefix}-{name}-{generation}"] = values[name]


def template_table(templates: Sequence[StatementTemplate]) -> None:
    """The templates (disabled ones included, as :func:`dashboards.team_data.statement_templates` gives them
    with ``include_disabled``) and what their placeholders mean: what every reviewer may read."""
    known = ", ".join(f"{{{name}}} ({what})" for name, what in placeholders.KNOWN_PLACEHOLDERS.items())
    st.caption(
        f"Placeholders: {render.md_escape(known)} are filled from the case; \\[\\[like this\\]\\] marks what the "
        "reviewer must write, and a decision is refused while one is left."
    )
    if templates:
        st.dataframe(
            render.visible_columns(
                pl.DataFrame(
                    [
                        {
                            "name": t.name, "suits": ", ".join(t.subjects) or "any case",
                            "reason_code": t.reason_code or "", "enabled": t.enabled,
                            "to fill": ", ".join(t.free_placeholders), "updated_by": t.updated_by,
                            "updated_at": render.when(t.updated_at), "body": t.body,
                        }
                        for t in templates
                    ]
                )
            ),
            hide_index=True,
        )  # fmt: skip
    else:
        st.caption("No statement templates yet.")


def template_editor(reviewer: Reviewer, templates: Sequence[StatementTemplate], *, prefix: str = "tpl") -> None:
    """For leads, a form to create, edit, disable or enable one of ``templates``; for anyone else, why not.

    The data layer refuses a non-lead too (:func:`stream.review.templates.save_template`): the form is
    withheld so nobody fills one in for nothing.
    """
    if not reviewer.is_lead:
        st.caption("Only leads create, edit or disable templates.")
        return
    generation = int(st.session_state.get(f"{prefix}-generation", 0))
    by_id = {t.template_id: t for t in templates}
    editing = st.selectbox(
        "Template to edit",
        [None, *by_id],
        key=f"{prefix}-pick-{generation}",
        format_func=lambda i: "New template" if i is None else by_id[i].label(),
        on_change=_load_template,
        args=(prefix, generation, by_id),
    )
    for name, empty in zip(_EDITOR_FIELDS, ("", [], None, ""), strict=True):
        st.session_state.setdefault(f"{prefix}-{name}-{generation}", empty)
    name = st.text_input("Name", key=f"{prefix}-name-{generation}", max_chars=MAX_NAME_CHARS)
    columns = st.columns(2)
    subjects = columns[0].multiselect(
        "Suits", TEMPLATE_SUBJECTS, key=f"{prefix}-subjects-{generation}", placeholder="any case"
    )
    reason = columns[1].selectbox(
        "Reason code", list(REASON_CODES), index=None, key=f"{prefix}-reason-{generation}", placeholder="any"
    )
    body = st.text_area(
        "Statement",
        key=f"{prefix}-body-{generation}",
        max_chars=MAX_STATEMENT_CHARS,
        placeholder="Your post {post_id} was labelled because {reason}: [[explain what was misleading]]",
    )
    buttons = st.columns(2)
    if buttons[0].button("Save template", key=f"{prefix}-save", type="primary"):
        outcome = data.act(
            save_template, reviewer, name=name, body=body, subjects=subjects, reason_code=reason, template_id=editing
        )
        if outcome is not None:
            data.notify("success", f"Template {name.strip()!r} saved.")
            st.session_state[f"{prefix}-generation"] = generation + 1
        keep_notice(prefix)
        st.rerun()
    if editing is not None:
        enabled = by_id[editing].enabled
        if buttons[1].button("Disable" if enabled else "Enable", key=f"{prefix}-toggle"):
            if data.act(set_enabled, reviewer, editing, not enabled) is not None:
                data.notify("success", f"Template {by_id[editing].name!r} {'disabled' if enabled else 'enabled'}.")
                st.session_state[f"{prefix}-generation"] = generation + 1
            keep_notice(prefix)
            st.rerun()
    show_kept_notice(prefix)
