"""Post view: the text (as text), why it was flagged, the account behind it, and the decision panel.

Opened with ``?flag=FLAG_ID`` (from the queue, "submit and next") or ``?post=POST_ID``. Evidence
is highlighted in place when the detector gave per-token surprisal or matched phrases. Shortcuts:
``1``-``4`` pick a decision, ``Ctrl+Enter`` submit, ``Shift+Enter`` submit and next, ``J`` next case
without deciding, ``L`` claim, ``U`` release, ``Q`` back to the queue.
"""

from __future__ import annotations

import json

import polars as pl
import streamlit as st

from dashboards import data, panels, render
from detectors.policy import ACCOUNT_WINDOW
from stream.review.claims import claim, release
from stream.review.decisions import decide
from stream.review.evidence import token_surprisal
from stream.review.queues import FlagFilter
from stream.review.vocabulary import UNDECIDED

reviewer = st.session_state["reviewer"]
flag_param = st.query_params.get("flag")
post_id = st.query_params.get("post") or (data.post_of_flag(flag_param) if flag_param else None)

st.title("Post")
if not post_id:
    post_id = panels.subject_id("post", title="Post", hint="Open a post from the flag queue, or give its id.")

detail = data.post_detail(post_id)
if detail is None:
    st.error("There is no post with that id in the store.")
    st.stop()

post, flags = detail["post"], detail["flags"]
flag_ids = [f["flag_id"] for f in flags]
default_flag = (
    flag_param
    if flag_param in flag_ids
    else next((f["flag_id"] for f in flags if f["status"] in UNDECIDED), flag_ids[0] if flag_ids else None)
)


def go_next(exclude: list[str]) -> None:
    """Claim and open the next case of the queue the reviewer came from."""
    queue = st.session_state.get("q-filter", FlagFilter())
    next_id = data.next_flag(reviewer, queue, exclude=exclude)
    if next_id is None:
        data.notify("success", "That was the last case in your queue.")
        st.switch_page("views/queue.py")
    st.switch_page("views/post.py", query_params={"flag": next_id})


top = st.columns([1, 1, 1, 5])
if top[0].button("Back to queue", shortcut="Q"):
    st.switch_page("views/queue.py")
if top[1].button("Next case", shortcut="J", disabled=not reviewer.can_decide, help="Skip to the next case"):
    go_next([f for f in flag_ids])

left, right = st.columns([3, 2], gap="large")
with left:
    st.caption("Post id")
    st.text(post["post_id"])
    st.caption("Text, exactly as posted (shown as plain text, never as markup)")
    render.post_text(post["text"], key=post["post_id"])

    for result in detail["results"]:
        evidence = result.get("evidence") or {}
        surprisal = token_surprisal(evidence)
        if surprisal and surprisal[0] == "sequence":
            st.caption(
                f"Per-token surprisal from {render.md_escape(result['detector'])}: shaded tokens were the most "
                "predictable to the language model, which is what drives the machine-written call"
            )
            st.html(render.surprisal_html(surprisal[1]))
        elif surprisal:
            st.caption(f"Most surprising tokens ({render.md_escape(result['detector'])})")
            st.dataframe(pl.DataFrame(surprisal[1], schema=["token", "surprisal"], orient="row"), hide_index=True)
        phrases = evidence.get("phrases") if isinstance(evidence, dict) else None
        marked = render.phrases_html(post["text"] or "", phrases or [])
        if marked:
            st.caption(f"Phrases {render.md_escape(result['detector'])} matched")
            st.html(marked)
    if not any(token_surprisal(r.get("evidence")) for r in detail["results"]):
        st.caption("No per-token evidence for this post (the AI-text detector writes it when it scores a post).")

    st.caption("Post metadata")
    meta = {k: post.get(k) for k in ("account_id", "created_at", "lang", "reply_to", "repost_of", "quote_of")}
    meta.update({k: json.dumps(post.get(k) or [], ensure_ascii=False) for k in ("urls", "hashtags", "mentions")})
    st.dataframe(
        pl.DataFrame(
            {
                "field": list(meta),
                "value": [
                    render.when(v) if hasattr(v, "strftime") else ("" if v is None else str(v)) for v in meta.values()
                ],
            }
        ),
        hide_index=True,
    )

