"""Post view: the text (as text), why it was flagged, the account behind it, and the decision panel.

Opened with ``?flag=FLAG_ID`` (from the queue, "submit and next") or ``?post=POST_ID``. Two columns:
on the left the text in a scroll box, then why it was flagged in the analyst's words (each
detector's probability against its threshold as a bar with the margin, the features that moved the
score most, the surprising tokens marked in the text when the detector has a language model, the
phrases it matched, its caveats; a viewer gets the tokens and words as a plain table, with no CSV download),
the account's machine share with its interval and its campaigns;
on the right the decision panel, kept in view while the page scrolls, with nothing chosen in
advance and the answer to each action beside its button; a statement template can start the statement
(the post's ids filled in; a decision is refused while a ``[[...]]`` placeholder is left), and the
team's internal notes on the post and its flags are listed under it, with a box to add one to the
case. Shortcuts: ``1``-``4`` pick a decision,
``Ctrl+Enter`` submit, ``Shift+Enter`` submit and next, ``J`` next case without deciding,
``L`` claim, ``U`` release, ``Q`` back to the queue.
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl
import streamlit as st

from dashboards import data, evidence_view, panels, render, team_data
from detectors.policy import ACCOUNT_WINDOW
from stream.policy import actions as policy_actions
from stream.review.decisions import REVERSING_DECISION, decide
from stream.review.evidence import against_threshold, explain, locate_tokens
from stream.review.placeholders import case_values
from stream.review.queues import FlagFilter
from stream.review.vocabulary import UNDECIDED, subject_of

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
        panels.clear_notice("post")
        data.notify("success", "That was the last case in your queue.")
        st.switch_page("views/queue.py")
    st.switch_page("views/post.py", query_params={"flag": next_id})


def case_state(flag: dict[str, Any]) -> str:
    """A case's status, and who holds it."""
    holder = flag["assignee"]
    return flag["status"] + (f", held by {render.visible(holder)}" if holder else "")


# A row of buttons as wide as their labels (fixed columns cut "Back to queue" to "Back to …").
top = st.container(horizontal=True)
if top.button("Back to queue", shortcut="Q"):
    st.switch_page("views/queue.py")
if top.button("Next case", shortcut="J", disabled=not reviewer.can_decide, help="Skip to the next case"):
    go_next([f for f in flag_ids])

left, panel = panels.action_panel("post-action-panel")  # the decision panel: kept in view while the page scrolls
with panel:
    st.subheader("Decision")
    current = next((f for f in flags if f["flag_id"] == default_flag), None)
    by_id = {f["flag_id"]: f for f in flags}
    if len(flags) > 1:
        # Each case's state in its option, not on a line of its own: a post flagged by two detectors
        # must keep the panel's Submit button on a laptop's first screen (1440x900).
        chosen = st.selectbox(
            "Case to decide",
            flag_ids,
            index=flag_ids.index(default_flag),
            key="post-flag",
            format_func=lambda flag_id: f"{render.visible(flag_id)} ({case_state(by_id[flag_id])})",
        )
        current = by_id[chosen]


