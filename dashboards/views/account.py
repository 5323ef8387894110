"""Account page: one account's whole record, as Ozone's account view gives it.

Opened with ``?account=ACCOUNT_ID`` (other pages call :func:`dashboards.data.account_link`) or with an
id typed in. The id as stored, hidden characters spelt out; counts; the machine share per day with
its 95% interval as a band; the posts, newest first, a page at a time, each with its flags and
probability (select one and open it); the flags by detector and status; the campaigns it belongs
to; the automated actions on its posts, in force or why not; every decision on it; the audit
entries about it; the team's internal notes on it, its posts and their flags, with a box to add a note
on the account. Otherwise read only: decisions are made on the post and campaign pages, automated
actions reversed there or on the Automated actions page.
"""

from __future__ import annotations

from typing import Any

import altair as alt
import polars as pl
import streamlit as st

from dashboards import data, panels, render, team_data
from stream.review.account_page import LIST_LIMIT

#: Posts per page of the posts table.
POSTS_PER_PAGE = 50

st.title("Account")
account_id = panels.subject_id(
    "account", title="Account", hint="Open an account from a post, a campaign or a queue, or give its id."
)

# A new account starts on its first page of posts.
if st.session_state.get("acct-shown") != account_id:
    st.session_state["acct-shown"] = account_id
    st.session_state["acct-posts-offset"] = 0

record = data.account_record(account_id)
counts = record["counts"]
st.caption("Account id")
st.text(render.visible(account_id))
if not counts["known"]:
    st.error("The store has no posts, flags, campaigns or automated actions of this account.")
    other = st.text_input("Account id", key="acct-other")
    if other.strip():
        st.query_params["account"] = other.strip()
        st.rerun()
    st.stop()