with right:
    st.subheader("Why it was flagged")
    if flags:
        st.dataframe(
            pl.DataFrame(
                [
                    {
                        "detector": f["detector"],
                        "score": f["score"],
                        "probability": f["probability"],
                        "threshold": f"{f['threshold_name']} = {f['threshold']}",
                        "status": f["status"],
                        "assignee": f["assignee"] or "",
                    }
                    for f in flags
                ]
            ),
            hide_index=True,
        )
    else:
        st.caption("No detector flagged this post.")
    current = next((f for f in flags if f["flag_id"] == default_flag), None)
    if len(flags) > 1:
        chosen = st.selectbox("Case to decide", flag_ids, index=flag_ids.index(default_flag), key="post-flag")
        current = next(f for f in flags if f["flag_id"] == chosen)
    if current is not None:
        metrics = st.columns(2)
        threshold = current["threshold"]
        over = None if threshold is None else f"{current['score'] - threshold:+.3f} over threshold"
        metrics[0].metric(
            "Score",
            f"{current['score']:.3f}",
            delta=over,
            help="The detector's raw score and its margin over the threshold",
        )
        probability = current["probability"]
        metrics[1].metric(
            "Calibrated probability",
            "n/a" if probability is None else f"{probability:.1%}",
            help="n/a: this detector is not calibrated; its score is not a probability",
        )

    st.subheader("Account")
    account = data.account_summary(post["account_id"])
    st.text(post["account_id"])
    cols = st.columns(3)
    cols[0].metric("Posts", account["posts"])
    cols[1].metric("Flags", sum(account["flags"].values()))
    cols[2].metric("Confirmed or actioned", account["flags"].get("confirmed", 0) + account["flags"].get("actioned", 0))
    if account["detectors"]:
        st.dataframe(pl.DataFrame(account["detectors"]), hide_index=True)
        st.caption(
            f"machine_share: mean calibrated probability of the account's last {ACCOUNT_WINDOW} scored posts, "
            "with its 95% interval (share_lower to share_upper): the estimate a policy's account rules act on. "
            "Empty for a detector whose scores are not probabilities."
        )
    with st.expander("The account's latest posts"):
        st.dataframe(data.account_posts(post["account_id"]), hide_index=True)
    st.subheader("Campaigns")
    campaigns = account["campaigns"]
    if campaigns:
        st.dataframe(pl.DataFrame(campaigns), hide_index=True)
        campaign_id = st.selectbox("Campaign", [c["campaign_id"] for c in campaigns], key="post-campaign")
        if st.button("Open campaign"):
            st.switch_page("views/campaign.py", query_params={"campaign": campaign_id})
    else:
        st.caption("The account is in no known campaign.")

st.divider()
st.subheader("Decision")
if current is None:
    st.caption("Nothing to decide on this post.")
else:
    holder = current["assignee"]
    st.text(f"Case {current['flag_id']}: {current['status']}" + (f", held by {holder}" if holder else ""))
    claim_cols = st.columns([1, 1, 6])
    if claim_cols[0].button("Claim", shortcut="L", disabled=not reviewer.can_decide or holder == reviewer.name):
        data.act(claim, reviewer, [current["flag_id"]])
        st.rerun()
    if claim_cols[1].button("Release", shortcut="U", disabled=not reviewer.can_decide or holder is None):
        data.act(release, reviewer, [current["flag_id"]])
        st.rerun()
    form = panels.decision_form("post", reviewer, with_next=True)
    if form.submitted:
        outcome = data.act(
            decide, reviewer, [current["flag_id"]], form.decision, form.reason_code, form.statement
        )
        if outcome is not None and outcome.applied:
            panels.reset_form("post")
            if form.and_next:
                go_next([current["flag_id"]])
        st.rerun()

panels.decision_history(detail["decisions"], per_case=True)
if not detail["decisions"].is_empty():
    st.caption("Reverse a decision on the Decisions & audit page.")
with st.expander("Audit log of this post's cases"):
    for flag_id in flag_ids:
        st.dataframe(data.audit_trail(subject_id=flag_id), hide_index=True)
