"""Automated actions: what the policies did on their own, why, and undoing it.

Top: circuit breakers open now and alerts nobody has acknowledged (a breaker that trips means a
rule fired on too many posts: a broken model or a bad threshold; its actions are recorded, not
sent, until it recovers). Then which policy is active and which is in shadow, with counts per rule
and the shadow comparison. Then the actions themselves: filter, read one (the rule, the policy
version, the scores and evidence that caused it), and reverse what should not have happened. A
reversal is audited and reaches the platform through the actions topic (the workers relay it).
"""

from __future__ import annotations

import json

import polars as pl
import streamlit as st

from dashboards import data, panels, render
from stream.policy import actions as policy_actions
from stream.policy.actions import MIN_REASON_CHARS, ActionFilter
from stream.store.reviewers import MAX_STATEMENT_CHARS
from stream.store.tables import ACTION_STATUSES, POLICY_ACTIONS, POLICY_SLOTS

PAGE_SIZE = 50

reviewer = st.session_state["reviewer"]
esc = render.md_escape

st.title("Automated actions")

# -- alerts ----------------------------------------------------------------------------------
breakers = data.open_breakers()
for row in breakers.iter_rows(named=True):
    st.error(
        f"Circuit breaker open: rule {esc(row['rule_id'])} of {esc(row['policy_id'])}@{esc(row['policy_version'])} "
        f"on worker {esc(row['worker_id'])} fired on {100 * (row['share'] or 0):.1f}% of the last "
        f"{row['posts']:,} posts (since {render.when(row['at'])}). Its actions are recorded but not sent "
        "until the share falls.",
        icon=":material/warning:",
    )
alerts = data.alert_list(unacknowledged_only=True)
if alerts.height:
    with st.container(border=True):
        st.subheader(f"{alerts.height} alert(s) to acknowledge")
        shown = alerts.select(
            "alert_id",
            "at",
            "kind",
            "rule_id",
            "policy_id",
            "policy_version",
            "worker_id",
            (pl.col("share") * 100).round(1).alias("share %"),
            "matched",
            "posts",
        )
        ticked = panels.selectable_table(render.visible_columns(shown), prefix="al", state="alerts")
        chosen = [int(alerts["alert_id"][i]) for i in ticked]
        if st.button("Acknowledge selected", disabled=not (chosen and reviewer.can_decide), key="al-ack"):
            data.act(policy_actions.acknowledge_alerts, reviewer, chosen)
            panels.after_action("al")
        st.caption(
            "Acknowledging records that you have seen the alert (audited); the breaker itself closes "
            "when the rule's share of posts falls below its recovery level."
        )
elif breakers.height == 0:
    st.success("No circuit breaker is open and no alert is waiting.", icon=":material/check_circle:")

# -- policies --------------------------------------------------------------------------------
slots = data.policy_slots()
with st.expander("Policies: what runs, what each rule did, shadow comparison", expanded=False):
    cols = st.columns(2)
    for col, slot in zip(cols, POLICY_SLOTS, strict=True):
        ref = slots.get(slot)
        col.metric(f"{slot} policy", f"{ref[0]}@{ref[1]}" if ref else "none")  # metric values are plain text
    st.caption(
        "Switch with `chorus policy activate|shadow FILE` and `chorus policy rollback` (audited). "
        "Workers started with pinned policy files (`policy.active_file`) ignore these slots."
    )
    counts = data.action_counts()
    if counts.height:
        st.dataframe(render.visible_columns(counts), hide_index=True)
    comparison = data.shadow_comparison()
    if comparison is not None:
        st.markdown(
            "**Shadow against active**: per rule, posts it fired on, overlap with the other "
            "policy, and agreement with reviewers' decisions on the posts they decided."
        )
        st.dataframe(render.visible_columns(comparison), hide_index=True)

# -- the actions -----------------------------------------------------------------------------
with st.container(border=True):
    cols = st.columns(6)
    modes = cols[0].multiselect("Mode", POLICY_SLOTS, default=["active"], key="ac-mode")
    statuses = cols[1].multiselect("Status", ACTION_STATUSES, key="ac-status")
    kinds = cols[2].multiselect("Action", POLICY_ACTIONS, key="ac-action")
    rule = cols[3].text_input("Rule id", key="ac-rule")
    account = cols[4].text_input("Account id", key="ac-account")
    reversed_choice = cols[5].selectbox("Reversed", ["any", "standing", "reversed"], key="ac-reversed")