def show_why(result: dict[str, Any], text: str) -> bool:
    """One detector's result in words: score against threshold, caveats, what moved it, tokens, phrases.

    Returns whether it had per-token evidence.
    """
    detector = result["detector"]
    reading = explain(result.get("evidence"))
    view = against_threshold(result["score"], result["probability"], result["threshold"])
    if view is not None:
        st.html(evidence_view.threshold_bar(view, detector=detector, threshold_name=result["threshold_name"]))
    else:
        st.caption(f"{render.md_escape(detector)}: no score for this post")
    if reading.not_scored:
        st.warning(f"Not scored: {render.md_escape(reading.not_scored)}.")
    for caveat in reading.caveats:
        st.warning(render.md_escape(caveat))
    if reading.contributions:
        st.caption(
            "What moved the score most: each feature's share of the log-odds "
            "(right of the line: towards machine-written; left: towards human-written)"
        )
        st.html(evidence_view.contribution_bars(reading.contributions))
        with st.expander(f"All {len(reading.contributions)} features of {render.md_escape(detector)}"):
            st.dataframe(evidence_view.contributions_frame(reading.contributions), hide_index=True)
    if reading.sequence:
        st.caption(
            f"Per-token surprisal from {render.md_escape(detector)}: shaded tokens were the most "
            "predictable to the language model, which is what drives the machine-written call"
        )
        st.html(render.surprisal_html(reading.sequence))
    elif reading.top_tokens:
        spans = locate_tokens(render.clip(text)[0], reading.top_tokens, reading.n_tokens)
        st.caption(
            f"The tokens the language model found most surprising ({render.md_escape(detector)}), marked in the "
            "text where they occur (surprisal in nats). The language-model features above are computed from "
            "surprisals like these: machine-written text tends to have fewer and milder surprises."
        )
        if spans:
            st.html(evidence_view.marked_tokens(text, spans))
        render.text_pieces_table(evidence_view.tokens_frame(reading.top_tokens))
    if reading.words and not (reading.sequence or reading.top_tokens):
        n_words = len((text or "").split())
        spans = evidence_view.word_spans(render.clip(text)[0], reading.words, n_words)
        st.caption(
            f"The words that pushed {render.md_escape(detector)} most towards machine-written, marked in the text: "
            "each word's share of the character n-gram style score, in log-odds (hover a word)"
        )
        if spans:
            st.html(evidence_view.marked_tokens(text, spans, unit="log-odds"))
        render.text_pieces_table(evidence_view.words_frame(reading.words))
    marked = render.phrases_html(text, reading.phrases)
    if marked:
        st.caption(f"Phrases {render.md_escape(detector)} matched")
        st.html(marked)
    return reading.has_token_evidence


with left:
    st.caption("Post id")
    st.text(render.visible(post["post_id"]))
    st.caption("Text, exactly as posted (shown as plain text, never as markup)")
    with st.container(height=evidence_view.SCROLL_BOX_PX):
        render.post_text(post["text"], key=post["post_id"])

    st.subheader("Why it was flagged")
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
    elif not flags:
        st.caption("No detector flagged this post.")
    flagged_by = [f["detector"] for f in flags]
    first = current["detector"] if current is not None else None
    results = sorted(
        detail["results"],
        key=lambda r: (r["detector"] != first, r["detector"] not in flagged_by, r["detector"]),
    )
    token_evidence = False
    for result in results:
        with st.container(border=True):
            token_evidence |= show_why(result, post["text"] or "")
    if not token_evidence:
        with_features = any(explain(r.get("evidence")).contributions for r in results)
        st.caption(
            "No per-word evidence for this post: what moved this score is the features above."
            if with_features
            else "No per-token evidence for this post (the AI-text detector writes it when its head reads a "
            "language model)."
        )
    if len(flags) > 1:
        st.caption("The cases on this post")
        st.dataframe(
            render.visible_columns(
                pl.DataFrame(
                    [
                        {
                            "detector": f["detector"],
                            "status": f["status"],
                            "assignee": f["assignee"] or "",
                            "flag_id": f["flag_id"],
                        }
                        for f in flags
                    ]
                )
            ),
            hide_index=True,
        )

    st.subheader("Account")
    account = data.account_summary(post["account_id"])
    st.text(render.visible(post["account_id"]))
    cols = st.columns(3)
    cols[0].metric("Posts", account["posts"])
    cols[1].metric("Flags", sum(account["flags"].values()))
    cols[2].metric("Confirmed or actioned", account["flags"].get("confirmed", 0) + account["flags"].get("actioned", 0))
    for row in account["detectors"]:
        shown = evidence_view.share_interval(
            row["detector"], row["machine_share"], row["share_lower"], row["share_upper"], row["recent_posts"]
        )
        if shown:
            st.html(shown)
    if account["detectors"]:
        st.dataframe(pl.DataFrame(account["detectors"]), hide_index=True)
        st.caption(
            f"machine_share: mean calibrated probability of the account's last {ACCOUNT_WINDOW} scored posts, "
            "with its 95% interval (share_lower to share_upper): the estimate a policy's account rules act on. "
            "Empty for a detector whose scores are not probabilities."
        )
    with st.expander("The account's latest posts"):
        latest = render.without_text_for_viewers(render.visible_columns(data.account_posts(post["account_id"])))
        st.dataframe(latest, hide_index=True)
    st.subheader("Campaigns")
    campaigns = account["campaigns"]
    if campaigns:
        st.dataframe(render.visible_columns(pl.DataFrame(campaigns)), hide_index=True)
        campaign_id = st.selectbox(
            "Campaign", [c["campaign_id"] for c in campaigns], key="post-campaign", format_func=render.visible
        )
        if st.button("Open campaign"):
            st.switch_page("views/campaign.py", query_params={"campaign": campaign_id})
    else:
        st.caption("The account is in no known campaign.")

    st.caption("Post metadata")
    meta = {k: post.get(k) for k in ("account_id", "created_at", "lang", "reply_to", "repost_of", "quote_of")}
    meta.update({k: json.dumps(post.get(k) or [], ensure_ascii=False) for k in ("urls", "hashtags", "mentions")})
    # urls, hashtags and mentions are what the post wrote: viewers get them without a download, too.
    render.text_pieces_table(
        render.visible_columns(
            pl.DataFrame(
                {
                    "field": list(meta),
                    "value": [
                        render.when(v) if hasattr(v, "strftime") else ("" if v is None else str(v))
                        for v in meta.values()
                    ],
                }
            )
        )
    )

