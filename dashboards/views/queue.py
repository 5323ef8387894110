"""Flag queue: flagged posts to review, filtered and sorted in SQL, one page at a time.

Every undecided case by default, escalated ones included; search by post id, flag id, account id
or a piece of the text. Each row shows the score, the calibrated probability, the threshold and
the margin over it ("largest margin first" compares detectors whose scores differ in scale), and
how many automated actions the policies have in force on the post.

Select rows in the table to claim, release, assign (leads) or decide them in bulk; "Start
reviewing" claims the next case and opens it. Shortcuts: ``S`` start reviewing, ``O`` open the
first selected, ``L`` claim selected, ``U`` release selected, ``N`` / ``P`` next / previous page.

The filters in force can be saved under a name (:mod:`stream.review.saved_filters`: your own; a lead
may share one with the team) and a saved set applied or deleted again. The statement templates reviewers
start statements from have a page of their own (``views/templates.py``).
"""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboards import data, panels, render, team_data
from stream.review.claims import assign, claim, release
from stream.review.decisions import decide
from stream.review.queues import FLAG_SORTS
from stream.review.saved_filters import AGE_WINDOWS, ASSIGNED, QueueChoices, SavedFilter, delete_filter, save_filter
from stream.review.vocabulary import UNDECIDED

PAGE_SIZES = (25, 50, 100, 200)
STATUSES = ("open", "claimed", "escalated", "confirmed", "dismissed", "actioned")
#: The filter widgets' keys, by the choice each holds (what a saved filter sets).
WIDGETS: dict[str, str] = {
    "search": "q-search",
    "statuses": "q-status",
    "detectors": "q-detector",
    "langs": "q-lang",
    "account": "q-account",
    "min_score": "q-min-score",
    "age": "q-age",
    "assigned": "q-who",
    "sort": "q-sort",
}

reviewer = st.session_state["reviewer"]
settings = data.settings()
facets = data.facets()
st.session_state.setdefault("q-status", list(UNDECIDED))


def apply_saved(saved: SavedFilter) -> None:
    """Set the filter widgets to a saved filter's choices (a callback: it runs before they are drawn)."""
    choices = saved.choices
    offered = {"detectors": facets["detectors"], "langs": facets["langs"]}
    absent = [f"{name}: {v}" for name, values in offered.items() for v in getattr(choices, name) if v not in values]
    for name, key in WIDGETS.items():
        value = getattr(choices, name)
        if name in offered:
            value = [v for v in value if v in offered[name]]
        st.session_state[key] = list(value) if isinstance(value, tuple) else value
    left_out = [*choices.dropped, *absent]
    if left_out:
        data.notify("warning", f"Applied {saved.name!r} without what the queue no longer offers: {', '.join(left_out)}")
    else:
        data.notify("success", f"Applied the saved filter {saved.name!r}.")
    panels.keep_notice("q-saved")


st.title("Flag queue")
with st.container(border=True):
    search = st.text_input(
        "Search",
        key="q-search",
        placeholder="post id, flag id, account id, or words from the text",
        help="A post, flag or account id matches exactly; anything else is looked for in the posts' text (any case)",
    )
    top = st.columns([2, 2, 2, 2])
    statuses = top[0].multiselect("Status", STATUSES, key="q-status")
    detectors = top[1].multiselect("Detector", facets["detectors"], key="q-detector")
    langs = top[2].multiselect("Language", facets["langs"], key="q-lang")
    account = top[3].text_input("Account starts with", key="q-account")
    bottom = st.columns([2, 2, 2, 2])
    min_score = bottom[0].number_input("Min score", value=None, step=0.05, key="q-min-score")
    age_choice = bottom[1].selectbox("Age", list(AGE_WINDOWS), format_func=lambda a: AGE_WINDOWS[a][0], key="q-age")
    who = bottom[2].selectbox("Assigned to", ASSIGNED, key="q-who")
    sort = bottom[3].selectbox("Sort", list(FLAG_SORTS), format_func=lambda s: FLAG_SORTS[s][0], key="q-sort")
    choices = QueueChoices(
        search=search,
        statuses=tuple(statuses),
        detectors=tuple(detectors),
        langs=tuple(langs),
        account=account,
        min_score=min_score,
        age=age_choice,
        assigned=who,
        sort=sort,
    )

    # Saved filters: apply, delete, save these (your own; a lead may share with the team).
    saved = {f.filter_id: f for f in team_data.queue_filters(reviewer.name)}
    saved_cols = st.columns([4, 1, 1, 2], vertical_alignment="bottom")
    picked_id = saved_cols[0].selectbox(
        "Saved filters",
        list(saved),
        index=None,
        key="q-saved",
        format_func=lambda i: saved[i].label(reviewer.name),
        placeholder="Apply a saved set of filters" if saved else "No saved filters yet",
    )
    picked = saved.get(picked_id) if picked_id is not None else None
    saved_cols[1].button(
        "Apply", key="q-saved-apply", disabled=picked is None, on_click=apply_saved, args=(picked,) if picked else ()
    )
    may_delete = picked is not None and (picked.owner == reviewer.name or (picked.shared and reviewer.is_lead))
    if saved_cols[2].button(
        "Delete", key="q-saved-delete", disabled=not may_delete, help="Your own filters; leads also the team's"
    ):
        if data.act(delete_filter, reviewer, picked.filter_id) is not None:
            data.notify("success", f"Deleted the saved filter {picked.name!r}.")
            st.session_state.pop("q-saved", None)
        panels.keep_notice("q-saved")
        st.rerun()
    with saved_cols[3].popover("Save these filters", width="stretch"):
        save_name = st.text_input("Name", key="q-save-name", placeholder="e.g. overdue German aitext")
        share = st.checkbox(
            "Share with the team",
            key="q-save-shared",
            disabled=not reviewer.is_lead,
            help="Leads share filters with every reviewer; yours are yours only",
        )
        if st.button("Save", key="q-save", disabled=not save_name.strip()):
            if data.act(save_filter, reviewer, save_name, choices, shared=share) is not None:
                data.notify(
                    "success", f"Saved these filters as {save_name.strip()!r}" + (" for the team." if share else ".")
                )
            panels.keep_notice("q-saved")
            st.rerun()
    panels.show_kept_notice("q-saved")