flt = ActionFilter(
    modes=tuple(modes),
    statuses=tuple(statuses),
    actions=tuple(kinds),
    rule_id=rule,
    account=account,
    reversed={"any": None, "standing": False, "reversed": True}[reversed_choice],
)
if st.session_state.get("ac-filter") != flt:
    st.session_state["ac-filter"] = flt
    st.session_state["ac-offset"] = 0
offset = int(st.session_state.setdefault("ac-offset", 0))
page = data.action_list(flt, limit=PAGE_SIZE, offset=offset)
st.caption(f"{page.total:,} actions match · newest first")
if page.total == 0 and not slots.get("active") and not slots.get("shadow"):
    st.info("No policy has acted yet. Try one in shadow with `chorus policy shadow FILE`, compare, then activate.")

rows = page.rows
table = rows.select(
    pl.col("decided_at").map_elements(render.when, return_dtype=pl.String).alias("when"),
    "action", "status", "rule_id",
    (pl.col("policy_id") + "@" + pl.col("policy_version")).alias("policy"),
    "account_id", "preview",
    pl.col("reversed_by").alias("reversed by"),
    pl.when(pl.col("reversed_at").is_null()).then(pl.lit(""))
    .when(pl.col("reversal_emitted_at").is_null()).then(pl.lit("waiting for a worker"))
    .otherwise(pl.lit("sent")).alias("reversal sent"),
)  # fmt: skip
ticked = panels.selectable_table(
    render.without_text_for_viewers(render.visible_columns(table)),
    prefix="ac",
    state=(flt, offset),
    column_config={"preview": st.column_config.TextColumn("post")},
)
selected = [rows["action_id"][i] for i in ticked]
panels.pager("ac", total=page.total, limit=PAGE_SIZE)

if selected:
    detail = data.action_detail(selected[0])
    if detail is not None:
        with st.container(border=True):
            st.subheader(f"{esc(detail['action'])} by rule {esc(detail['rule_id'])}")
            st.caption(
                f"action {esc(detail['action_id'])} · policy {esc(detail['policy_id'])}@"
                f"{esc(detail['policy_version'])} ({detail['mode']}, {detail['status']}) · decided "
                f"{render.when(detail['decided_at'])} by worker {esc(detail['worker_id'] or '?')}"
            )
            if detail["reversed_at"] is not None:
                st.warning(
                    f"Reversed by {esc(detail['reversed_by'])} at {render.when(detail['reversed_at'])}: "
                    f"{esc(detail['reversal_reason'])}"
                )
            left, right = st.columns(2)
            with left:
                st.markdown("**Post** (account and text as posted)")
                st.text(f"account {render.visible(detail['account_id'])} · post {render.visible(detail['post_id'])}")
                render.post_text(detail.get("text"), key=f"action-{detail['action_id']}")
                if st.button("Open the post", key="ac-open-post"):
                    st.switch_page("views/post.py", query_params={"post": detail["post_id"]})
            with right:
                st.markdown("**Why**: the conditions that held and the values seen")
                st.json(json.dumps(detail.get("evidence") or {}), expanded=2)
                st.markdown("**Scores** of every detector for the post")
                st.json(json.dumps(detail.get("scores") or {}), expanded=1)
                if detail.get("params"):
                    st.markdown("**Parameters**")
                    st.json(json.dumps(detail["params"]))

st.subheader(f"Reverse {len(selected)} selected")
st.caption(
    "Only actions sent to the platform can be reversed (not shadow records or actions held back by a "
    "circuit breaker). The reversal is audited and sent to the platform on the actions topic."
)
nonce = st.session_state.get("ac-generation", 0)
reason = st.text_area(
    f"Why (at least {MIN_REASON_CHARS} characters)", key=f"ac-reason-{nonce}", max_chars=MAX_STATEMENT_CHARS
)
if st.button("Reverse selected", type="primary", disabled=not (selected and reviewer.can_decide), key="ac-reverse"):
    if data.act(policy_actions.reverse_actions, reviewer, selected, reason) is None:
        st.rerun()  # refused as a whole (no reason given): keep the selection and the text, show why
    panels.after_action("ac")
if not reviewer.can_decide:
    st.caption("Viewers cannot reverse actions; ask a lead for the reviewer role.")
