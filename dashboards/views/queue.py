"""Flag queue: flagged posts to review, filtered and sorted in SQL, one page at a time.

Every undecided case by default, escalated ones included; search by post id, flag id, account id
or a piece of the text. Each row shows the score, the calibrated probability, the threshold and
the margin over it ("largest margin first" compares detectors whose scores differ in scale), and
how many automated actions the policies have in force on the post.

Select rows in the table to claim, release, assign (leads) or decide them in bulk; "Start
reviewing" claims the next case and opens it. Shortcuts: ``S`` start reviewing, ``O`` open the
first selected, ``L`` claim selected, ``U`` release selected, ``N`` / ``P`` next / previous page.
"""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboards import data, panels, render
from stream.review.claims import assign, claim, release
from stream.review.decisions import decide
from stream.review.queues import FLAG_SORTS, FlagFilter
from stream.review.vocabulary import UNDECIDED

PAGE_SIZES = (25, 50, 100, 200)
AGES = {
    "any age": (None, None),
    "overdue (past the SLA)": ("sla", None),
    "flagged in the last hour": (None, 3_600.0),
    "flagged in the last 24 hours": (None, 86_400.0),
    "older than 24 hours": (86_400.0, None),
}
STATUSES = ("open", "claimed", "escalated", "confirmed", "dismissed", "actioned")

reviewer = st.session_state["reviewer"]
settings = data.settings()
facets = data.facets()

st.title("Flag queue")
with st.container(border=True):
    search = st.text_input(
        "Search",
        key="q-search",
        placeholder="post id, flag id, account id, or words from the text",
        help="A post, flag or account id matches exactly; anything else is looked for in the posts' text (any case)",
    )
    top = st.columns([2, 2, 2, 2])
    statuses = top[0].multiselect("Status", STATUSES, default=list(UNDECIDED), key="q-status")
    detectors = top[1].multiselect("Detector", facets["detectors"], key="q-detector")
    langs = top[2].multiselect("Language", facets["langs"], key="q-lang")
    account = top[3].text_input("Account starts with", key="q-account")
    bottom = st.columns([2, 2, 2, 2])
    min_score = bottom[0].number_input("Min score", value=None, step=0.05, key="q-min-score")
    age_choice = bottom[1].selectbox("Age", list(AGES), key="q-age")
    who = bottom[2].selectbox("Assigned to", ["anyone", "unassigned", "me"], key="q-who")
    sort = bottom[3].selectbox("Sort", list(FLAG_SORTS), format_func=lambda s: FLAG_SORTS[s][0], key="q-sort")

min_age, max_age = AGES[age_choice]
flt = FlagFilter(
    statuses=tuple(statuses),
    detectors=tuple(detectors),
    langs=tuple(langs),
    account=account,
    assignee={"anyone": None, "unassigned": "", "me": reviewer.name}[who],
    min_score=min_score,
    min_age_s=settings.sla.total_seconds() if min_age == "sla" else min_age,
    max_age_s=max_age,
    search=search,
    sort=sort,
)
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
    render.visible_columns(table),  # ids and text with hidden characters spelt out; actions read `rows`
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
