"""Shadow comparison: would the candidate policy do better than the active one?

For every rule of both policies (frames in, frame out, as polars expressions):

* ``posts``: distinct posts the rule fired on;
* ``overlap``: how many of those the *other* policy also acted on (any rule), and ``overlap_share``;
* ``same_action``: how many the other policy met with the same kind of action;
* ``reviewed`` / ``agreed`` / ``agreement``: of the posts a reviewer decided, how many decisions
  say the post was a problem (``POSITIVE_DECISIONS``); a decision outside both vocabularies is not
  counted. Agreement is the rule's precision as reviewers see it; the reviewed posts are a sample
  the queue chose, not a random one, so compare rules with each other rather than read it as truth.
"""

from __future__ import annotations

import polars as pl

from stream.policy.registry import read_slots
from stream.store.database import Store

#: Reviewer decisions meaning "the post was a problem" and "it was not".
POSITIVE_DECISIONS: frozenset[str] = frozenset(
    {"confirmed", "actioned", "escalated", "removed", "remove", "suspended", "labelled", "violating"}
)
NEGATIVE_DECISIONS: frozenset[str] = frozenset({"dismissed", "no_action", "not_violating", "rejected"})

COMPARISON_COLUMNS = ("policy", "rule_id", "action", "posts", "overlap", "overlap_share", "same_action",
                      "reviewed", "agreed", "agreement")


def compare_matches(
    active: pl.DataFrame,
    shadow: pl.DataFrame,
    decisions: pl.DataFrame,
    *,
    active_label: str = "active",
    shadow_label: str = "shadow",
) -> pl.DataFrame:
    """Per rule of both policies, the counts above.

    ``active`` and ``shadow``: ``rule_id, action, post_id`` (one row per record);
    ``decisions``: ``post_id, decision`` (the standing decision per post).
    """
    judged = decisions.filter(
        pl.col("decision").is_in(list(POSITIVE_DECISIONS | NEGATIVE_DECISIONS))
    ).select("post_id", pl.col("decision").is_in(list(POSITIVE_DECISIONS)).alias("positive"))
    parts = []
    for label, mine, other in ((active_label, active, shadow), (shadow_label, shadow, active)):
        if mine.height == 0:
            continue
        other_posts = other.select("post_id").unique().with_columns(in_other=pl.lit(True))
        other_pairs = other.select("post_id", "action").unique().with_columns(same=pl.lit(True))
        per_post = (
            mine.select("rule_id", "action", "post_id").unique()
            .join(other_posts, on="post_id", how="left")
            .join(other_pairs, on=["post_id", "action"], how="left")
            .join(judged, on="post_id", how="left")
        )
        parts.append(
            per_post.group_by("rule_id", "action")
            .agg(
                posts=pl.len(),
                overlap=pl.col("in_other").fill_null(False).sum(),
                same_action=pl.col("same").fill_null(False).sum(),
                reviewed=pl.col("positive").is_not_null().sum(),
                agreed=pl.col("positive").fill_null(False).sum(),
            )
            .with_columns(policy=pl.lit(label))
        )
    if not parts:
        return pl.DataFrame(schema={c: pl.Int64 for c in COMPARISON_COLUMNS} | {
            "policy": pl.String, "rule_id": pl.String, "action": pl.String,
            "overlap_share": pl.Float64, "agreement": pl.Float64})
    return (
        pl.concat(parts)
        .with_columns(
            overlap_share=pl.col("overlap") / pl.col("posts"),
            agreement=pl.when(pl.col("reviewed") > 0).then(pl.col("agreed") / pl.col("reviewed")),
        )
        .select(COMPARISON_COLUMNS)
        .cast({c: pl.Int64 for c in ("posts", "overlap", "same_action", "reviewed", "agreed")})
        .sort("policy", "rule_id")
    )


def compare_slots(store: Store) -> pl.DataFrame | None:
    """:func:`compare_matches` of the store's shadow policy against its active one (what ``chorus
    policy compare`` prints and the console shows), or None when no policy is in shadow."""
    slots = read_slots(store)
    if slots["shadow"] is None:
        return None
    empty = pl.DataFrame(schema={"rule_id": pl.String, "action": pl.String, "status": pl.String, "post_id": pl.String})
    active = store.policy_matches(*slots["active"], "active") if slots["active"] else empty
    shadow = store.policy_matches(*slots["shadow"], "shadow")
    return compare_matches(
        active, shadow, store.post_review_decisions(),
        active_label="@".join(slots["active"]) if slots["active"] else "active",
        shadow_label="@".join(slots["shadow"]),
    )