# -- Automated actions in force on this post (issue #15): each reversible here, and offered for reversal
# with a dismissal below. Self-contained: reads data.post_actions, acts through stream.policy.actions.
auto_actions = data.post_actions(post["post_id"])
auto_live = auto_actions.filter(pl.col("in_force"))
st.subheader("Automated actions in force")
if auto_live.is_empty():
    st.caption("No automated action of the policies is in force on this post.")
else:
    st.caption(
        "What the platform applies to this post now because a policy rule matched it. A reversal is audited "
        "and reaches the platform on the actions topic, as on the Automated actions page."
    )
    auto_nonce = st.session_state.get("post-auto-generation", 0)
    auto_reason = st.text_area(
        f"Why reverse (at least {policy_actions.MIN_REASON_CHARS} characters)",
        key=f"post-auto-reason-{auto_nonce}",
        placeholder="Read by the platform's team and the audit, e.g. a quote of a chatbot, not machine-written",
    )
    auto_widths = [2, 3, 2, 2, 1, 1]
    auto_heads = ("action", "rule", "policy", "when", "status", "")
    for auto_cell, auto_head in zip(st.columns(auto_widths), auto_heads, strict=True):
        auto_cell.caption(auto_head)
    for auto_row in auto_live.iter_rows(named=True):
        auto_cells = st.columns(auto_widths, vertical_alignment="center")
        auto_cells[0].text(render.visible(auto_row["action"]))
        auto_cells[1].text(render.visible(auto_row["rule_id"]))
        auto_cells[2].text(f"{render.visible(auto_row['policy_id'])}@{render.visible(auto_row['policy_version'])}")
        auto_cells[3].text(render.when(auto_row["decided_at"]))
        auto_cells[4].text("in force")
        if auto_cells[5].button(
            "Reverse",
            key=f"post-auto-reverse-{auto_row['action_id']}",
            disabled=not reviewer.can_decide,
            help=f"Reverse action {render.visible(auto_row['action_id'])}; the reason above is required",
        ):
            if data.act(policy_actions.reverse_actions, reviewer, [auto_row["action_id"]], auto_reason) is not None:
                st.session_state["post-auto-generation"] = auto_nonce + 1  # done: start with an empty reason
            st.rerun()
