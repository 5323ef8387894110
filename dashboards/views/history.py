"""Decisions & audit: every decision (newest first), reversal, the append-only audit log, the export.

Reviewers reverse their own decisions; leads reverse anyone's (the data layer enforces it). The
labelled-decisions export is what training and calibration read: one row per flag whose latest
decision stands, with the detector's score and threshold and the reviewer's label; the posts' text
only for those who may take it away (:func:`dashboards.auth.can_export_text`: viewers get the export
without it).
"""

from __future__ import annotations

import streamlit as st

from dashboards import auth, data, panels, render
from stream.review.reversal import reverse
from stream.review.vocabulary import REVERSAL_REASONS
from stream.store.reviewers import MAX_STATEMENT_CHARS

PAGE_SIZE = 100

reviewer = st.session_state["reviewer"]

st.title("Decisions & audit")
tab_decisions, tab_audit, tab_export = st.tabs(["Decisions", "Audit log", "Export"])

with tab_decisions:
    whose = st.radio(
        "Whose", ["mine", "everyone's"], horizontal=True, key="h-whose", index=0 if not reviewer.is_lead else 1
    )
    offset = int(st.session_state.setdefault("h-offset", 0))
    decisions = data.decision_history(
        reviewer=reviewer.name if whose == "mine" else None, limit=PAGE_SIZE, offset=offset
    )
    # Shown with hidden characters spelt out; the selection reads the ids from `decisions` itself.
    ticked = panels.selectable_table(render.visible_columns(decisions), prefix="h", state=(offset, whose))
    selected = [int(decisions["decision_id"][i]) for i in ticked]
    nav = st.columns([1, 1, 6])
    if nav[0].button("Newer", disabled=offset == 0):
        st.session_state["h-offset"] = max(offset - PAGE_SIZE, 0)
        st.rerun()
    if nav[1].button("Older", disabled=decisions.height < PAGE_SIZE):
        st.session_state["h-offset"] = offset + PAGE_SIZE
        st.rerun()

    st.subheader(f"Reverse {len(selected)} selected")
    st.caption(
        "The case goes back to the queue it came from. Only the latest decision on a case can be reversed; "
        "reviewers reverse their own, leads anyone's."
    )
    reason = st.selectbox(
        "Why", list(REVERSAL_REASONS), format_func=lambda c: f"{c}: {REVERSAL_REASONS[c]}", key="h-reason"
    )
    nonce = st.session_state.get("h-generation", 0)
    statement = st.text_area("Statement (required)", key=f"h-statement-{nonce}", max_chars=MAX_STATEMENT_CHARS)
    if st.button("Reverse selected", type="primary", disabled=not (selected and reviewer.can_decide)):
        data.act(reverse, reviewer, selected, reason, statement)
        panels.after_action("h")

with tab_audit:
    cols = st.columns(2)
    subject = cols[0].text_input("Case id (flag or campaign)", key="h-subject")
    actor = cols[1].text_input("Reviewer", key="h-actor")
    audit = data.audit_trail(subject_id=subject.strip(), actor=actor.strip(), limit=500)
    st.dataframe(render.visible_columns(audit), hide_index=True)
    st.caption("The audit log is append-only: the database refuses to change or delete its rows.")

with tab_export:
    with_text = auth.can_export_text(reviewer)
    st.write(
        "Labelled decisions for training and calibration: one row per flag whose latest decision stands, "
        "with label 1 (the reviewer agreed with the detector), 0 (dismissed), the detector's score, "
        "threshold and model version" + (", and the post's text." if with_text else ".")
    )
    if not with_text:
        st.caption(
            "Viewers read posts in the console but do not take their text away: this export leaves the "
            "text out (the post ids are in it). Ask a lead for the reviewer role if you need the text."
        )
    st.download_button(
        "Download labelled decisions (CSV)" if with_text else "Download labelled decisions without post text (CSV)",
        data.labelled_decisions_csv(include_text=with_text),
        file_name="chorus-labelled-decisions.csv" if with_text else "chorus-labelled-decisions-no-text.csv",
        mime="text/csv",
    )