flt = choices.flag_filter(reviewer=reviewer.name, sla_s=settings.sla.total_seconds())
if st.session_state.get("q-filter") != flt:
    st.session_state["q-filter"] = flt  # what "submit and next" follows on the post page
    st.session_state["q-offset"] = 0
offset = int(st.session_state.setdefault("q-offset", 0))
limit = int(st.session_state.get("q-limit", 50))

if st.button(
    "Start reviewing",
    type="primary",
    shortcut="S",
    disabled=not reviewer.can_decide,
    help="Claim the next case in this queue's order and open it",
):
    flag_id = data.next_flag(reviewer, flt)
    if flag_id is None:
        data.notify("warning", "Nothing left in this queue for you.")
        st.rerun()
    st.switch_page("views/post.py", query_params={"flag": flag_id})

page = data.flag_queue(flt, limit=limit, offset=offset)
last_page = max((page.total - 1) // limit, 0)
sla = render.age(settings.sla.total_seconds())
st.caption(f"{page.total:,} flags match · page {offset // limit + 1:,} of {last_page + 1:,} · SLA {sla}")

rows = page.rows
table = rows.select(
    "post_id",
    "account_id",
    "detector",
    "score",
    "probability",
    "threshold",
    "margin",
    pl.col("actions_in_force").alias("in force"),
    "status",
    "assignee",
    pl.col("age_s").map_elements(render.age, return_dtype=pl.String).alias("age"),
    pl.col("sla_left_s").map_elements(render.sla_text, return_dtype=pl.String).alias("SLA"),
    "preview",
    "lang",
)
ticked = panels.selectable_table(
    # ids and text with hidden characters spelt out (no text for viewers); actions read `rows`
    render.without_text_for_viewers(render.visible_columns(table)),
    prefix="q",
    state=(flt, offset, limit),
    column_config={
        # Scores are on each detector's own scale (not always 0..1): numbers, not progress bars.
        "score": st.column_config.NumberColumn("score", format="%.3f", width="small"),
        "probability": st.column_config.NumberColumn(
            "probability", format="%.2f", width="small", help="Calibrated probability; empty: not calibrated"
        ),
        "threshold": st.column_config.NumberColumn("threshold", format="%.3f", width="small"),
        "margin": st.column_config.NumberColumn(
            "margin", format="%+.3f", width="small", help="Score minus the detector's threshold"
        ),
        "in force": st.column_config.NumberColumn(
            "in force",
            width="small",
            help="Automated actions of the policies the platform applies to the post now (a label, reduced "
            "reach); the post view lists them and can reverse them",
        ),
        "preview": st.column_config.TextColumn("text (first 200 characters)", width="large"),
        "SLA": st.column_config.TextColumn("SLA", width="small"),
    },
)
selected = [rows["flag_id"][i] for i in ticked]
selected_account = rows["account_id"][ticked[0]] if ticked else None  # as stored, for the account page
panels.pager("q", total=page.total, limit=limit, shortcuts=True)
st.selectbox("Rows per page", PAGE_SIZES, index=PAGE_SIZES.index(limit), key="q-limit", width=160)

st.subheader(f"{len(selected)} selected")
actions = st.columns(5)
if actions[0].button("Open", shortcut="O", disabled=not selected):
    st.switch_page("views/post.py", query_params={"flag": selected[0]})
if actions[1].button("Claim", shortcut="L", disabled=not (selected and reviewer.can_decide)):
    data.act(claim, reviewer, selected)
    panels.after_action("q")
if actions[2].button("Release", shortcut="U", disabled=not (selected and reviewer.can_decide)):
    data.act(release, reviewer, selected)
    panels.after_action("q")
if reviewer.is_lead:
    with actions[3].popover("Assign to…", disabled=not selected):
        assignee = st.text_input("Reviewer (e-mail or name)", key="q-assignee")
        if st.button("Assign", key="q-assign", disabled=not assignee.strip()):
            data.act(assign, reviewer, selected, assignee)
            panels.after_action("q")
open_account = actions[4].button(
    "Open account",
    key="q-open-account",
    disabled=selected_account is None,
    help="The first selected case's account: its whole record",
)
if open_account and selected_account is not None:
    data.account_link(selected_account)

with st.expander(f"Bulk decision on the {len(selected)} selected", expanded=False):
    form = panels.decision_form("q-bulk", reviewer, submit_label="Decide selected")
    if form.submitted:
        if not selected:
            data.notify("warning", "Select the flags to decide in the table first.")
        else:
            outcome = data.act(decide, reviewer, selected, form.decision, form.reason_code, form.statement)
            if outcome is not None and outcome.applied:
                panels.reset_form("q-bulk")
            panels.keep_notice("q-bulk")
        panels.after_action("q")