auto_other = auto_actions.filter(~pl.col("in_force"))
if not auto_other.is_empty():
    with st.expander(f"{auto_other.height} other automated record(s) on this post, not in force"):
        auto_shown = auto_other.select(
            "action", "rule_id", (pl.col("policy_id") + "@" + pl.col("policy_version")).alias("policy"),
            pl.col("decided_at").map_elements(render.when, return_dtype=pl.String).alias("when"),
            pl.col("why_not").alias("status"),
        )  # fmt: skip
        st.dataframe(render.visible_columns(auto_shown), hide_index=True)


def automated_reversals(decision: str, flag_id: str) -> list[str]:
    """With a dismissal: the checkbox (ticked by default) to reverse the live actions too; the ids to reverse."""
    if decision != REVERSING_DECISION or auto_live.is_empty():
        return []
    ids = auto_live["action_id"].to_list()
    listed = ", ".join(
        f"{render.md_escape(a)} by rule {render.md_escape(r)}"
        for a, r in zip(auto_live["action"], auto_live["rule_id"], strict=True)
    )
    keep = st.checkbox(
        f"Also reverse {len(ids)} automated action(s) in force on this post ({listed})",
        value=True,
        key=f"post-auto-with-{abs(hash((flag_id, tuple(ids))))}",
    )
    st.caption(
        "Ticked by default: a dismissal says the detector was wrong, so what the policies did because of it is "
        "undone with the decision (one transaction, named in its audit entry). Untick to leave them in force."
    )
    return ids if keep else []


# -- end of the automated actions section

with panel:
    if current is None:
        st.caption("Nothing to decide on this post.")
    else:
        holder = current["assignee"]
        if len(flags) == 1:  # with several, the case picker says it
            st.text(f"Case {render.visible(current['flag_id'])}: {case_state(current)}")
        panels.claim_buttons(reviewer, current["flag_id"], holder, form_key="post")
        # Templates for a post or its account; the account's campaign fills {campaign} when there is just one.
        in_campaigns = [c["campaign_id"] for c in data.account_summary(post["account_id"])["campaigns"]]
        form = panels.decision_form(
            "post",
            reviewer,
            with_next=True,
            subject=subject_of(current["detector"]),
            templates=team_data.statement_templates(kinds=("post", "account")),
            case=case_values(
                account=post["account_id"],
                post_id=post["post_id"],
                campaign=in_campaigns[0] if len(in_campaigns) == 1 else None,
                detector=current["detector"],
                posted_at=post.get("created_at"),
            ),
        )
        auto_reverse = automated_reversals(form.decision, current["flag_id"])
        if form.submitted:
            outcome = data.act(
                decide,
                reviewer,
                [current["flag_id"]],
                form.decision,
                form.reason_code,
                form.statement,
                reverse_actions=auto_reverse,
            )
            panels.keep_notice("post")  # beside the submit button, on this case or the next
            if outcome is not None and outcome.applied:
                panels.reset_form("post")
                if form.and_next:
                    go_next([current["flag_id"]])
            st.rerun()
    post_notes = team_data.post_notes(post["post_id"])
    with st.expander(f"Team notes ({post_notes.height})", expanded=not post_notes.is_empty()):
        note_on = ("flag", current["flag_id"]) if current is not None else ("post", post["post_id"])
        panels.notes_section(
            reviewer,
            post_notes,
            key="post",
            subject_type=note_on[0],
            subject_id=note_on[1],
            subject_label=f"case {render.visible(note_on[1])}" if current is not None else "this post",
        )

panels.decision_history(detail["decisions"], per_case=True)
if not detail["decisions"].is_empty():
    st.caption("Reverse a decision on the Decisions & audit page.")
with st.expander("Audit log of this post's cases"):
    for flag_id in flag_ids:
        st.dataframe(data.audit_trail(subject_id=flag_id), hide_index=True)
