"""Campaign view: campaign-level scores, the account graph, the evidence behind each link, a timeline.

Opened with ``?campaign=CAMPAIGN_ID``. The graph is drawn from the links the coordination stage
stored; when it stored none, the coordination library computes them from the members' posts
(:func:`stream.review.edges.inferred_edges`) and the page says so. One line joins a pair of accounts
whatever the co-action types linking them (:func:`dashboards.render.graph_links`): its strength is the
types' combined, as the stage combines them, and its tooltip lists each type. The stage stores only its
strongest links (``[coordinator] summary_edges``): the page says how many of how many it draws
("the strongest N of M links") and gives the density of what it draws beside the stage's. The
evidence is one entry per pair of accounts, each pair of matched posts once, with their times,
how many seconds apart, and a word diff of the two texts. Every account id opens the account page.
As on the post view, the decision panel is the right column, kept in view while the page scrolls:
a campaign decision can cover all undecided flags of its member accounts; its statement can start from
a template (``{campaign}`` filled in; refused while a ``[[...]]`` placeholder is left). The team's
internal notes on the campaign and the decision history follow below, the page's full width, with a
box to add a note.
"""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboards import campaign_view, data, panels, render, team_data
from stream.review.decisions import decide
from stream.review.edges import AccountPair
from stream.review.placeholders import case_values
from stream.review.vocabulary import UNDECIDED

#: Pairs of matched posts shown per link (the stage keeps at most 3 per direction).
PAIRS_SHOWN = 6

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
coverage = detail["coverage"]
# One line per pair of accounts, its strength the co-action types' combined (the stage stores one link per type).
links = render.graph_links(edges)
strength = {(link.source, link.target): link.weight for link in links}
pairs: list[AccountPair] = sorted(
    detail["pairs"], key=lambda p: (-strength.get((p.source, p.target), p.weight), p.source, p.target)
)


def pair_label(pair: AccountPair) -> str:
    networks = ", ".join(render.visible(n) for n in pair.networks)
    return f"{render.visible(pair.source)} and {render.visible(pair.target)} ({networks})"


st.text(render.visible(campaign["campaign_id"]))
flag_counts = pl.DataFrame(
    detail["member_flags"] or None, schema={"account_id": pl.String, "status": pl.String, "n": pl.Int64}
)
undecided = flag_counts.filter(pl.col("status").is_in(UNDECIDED))["n"].sum()

body, panel = panels.action_panel("campaign-action-panel")  # the decision panel: kept in view while scrolling

