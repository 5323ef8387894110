"""Campaign queue: coordinated campaigns found by the coordination stage, to review as a whole.

Ranked by default so the most coordinated and most machine-written campaigns come first
(:mod:`stream.review.campaigns` defines the rank; the caption explains it); the other sorts are the
queue's SQL sorts. Each row shows the rank and what it is made of.
Select rows to claim, release or open a campaign. A campaign decision (on the campaign page)
can cover every undecided flag of its member accounts at once. Shortcuts: ``O`` open the first
selected, ``L`` claim, ``U`` release.
"""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboards import campaign_view, data, panels, render
from stream.review.campaigns import CAMPAIGN_ORDERS, RANK_SORT
from stream.review.claims import claim, release
from stream.review.queues import CampaignFilter

STATUSES = ("open", "claimed", "escalated", "confirmed", "dismissed", "actioned")
PAGE_SIZE = 50

reviewer = st.session_state["reviewer"]

st.title("Campaign queue")
with st.container(border=True):
    cols = st.columns(5)
    statuses = cols[0].multiselect("Status", STATUSES, default=["open", "claimed"], key="c-status")
    min_score = cols[1].number_input("Min score", value=None, step=0.05, key="c-min-score")
    min_size = cols[2].number_input("Min accounts", value=None, min_value=1, step=1, key="c-min-size")
    account = cols[3].text_input("Has an account starting with", key="c-account")
    sort = cols[4].selectbox("Sort", list(CAMPAIGN_ORDERS), format_func=CAMPAIGN_ORDERS.__getitem__, key="c-sort")

flt = CampaignFilter(
    statuses=tuple(statuses),
    min_score=min_score,
    min_size=int(min_size) if min_size is not None else None,
    account=account,
    sort=sort,
)
if st.session_state.get("c-filter") != flt:
    st.session_state["c-filter"] = flt
    st.session_state["c-offset"] = 0
offset = int(st.session_state.setdefault("c-offset", 0))
page = campaign_view.ranked_queue(flt, limit=PAGE_SIZE, offset=offset)
last_page = max((page.total - 1) // PAGE_SIZE, 0)
st.caption(f"{page.total:,} campaigns match · page {offset // PAGE_SIZE + 1:,} of {last_page + 1:,}")

if page.total == 0 and not flt.account and flt.statuses == ("open", "claimed"):
    st.info("No open campaigns. The coordination stage writes them to the store as it finds them.")

if sort == RANK_SORT:
    st.caption(campaign_view.RANK_CAPTION)

rows = page.rows
table = rows.select(
    "campaign_id",
    "rank",
    "coordination",
    "machine",
    "score",
    "size",
    "open_flags",
    "status",
    "assignee",
    pl.col("first_seen").map_elements(render.when, return_dtype=pl.String).alias("first seen"),
    pl.col("last_seen").map_elements(render.when, return_dtype=pl.String).alias("last seen"),
    pl.col("sla_left_s").map_elements(render.sla_text, return_dtype=pl.String).alias("SLA"),
)
ticked = panels.selectable_table(
    render.visible_columns(table),  # ids with hidden characters spelt out; actions read `rows`
    prefix="c",
    state=(flt, offset),
    column_config={
        "open_flags": st.column_config.NumberColumn("undecided member flags"),
        "rank": st.column_config.NumberColumn("rank", format="%.3f", help="coordination times machine"),
        "coordination": st.column_config.NumberColumn(
            "coordination", format="%.3f", help="The coordination stage's score (density times synchrony), else density"
        ),
        "machine": st.column_config.NumberColumn(
            "machine", format="%.2f", help="Mean probability that the members' posts are machine-written; empty: none"
        ),
    },
)
selected = [rows["campaign_id"][i] for i in ticked]
panels.pager("c", total=page.total, limit=PAGE_SIZE)

st.subheader(f"{len(selected)} selected")
actions = st.columns([1, 1, 1, 5])
if actions[0].button("Open", shortcut="O", disabled=not selected):
    st.switch_page("views/campaign.py", query_params={"campaign": selected[0]})
if actions[1].button("Claim", shortcut="L", disabled=not (selected and reviewer.can_decide)):
    data.act(claim, reviewer, selected, subject="campaign")
    panels.after_action("c")
if actions[2].button("Release", shortcut="U", disabled=not (selected and reviewer.can_decide)):
    data.act(release, reviewer, selected, subject="campaign")
    panels.after_action("c")
