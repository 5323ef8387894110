"""Overview: queue sizes, flag volumes over time, stream throughput and lag, detector precision, dead letters.

Times are UTC on a time axis labelled for the span shown. Decisions count only where they stand: a
reversed decision is neither a reviewer's decision nor a label in the precision table.
"""

from __future__ import annotations

import streamlit as st

from dashboards import data, panels, render

st.title("Overview")
controls = st.columns([2, 2, 6])
VOLUME_BY = {"post_created_at": "time posted", "flagged_at": "time flagged"}
volume_by = controls[0].selectbox("Flags over time by", list(VOLUME_BY), key="o-by", format_func=VOLUME_BY.__getitem__)
unit = controls[1].selectbox("Bucket", ["hour", "day"], key="o-unit")
view = data.overview(volume_by=volume_by, unit=unit)

sizes = view["sizes"]
st.subheader("Queues")
cols = st.columns(6)
cols[0].metric("Open flags", sizes["flags"].get("open", 0))
cols[1].metric("Claimed", sizes["flags"].get("claimed", 0))
cols[2].metric("Escalated", sizes["flags"].get("escalated", 0))
cols[3].metric("Past the SLA", sizes["overdue_flags"])
cols[4].metric("Open campaigns", sizes["campaigns"].get("open", 0) + sizes["campaigns"].get("claimed", 0))
cols[5].metric("Decided flags", sum(sizes["flags"].get(s, 0) for s in ("confirmed", "dismissed", "actioned")))

left, right = st.columns(2, gap="large")
with left:
    volume = view["volume"]
    if panels.section("Flags over time", volume, empty="No flags yet."):
        st.altair_chart(render.counts_chart(volume, "bucket", "flags", "detector", bucket=unit), width="stretch")
with right:
    throughput = view["throughput"]
    if panels.section(
        "Stream throughput and lag", throughput, empty="No worker metrics yet: workers write one row per batch."
    ):
        latest = throughput.tail(1).row(0, named=True)
        m = st.columns(3)
        m[0].metric("Posts/s (last batch)", f"{latest['posts_per_s'] or 0:,.0f}")
        m[1].metric("Consumer lag (messages)", f"{latest['lag_total'] or 0:,}")
        m[2].metric("Batches recorded", f"{throughput.height:,}")
        st.caption(f"One point per batch a worker wrote, {render.when(throughput['at'].min())} to "
                   f"{render.when(throughput['at'].max())}.")  # fmt: skip
        for value, title in (("posts_per_s", "posts per second"), ("lag_total", "consumer lag (messages)")):
            st.altair_chart(
                render.counts_chart(
                    throughput.select("at", "worker_id", value),
                    "at",
                    value,
                    "worker_id",
                    kind="line",
                    y_title=title,
                    color_title="worker",
                ),
                width="stretch",
            )

precision = view["precision"]
if panels.section(
    "Detector precision (reviewer agreement)",
    precision,
    empty="No standing decisions yet: precision appears once reviewers confirm or dismiss flags.",
):
    st.caption(
        "Precision = confirmed / (confirmed + dismissed) among the decisions that stand (a reversed decision "
        "counts for nothing), at the detector's own threshold and at higher score cut-offs (rows named '>= x')."
    )
    with st.container(key="overview-precision"):
        # Full width, every column sized to its content: no column is cut off.
        st.dataframe(
            render.visible_columns(precision),
            hide_index=True,
            width="stretch",
            column_config={
                "detector": st.column_config.TextColumn("detector", width="medium"),
                "threshold_name": st.column_config.TextColumn("threshold", width="medium"),
                "threshold": st.column_config.NumberColumn("score at least", format="%.3f", width="small"),
                "decided": st.column_config.NumberColumn("decided", width="small"),
                "confirmed": st.column_config.NumberColumn("confirmed", width="small"),
                "dismissed": st.column_config.NumberColumn("dismissed", width="small"),
                "precision": st.column_config.NumberColumn("precision", format="%.2f", width="small"),
            },
        )

left, right = st.columns(2, gap="large")
with left:
    decisions = view["decisions"]
    if panels.section("Decisions by reviewer", decisions, empty="No decisions yet."):
        st.caption("Decisions that stand; those reversed since are counted apart and not as decisions.")
        st.dataframe(render.visible_columns(decisions), hide_index=True, width="stretch")
with right:
    dead = view["dead_letters"]
    if panels.section("Dead letters by reason", dead, empty="No dead letters."):
        st.altair_chart(render.counts_chart(dead.select("reason", "messages"), "reason", "messages"), width="stretch")
        st.dataframe(render.visible_columns(dead), hide_index=True)
