"""Campaign view: campaign-level scores, the account graph, the evidence behind each link, a timeline.

Opened with ``?campaign=CAMPAIGN_ID``. The graph is drawn from the links the coordination stage
stored; when it stored none, the coordination library computes them from the members' posts
(:func:`stream.review.edges.inferred_edges`) and the page says so. A campaign decision can cover
all undecided flags of its member accounts.
"""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboards import data, panels, render
from stream.review.claims import claim, release
from stream.review.decisions import decide
from stream.review.edges import Edge
from stream.review.vocabulary import UNDECIDED

reviewer = st.session_state["reviewer"]

st.title("Campaign")
campaign_id = panels.subject_id(
    "campaign", title="Campaign", hint="Open a campaign from the campaign queue or from a post, or give its id."
)
detail = data.campaign_detail(campaign_id)
if detail is None:
    st.error("There is no campaign with that id in the store.")
    st.stop()

campaign, members, edges = detail["campaign"], detail["members"], detail["edges"]


def edge_label(edge: Edge) -> str:
    return f"{edge.source} and {edge.target} ({edge.network})"


st.text(campaign["campaign_id"])
flag_counts = pl.DataFrame(
    detail["member_flags"] or None, schema={"account_id": pl.String, "status": pl.String, "n": pl.Int64}
)
undecided = flag_counts.filter(pl.col("status").is_in(UNDECIDED))["n"].sum()

cols = st.columns(5)
cols[0].metric("Score", "n/a" if campaign["score"] is None else f"{campaign['score']:.3f}")
cols[1].metric("Accounts", campaign["size"] if campaign["size"] is not None else len(members))
cols[2].metric("Undecided member flags", int(undecided))
cols[3].metric("Status", campaign["status"])
cols[4].metric(
    "Active",
    render.age((campaign["last_seen"] - campaign["first_seen"]).total_seconds())
    if campaign["first_seen"] and campaign["last_seen"]
    else "n/a",
)
summary = campaign.get("summary") if isinstance(campaign.get("summary"), dict) else {}
scores = {k: v for k, v in summary.items() if isinstance(v, int | float) and not isinstance(v, bool)}
if scores:
    st.caption("Campaign-level scores (from the coordination stage)")
    st.dataframe(pl.DataFrame({"score": list(scores), "value": [float(v) for v in scores.values()]}), hide_index=True)

st.subheader("Account graph")
stats = detail["member_stats"]
nodes = (
    pl.DataFrame(
        {"account_id": sorted({m["account_id"] for m in members} | {a for e in edges for a in (e.source, e.target)})}
    )
    .join(stats.select("account_id", "posts"), on="account_id", how="left")
    .join(
        flag_counts.filter(pl.col("status").is_in(UNDECIDED))
        .group_by("account_id")
        .agg(flags=pl.col("n").sum()),
        on="account_id",
        how="left",
    )
    .with_columns(pl.col("posts").fill_null(0), pl.col("flags").fill_null(0))
)
if edges and edges[0].inferred:
    st.caption(
        "No link evidence was stored for this campaign: links below are inferred from the members' posts "
        "by the coordination library, with the coordination stage's networks and windows (weight: the share "
        "of the less active account's posts that co-occur, as the stage stores it)."
    )
positions = render.graph_layout(nodes["account_id"].to_list(), edges)
picked = st.altair_chart(
    render.account_graph_chart(nodes, edges, positions),
    on_select="rerun",
    key="campaign-graph",
    selection_mode="account",
    width="stretch",
)
chosen = [p.get("account_id") for p in (picked.selection.get("account") or []) if isinstance(p, dict)]

left, right = st.columns(2, gap="large")
with left:
    st.subheader("Links and their evidence")
    if not edges:
        st.caption("No links between members.")
    else:
        st.dataframe(
            pl.DataFrame(
                [
                    {
                        "source": e.source,
                        "target": e.target,
                        "network": e.network,
                        "weight": e.weight,
                        "evidence": len(e.evidence),
                    }
                    for e in edges
                ]
            ),
            hide_index=True,
        )
        index = st.selectbox("Link", range(len(edges)), key="campaign-edge", format_func=lambda i: edge_label(edges[i]))
        edge = edges[index]
        pairs = [e for e in edge.evidence if e.get("post_1") and e.get("post_2")]
        posts = data.posts_by_id([str(p) for e in pairs for p in (e["post_1"], e["post_2"])])
        for pair in pairs[:5]:
            side = st.columns(2)
            for column, post_key, time_key in ((side[0], "post_1", "time_1"), (side[1], "post_2", "time_2")):
                post = posts.get(str(pair[post_key]))
                with column.container(border=True):
                    st.text(f"{post['account_id'] if post else '?'} · {pair.get(time_key) or ''}")
                    st.text(render.clip(post["text"] if post else "(post not in the store)", 1_000)[0])
        if not pairs:
            st.caption("This link carries no matched posts.")
with right:
    st.subheader("Members")
    member_table = pl.DataFrame(
        [{"account_id": m["account_id"], "weight": m["weight"]} for m in members] or None,
        schema={"account_id": pl.String, "weight": pl.Float64},
    )
    st.dataframe(
        member_table.join(nodes.select("account_id", "posts", "flags"), on="account_id", how="left"), hide_index=True
    )
    account = chosen[0] if chosen else st.selectbox("Account", nodes["account_id"].to_list(), key="campaign-account")
    if account:
        st.caption("Latest posts of the account")
        st.dataframe(data.account_posts(account), hide_index=True)

st.subheader("Timeline")
timeline = detail["timeline"]
if timeline.is_empty():
    st.caption("No posts by the members are in the store.")
else:
    st.altair_chart(render.timeline_chart(timeline), width="stretch")

st.divider()
st.subheader("Decision on the whole campaign")
holder = campaign["assignee"]
st.text(f"Campaign {campaign['campaign_id']}: {campaign['status']}" + (f", held by {holder}" if holder else ""))
claim_cols = st.columns([1, 1, 6])
if claim_cols[0].button("Claim", shortcut="L", disabled=not reviewer.can_decide or holder == reviewer.name):
    data.act(claim, reviewer, [campaign_id], subject="campaign")
    st.rerun()
if claim_cols[1].button("Release", shortcut="U", disabled=not reviewer.can_decide or holder is None):
    data.act(release, reviewer, [campaign_id], subject="campaign")
    st.rerun()
include = st.checkbox("Apply the same decision to the members' undecided flags", value=True, key="campaign-include")
form = panels.decision_form("campaign", reviewer, submit_label="Decide campaign")
if form.submitted:
    outcome = data.act(
        decide,
        reviewer,
        [campaign_id],
        form.decision,
        form.reason_code,
        form.statement,
        subject="campaign",
        include_member_flags=include,
    )
    if outcome is not None and outcome.applied:
        panels.reset_form("campaign")
    st.rerun()

panels.decision_history(detail["decisions"])