with body:
    cols = st.columns(3) + st.columns(3)  # two rows: six metrics do not fit a third of the page
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
    cols[5].metric(
        "Density of links shown",
        "n/a" if coverage.shown_density is None else f"{coverage.shown_density:.2f}",
        help=f"Pairs of members the graph draws linked ({coverage.shown_pairs}) over every pair of members "
        f"({coverage.possible_pairs}); the coordination stage's own density, over all its links, "
        "is in the scores below",
    )
    summary = campaign.get("summary") if isinstance(campaign.get("summary"), dict) else {}
    scores = {k: v for k, v in summary.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    stored_density = float(scores["density"]) if "density" in scores else None
    if scores:
        st.caption("Campaign-level scores (from the coordination stage)")
        names = {"density": "density (all links, as the coordination stage measured it)"}
        st.dataframe(
            render.visible_columns(
                pl.DataFrame({"score": [names.get(k, k) for k in scores], "value": [float(v) for v in scores.values()]})
            ),
            hide_index=True,
        )

    st.subheader("Account graph")
    stats = detail["member_stats"]
    nodes = (
        pl.DataFrame(
            {
                "account_id": sorted(
                    {m["account_id"] for m in members} | {a for e in edges for a in (e.source, e.target)}
                )
            }
        )
        .join(stats.select("account_id", "posts"), on="account_id", how="left")
        .join(
            flag_counts.filter(pl.col("status").is_in(UNDECIDED)).group_by("account_id").agg(flags=pl.col("n").sum()),
            on="account_id",
            how="left",
        )
        .with_columns(pl.col("posts").fill_null(0), pl.col("flags").fill_null(0))
    )
    if coverage.inferred and edges:
        st.caption(
            "No link evidence was stored for this campaign: links below are inferred from the members' posts "
            "by the coordination library, with the coordination stage's networks and windows (a type's strength: "
            "the share of the less active account's posts that co-occur, as the stage stores it)."
        )
    elif coverage.inferred:
        st.caption(
            "No link evidence was stored for this campaign, and the coordination library, with the coordination "
            "stage's networks and windows, finds no co-action among the members' posts either: whatever joined "
            "them is not in their posts here."
        )
    st.caption(campaign_view.coverage_note(coverage, stored_density=stored_density))
    st.caption(
        "One line per pair of accounts: its width, the co-action types' strengths combined as the coordination "
        "stage combines them; its colour, how many types; hover it for each type and its strength."
    )
    positions = render.graph_layout(nodes["account_id"].to_list(), links)
    picked = st.altair_chart(
        render.account_graph_chart(nodes, links, positions),
        on_select="rerun",
        key="campaign-graph",
        selection_mode="account",
        width="stretch",
    )
    chosen = [p.get("account_id") for p in (picked.selection.get("account") or []) if isinstance(p, dict)]

    # The members (a node clicked in the graph picks one) and then the links, one under the other: side by
    # side in this column neither would be readable.
    st.subheader("Members")
    member_table = pl.DataFrame(
        [{"account_id": m["account_id"], "weight": m["weight"]} for m in members] or None,
        schema={"account_id": pl.String, "weight": pl.Float64},
    )
    st.dataframe(
        render.visible_columns(
            member_table.join(nodes.select("account_id", "posts", "flags"), on="account_id", how="left")
        ),
        hide_index=True,
    )
    account = (
        chosen[0]
        if chosen
        else st.selectbox("Account", nodes["account_id"].to_list(), key="campaign-account", format_func=render.visible)
    )
    if account:
        if st.button("Open account", key="campaign-open-account", help="The account's whole record"):
            data.account_link(account)  # the stored id, not the one shown
        st.caption("Latest posts of the account")
        latest = render.without_text_for_viewers(render.visible_columns(data.account_posts(account)))
        st.dataframe(latest, hide_index=True)

    st.subheader("Links and their evidence")
    if not pairs:
        st.caption("No links between members.")
    else:
        st.dataframe(
            pl.DataFrame(
                [
                    {
                        "source": render.visible(p.source),
                        "target": render.visible(p.target),
                        "networks": ", ".join(render.visible(n) for n in p.networks),
                        "weight": strength.get((p.source, p.target), p.weight),
                        "matched posts": len(p.matched),
                    }
                    for p in pairs
                ]
            ),
            hide_index=True,
        )
        index = st.selectbox("Link", range(len(pairs)), key="campaign-edge", format_func=lambda i: pair_label(pairs[i]))
        pair = pairs[index]
        matched = list(pair.matched)
        posts = data.posts_by_id([p for m in matched[:PAIRS_SHOWN] for p in (m.post_1, m.post_2)])
        if len(matched) > PAIRS_SHOWN:
            st.caption(f"The earliest {PAIRS_SHOWN} of {len(matched)} pairs of matched posts.")
        for match in matched[:PAIRS_SHOWN]:
            with st.container(border=True):
                networks = "matched as " + ", ".join(render.md_escape(n) for n in match.networks)
                st.caption(" · ".join(x for x in (campaign_view.seconds_apart(match.seconds_apart), networks) if x))
                halves = st.columns(2)
                texts = []
                sides = ((halves[0], match.post_1, match.time_1), (halves[1], match.post_2, match.time_2))
                for column, post_id, moment in sides:
                    post = posts.get(post_id)
                    texts.append(post["text"] if post else None)
                    shown = render.clip(post["text"] if post else "(post not in the store)", 1_000)[0]
                    with column:
                        st.text(f"{render.visible(post['account_id']) if post else '?'} · {render.when(moment)}")
                        st.text(render.visible(shown))
                if all(t is not None for t in texts):
                    st.html(campaign_view.word_diff_html(texts[0], texts[1]))
        if not matched:
            st.caption("This link carries no matched posts.")
        link_cols = st.columns(2)
        if link_cols[0].button(f"Open account {render.md_escape(pair.source)}", key="campaign-open-source"):
            data.account_link(pair.source)
        if link_cols[1].button(f"Open account {render.md_escape(pair.target)}", key="campaign-open-target"):
            data.account_link(pair.target)

    st.subheader("Timeline")
    timeline = detail["timeline"]
    if timeline.is_empty():
        st.caption("No posts by the members are in the store.")
    else:
        st.altair_chart(render.timeline_chart(timeline), width="stretch")

with panel:
    st.subheader("Campaign decision")  # one line in the panel: the submit button stays on the first screen
    holder = campaign["assignee"]
    st.text(
        f"Campaign {render.visible(campaign['campaign_id'])}: {campaign['status']}"
        + (f", held by {render.visible(holder)}" if holder else "")
    )
    panels.claim_buttons(reviewer, campaign_id, holder, form_key="campaign", subject="campaign")
    # Off by default and counted: one click must not decide a hundred cases nobody looked at.
    include = st.checkbox(
        f"Also apply the decision to the members' {int(undecided)} undecided flags",
        value=False,
        key="campaign-include",
        disabled=not undecided,
    )
    form = panels.decision_form(
        "campaign",
        reviewer,
        submit_label="Decide campaign",
        subject="coordination",
        templates=team_data.statement_templates(kinds=("campaign",)),
        case=case_values(campaign=campaign_id),
    )
    if form.submitted or form.decision:
        st.caption(
            f"Submitting will {form.decision or 'decide'} campaign {render.visible(campaign_id)}"
            + (f" and {int(undecided)} member flags." if include and undecided else " only (no member flag).")
        )
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
        panels.keep_notice("campaign")
        st.rerun()

st.subheader("Team notes")
panels.notes_section(
    reviewer,
    team_data.case_notes("campaign", campaign_id),
    key="campaign",
    subject_type="campaign",
    subject_id=campaign_id,
    subject_label=f"campaign {render.visible(campaign_id)}",
)

panels.decision_history(detail["decisions"])