def readable(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` for showing: hidden characters spelt out, timestamps as readable UTC dates, no post text for
    viewers (:func:`dashboards.render.without_text_for_viewers`)."""
    stamps = [name for name, dtype in frame.schema.items() if isinstance(dtype, pl.Datetime)]
    shown = frame.with_columns(pl.col(name).map_elements(render.when, return_dtype=pl.String) for name in stamps)
    return render.without_text_for_viewers(render.visible_columns(shown))


def opening_table(
    frame: pl.DataFrame, *, key: str, label: str, column: str, page: str, param: str, **kwargs: Any
) -> None:
    """A table whose row can be selected, and a button that opens the selected row's ``column`` on ``page``."""
    event = st.dataframe(
        readable(frame), key=key, on_select="rerun", selection_mode="single-row", hide_index=True, **kwargs
    )
    rows = [i for i in event.selection.rows if i < frame.height]
    target = frame[column][rows[0]] if rows else None
    if st.button(label, key=f"{key}-open", disabled=not target, help="Select a row of the table first"):
        st.switch_page(page, query_params={param: target})


cols = st.columns(6)
cols[0].metric("Posts", f"{counts['posts']:,}")
cols[1].metric("Flags", f"{counts['flags']:,}", help="Flags of every detector on the account's posts")
cols[2].metric("Undecided flags", f"{counts['undecided_flags']:,}")
cols[3].metric("Decisions", f"{counts['decisions']:,}", help="On its flags, posts, itself and its campaigns")
cols[4].metric(
    "Actions in force",
    f"{counts['actions_in_force']:,}",
    help=f"Automated actions the platform applies now, of {counts['actions']:,} records of the policies on its posts",
)
cols[5].metric("Campaigns", f"{counts['campaigns']:,}")
if counts["first_post"] is not None:
    st.caption(f"Posts from {render.when(counts['first_post'])} to {render.when(counts['last_post'])}")

share = record["share"]
if panels.section(
    "Machine share over time", share, empty="No post of this account has a calibrated probability from any detector."
):
    chart_data = render.visible_columns(share).with_columns(pl.col("day").dt.strftime("%Y-%m-%d")).to_dicts()
    base = alt.Chart(alt.Data(values=chart_data)).encode(
        x=alt.X("day:T", timeUnit="utcyearmonthdate", title="day (UTC)"), color=alt.Color("detector:N")
    )
    tooltip = [
        alt.Tooltip("day:T", timeUnit="utcyearmonthdate"), "detector:N", "posts:Q",
        alt.Tooltip("machine_share:Q", format=".1%"), alt.Tooltip("share_lower:Q", format=".1%"),
        alt.Tooltip("share_upper:Q", format=".1%"),
    ]  # fmt: skip
    band = base.mark_area(opacity=0.25).encode(
        y=alt.Y("share_lower:Q", title="machine share", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
        y2="share_upper:Q",
        tooltip=tooltip,
    )
    line = base.mark_line(point=True).encode(y="machine_share:Q", tooltip=tooltip)
    st.altair_chart(alt.layer(band, line).properties(height=260), width="stretch")
    st.caption(
        "Per day (UTC): the mean calibrated probability of the account's posts that day, as the line; the band is "
        "its 95% Wilson interval (the estimator of the account share a policy's account rules read), wide on days "
        "with few posts."
    )

st.subheader("Posts")
total = counts["posts"]
offset = panels.pager("acct-posts", total=total, limit=POSTS_PER_PAGE) if total > POSTS_PER_PAGE else 0
page = data.account_post_page(account_id, limit=POSTS_PER_PAGE, offset=offset)
if page.rows.is_empty():
    st.caption("No posts of this account are in the store.")
else:
    st.caption(
        f"Posts {offset + 1:,}-{offset + page.rows.height:,} of {page.total:,}, newest first. probability: the "
        "highest calibrated probability a detector gave the post; flags: each detector's flag and its status. "
        "Select a row to open the post."
    )
    opening_table(
        page.rows.select(
            "created_at", "post_id", "flags", "undecided_flags", "probability", "probability_detector", "max_score",
            "actions_in_force", "lang", "preview",
        ),
        key=f"acct-posts-table-{offset}",
        label="Open post",
        column="post_id",
        page="views/post.py",
        param="post",
        column_config={
            "probability": st.column_config.NumberColumn(format="%.3f"),
            "max_score": st.column_config.NumberColumn(format="%.3f"),
        },
    )  # fmt: skip

flags = record["flags"]
if panels.section("Flags", flags, empty="No detector flagged this account's posts."):
    st.dataframe(
        readable(flags), hide_index=True, column_config={"mean_score": st.column_config.NumberColumn(format="%.3f")}
    )

campaigns = record["campaigns"]
if panels.section("Campaigns", campaigns, empty="The account is in no known campaign."):
    opening_table(
        campaigns,
        key="acct-campaigns-table",
        label="Open campaign",
        column="campaign_id",
        page="views/campaign.py",
        param="campaign",
    )

actions = record["actions"]
if panels.section("Automated actions", actions, empty="No policy acted on this account's posts."):
    live = actions.filter(pl.col("in_force"))
    st.caption(
        f"{live.height:,} of {actions.height:,} in force: the platform applies them now. why: the rule's conditions "
        "that held. Reverse one on its post's page or on Automated actions."
    )
    columns = ["decided_at", "action", "rule_id", "policy_id", "policy_version", "post_id", "why"]
    if not live.is_empty():
        opening_table(
            live.select(columns),
            key="acct-actions-table",
            label="Open the action's post",
            column="post_id",
            page="views/post.py",
            param="post",
        )
    other = actions.filter(~pl.col("in_force"))
    if not other.is_empty():
        with st.expander(f"{other.height:,} not in force (reversed, shadow, or held back by a circuit breaker)"):
            st.dataframe(
                readable(other.select(*columns, "mode", "status", "why_not", "reversal_reason")), hide_index=True
            )

decisions = record["decisions"]
if panels.section("Decisions", decisions, empty="No decisions on this account yet."):
    cut = f" (the newest {LIST_LIMIT:,})" if decisions.height >= LIST_LIMIT else ""
    st.caption(
        f"{decisions.height:,} decision(s){cut} on its flags, posts, itself and its campaigns, newest first; "
        "reversed: a later decision undid it (reversed_by). Select a row to open the post it is about."
    )
    opening_table(
        decisions.select(
            "decided_at", "decision", "reason_code", "reviewer", "reversed", "subject_type", "subject_id", "post_id",
            "statement", "decision_id", "reversed_by", "reverses_decision_id",
        ).with_columns(pl.col("post_id").fill_null("")),
        key="acct-decisions-table",
        label="Open the decision's post",
        column="post_id",
        page="views/post.py",
        param="post",
    )  # fmt: skip

st.subheader("Team notes")
panels.notes_section(
    st.session_state["reviewer"],
    team_data.account_notes(account_id),
    key="acct",
    subject_type="account",
    subject_id=account_id,
    subject_label=f"account {render.visible(account_id)}",
)

audit = record["audit"]
with st.expander(f"Audit entries about the account ({audit.height:,})"):
    if audit.is_empty():
        st.caption("No audit entries about this account, its posts, flags or automated actions.")
    else:
        st.dataframe(
            readable(audit.select("at", "actor", "action", "subject_type", "subject_id", "before", "after")),
            hide_index=True,
        )
