"""Co-action semantics on hand-made posts: windows, direction, dedupe, links, hashtags, evidence.

These need neither the QUT toolkit nor the development data; the differential tests against the
toolkit are in ``test_coordination_qut.py``.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from detectors.base import POST_COLUMNS
from detectors.coordination import (
    NETWORK_TYPES,
    CoActionConfig,
    co_action_edges,
    co_action_matches,
    co_action_networks,
    co_hashtag,
    co_link,
    co_reply,
    co_repost,
    co_similar,
    co_text,
    coerce_posts,
    match_actions,
    post_actions,
    posts_to_qut,
)
from detectors.coordination.coaction import prepare_posts
from detectors.coordination.minhash import TARGET_RECALL_AT_THRESHOLD, choose_bands, similar_set_pairs
from stream.simulation import generate_stream

T0 = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)


def make_posts(rows: list[dict]) -> pl.DataFrame:
    """Posts in the Chorus schema from short dicts: ``id, account, t`` (seconds) plus any field."""
    full = [
        {
            "post_id": r["id"],
            "account_id": r["account"],
            "created_at": T0 + dt.timedelta(seconds=r["t"]),
            "text": r.get("text", ""),
            "lang": None,
            "reply_to": r.get("reply_to"),
            "repost_of": r.get("repost_of"),
            "quote_of": None,
            "urls": r.get("urls", []),
            "hashtags": r.get("hashtags", []),
            "mentions": [],
        }
        for r in rows
    ]
    return coerce_posts(pl.DataFrame(full, schema_overrides={"created_at": pl.Datetime("us", "UTC")}))


def edge_set(edges: pl.DataFrame) -> set[tuple[str, str, int]]:
    return set(edges.select("user_1", "user_2", "weight").iter_rows())


def test_make_posts_has_the_post_schema() -> None:
    posts = make_posts([{"id": "1", "account": "a", "t": 0}])
    assert set(POST_COLUMNS) <= set(posts.columns)
    assert posts.schema["created_at"] == pl.Datetime("us", "UTC")


def test_window_is_inclusive_at_both_ends() -> None:
    posts = make_posts(
        [
            {"id": "1", "account": "a", "t": 0, "repost_of": "x"},
            {"id": "2", "account": "b", "t": 60, "repost_of": "x"},
            {"id": "3", "account": "c", "t": 120.000001, "repost_of": "x"},
        ]
    )
    assert edge_set(co_repost(posts, 60)) == {("a", "b", 1), ("b", "a", 1)}
    assert edge_set(co_repost(posts, 60.000001)) == {
        ("a", "b", 1),
        ("b", "a", 1),
        ("b", "c", 1),
        ("c", "b", 1),
    }


def test_weight_counts_distinct_posts_of_the_first_account_so_edges_are_directed() -> None:
    posts = make_posts(
        [
            {"id": "1", "account": "a", "t": 0, "repost_of": "x"},
            {"id": "2", "account": "a", "t": 10, "repost_of": "x"},
            {"id": "3", "account": "b", "t": 5, "repost_of": "x"},
        ]
    )
    assert edge_set(co_repost(posts, 60)) == {("a", "b", 2), ("b", "a", 1)}


def test_self_loops_are_left_out_unless_asked_for() -> None:
    posts = make_posts(
        [
            {"id": "1", "account": "a", "t": 0, "repost_of": "x"},
            {"id": "2", "account": "a", "t": 10, "repost_of": "x"},
        ]
    )
    assert co_repost(posts, 60).height == 0
    assert edge_set(co_repost(posts, 60, include_self_loops=True)) == {("a", "a", 2)}


def test_a_repeated_post_id_counts_once_first_row_wins() -> None:
    posts = make_posts(
        [
            {"id": "1", "account": "a", "t": 0, "repost_of": "x"},
            {"id": "1", "account": "a", "t": 500, "repost_of": "y"},
            {"id": "2", "account": "b", "t": 1, "repost_of": "x"},
        ]
    )
    assert edge_set(co_repost(posts, 60)) == {("a", "b", 1), ("b", "a", 1)}


def test_co_text_uses_qut_normalisation_and_skips_reposts() -> None:
    posts = make_posts(
        [
            {"id": "1", "account": "a", "t": 0, "text": "Vote  NOW @someone"},
            {"id": "2", "account": "b", "t": 3, "text": "@other vote now"},
            {"id": "3", "account": "c", "t": 4, "text": "vote now", "repost_of": "r"},
            {"id": "4", "account": "d", "t": 5, "text": "vote later"},
        ]
    )
    assert edge_set(co_text(posts, 60)) == {("a", "b", 1), ("b", "a", 1)}


def test_co_reply_needs_the_same_target_and_no_repost() -> None:
    posts = make_posts(
        [
            {"id": "1", "account": "a", "t": 0, "reply_to": "t1"},
            {"id": "2", "account": "b", "t": 1, "reply_to": "t1"},
            {"id": "3", "account": "c", "t": 2, "reply_to": "t1", "repost_of": "r"},
            {"id": "4", "account": "d", "t": 3, "reply_to": "t2"},
        ]
    )
    assert edge_set(co_reply(posts, 60)) == {("a", "b", 1), ("b", "a", 1)}


def test_co_link_has_no_phantom_link_ignores_reposts_and_counts_a_post_once() -> None:
    posts = make_posts(
        [
            {"id": "1", "account": "a", "t": 0, "urls": ["https://x", "https://y"]},
            {"id": "2", "account": "b", "t": 1, "urls": ["https://y", "https://x"]},
            {"id": "3", "account": "c", "t": 2, "urls": []},
            {"id": "4", "account": "d", "t": 3, "urls": [""]},
            {"id": "5", "account": "e", "t": 4, "urls": [" "]},
            {"id": "6", "account": "f", "t": 5, "urls": ["https://x"], "repost_of": "r"},
        ]
    )
    assert edge_set(co_link(posts, 60)) == {("a", "b", 1), ("b", "a", 1)}


def test_co_hashtag_compares_whole_sets_ignoring_case_order_and_hash_sign() -> None:
    posts = make_posts(
        [
            {"id": "1", "account": "a", "t": 0, "hashtags": ["Vote", "#Now"]},
            {"id": "2", "account": "b", "t": 1, "hashtags": ["now", "vote", "vote"]},
            {"id": "3", "account": "c", "t": 2, "hashtags": ["vote"]},
            {"id": "4", "account": "d", "t": 3, "hashtags": []},
            {"id": "5", "account": "e", "t": 4, "hashtags": []},
        ]
    )
    assert edge_set(co_hashtag(posts, 60)) == {("a", "b", 1), ("b", "a", 1)}


def test_co_similar_links_near_duplicates_only() -> None:
    base = "the quick brown fox jumps over the lazy dog near the river bank today"
    posts = make_posts(
        [
            {"id": "1", "account": "a", "t": 0, "text": base},
            {"id": "2", "account": "b", "t": 30, "text": base.replace("river", "lake")},
            {"id": "3", "account": "c", "t": 40, "text": "something else entirely about the weather"},
            {"id": "4", "account": "d", "t": 50, "text": "@only_a_mention"},
            {"id": "5", "account": "e", "t": 51, "text": "@another_mention"},
        ]
    )
    assert edge_set(co_similar(posts, 60, similarity_threshold=0.8)) == {("a", "b", 1), ("b", "a", 1)}
    assert co_similar(posts, 60, similarity_threshold=0.95).height == 0


def test_evidence_keeps_the_earliest_matched_pairs_with_times() -> None:
    rows = [{"id": f"a{i}", "account": "a", "t": 100 * i, "repost_of": f"x{i}"} for i in range(8)]
    rows += [{"id": f"b{i}", "account": "b", "t": 100 * i + 7, "repost_of": f"x{i}"} for i in range(8)]
    edges = co_repost(make_posts(rows), 60, evidence_per_edge=3)
    a_to_b = edges.filter(pl.col("user_1") == "a").row(0, named=True)
    assert a_to_b["weight"] == 8
    assert [e["post_1"] for e in a_to_b["evidence"]] == ["a0", "a1", "a2"]
    assert [e["post_2"] for e in a_to_b["evidence"]] == ["b0", "b1", "b2"]
    first = a_to_b["evidence"][0]
    assert (first["time_2"] - first["time_1"]).total_seconds() == 7


def test_edges_do_not_depend_on_row_order() -> None:
    posts = generate_stream(n_organic=80, n_campaigns=2, seed=3).posts
    shuffled = posts.sample(fraction=1.0, shuffle=True, seed=11)
    config = CoActionConfig(windows_s=dict.fromkeys(("co_repost", "co_text", "co_link"), 120))
    for network, edges in co_action_networks(posts, config).items():
        again = co_action_edges(shuffled, network, config)
        assert edges.equals(again), network


def test_config_rejects_unknown_types_keys_and_negative_windows() -> None:
    with pytest.raises(ValueError, match="unknown network type"):
        CoActionConfig().window_s("co_like")
    with pytest.raises(ValueError, match="unknown co-action settings"):
        CoActionConfig.from_mapping({"window": 60})
    posts = make_posts([{"id": "1", "account": "a", "t": 0, "repost_of": "x"}])
    with pytest.raises(ValueError, match=">= 0"):
        co_repost(posts, -1)
    assert CoActionConfig.from_mapping({"min_weight": 2}).min_weight == 2


def test_empty_input_gives_empty_edges_with_the_edge_schema() -> None:
    posts = make_posts([{"id": "1", "account": "a", "t": 0}])
    for edges in co_action_networks(posts).values():
        assert edges.height == 0
        assert edges.columns == ["user_1", "user_2", "weight", "evidence"]


def test_qut_round_trip_keeps_what_the_networks_use() -> None:
    posts = generate_stream(n_organic=50, n_campaigns=1, seed=5).posts
    back = coerce_posts(posts_to_qut(posts))
    for network in ("co_repost", "co_text", "co_reply", "co_link"):
        assert (
            co_action_edges(posts, network)
            .select("user_1", "user_2", "weight")
            .equals(co_action_edges(back, network).select("user_1", "user_2", "weight"))
        )


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.9])
def test_band_choice_meets_the_recall_target(threshold: float) -> None:
    bands, rows = choose_bands(threshold, 64)
    assert bands * rows <= 64
    assert 1 - (1 - threshold**rows) ** bands >= TARGET_RECALL_AT_THRESHOLD


def test_lsh_finds_similar_sets_and_reports_exact_jaccard() -> None:
    rng = np.random.default_rng(0)
    sets = []
    for i in range(300):
        base = [f"w{j}" for j in rng.choice(5000, size=20, replace=False)]
        sets.append(sorted(set(base)))
        twin = [*base[:18], f"z{i}a", f"z{i}b"]  # Jaccard 18/22 = 0.818 with its base
        sets.append(sorted(set(twin)))
    frame = pl.DataFrame({"set_id": np.arange(len(sets)), "tokens": sets})
    pairs = similar_set_pairs(frame, 0.8, num_perm=64, seed=1)
    found = {(a, b) for a, b in pairs.select("set_id", "match_set_id").iter_rows() if a < b}
    expected = {(2 * i, 2 * i + 1) for i in range(300)}
    assert found <= expected  # verification is exact: nothing below the threshold
    assert len(found) / len(expected) >= 0.95
    assert pairs["jaccard"].min() == pytest.approx(18 / 22)


# ------------------------------------------------------------------------------------------------
# Prepared posts: derived once, reused across windows and types, same edges
# ------------------------------------------------------------------------------------------------


def test_prepared_posts_give_the_same_edges_at_every_window_and_type() -> None:
    posts = generate_stream(n_organic=120, n_campaigns=2, seed=4).posts
    prepared = prepare_posts(posts, NETWORK_TYPES)
    for window in (0, 30, 600):
        config = CoActionConfig(windows_s=dict.fromkeys(NETWORK_TYPES, window), evidence_per_edge=2)
        for network in NETWORK_TYPES:
            assert co_action_edges(prepared, network, config).equals(co_action_edges(posts, network, config)), network
        together, alone = co_action_networks(prepared, config), co_action_networks(posts, config)
        assert all(together[n].equals(alone[n]) for n in NETWORK_TYPES)


def test_a_type_that_was_not_prepared_is_an_error_naming_the_fix() -> None:
    posts = make_posts([{"id": "1", "account": "a", "t": 0, "repost_of": "x"}])
    prepared = prepare_posts(posts, ["co_repost"])
    with pytest.raises(ValueError, match="prepare_posts"):
        co_action_edges(prepared, "co_text")
    with pytest.raises(ValueError, match="unknown network type"):
        prepare_posts(posts, ["co_like"])


def test_match_actions_on_post_actions_equals_the_network_matches() -> None:
    posts = generate_stream(n_organic=80, n_campaigns=2, seed=8).posts
    for network in ("co_repost", "co_link"):
        config = CoActionConfig(windows_s={network: 90})
        direct = match_actions(post_actions(posts, network), 90).sort("post_id", "match_account_id")
        assert direct.equals(co_action_matches(posts, network, config).sort("post_id", "match_account_id")), network


def test_ties_go_to_the_later_post_then_the_higher_post_id() -> None:
    posts = make_posts(
        [
            {"id": "b1", "account": "b", "t": 90, "repost_of": "x"},
            {"id": "a1", "account": "a", "t": 100, "repost_of": "x"},
            {"id": "b2", "account": "b", "t": 110, "repost_of": "x"},  # as near as b1, later: chosen
            {"id": "b3", "account": "b", "t": 110, "repost_of": "x"},  # same time as b2, higher id: chosen
        ]
    )
    edges = co_repost(posts, 60)
    evidence = edges.filter(pl.col("user_1") == "a")["evidence"][0]
    assert [(e["post_1"], e["post_2"]) for e in evidence] == [("a1", "b3")]


def test_lsh_time_slices_only_drop_pairs_that_are_never_in_one_window() -> None:
    rng = np.random.default_rng(3)
    sets, slices = [], []
    for i in range(200):
        base = [f"w{j}" for j in rng.choice(3000, size=15, replace=False)]
        sets += [sorted(set(base)), sorted(set([*base[:14], f"z{i}"]))]  # Jaccard 14/16 with its base
        slices += [(2 * i, i % 7), (2 * i + 1, i % 7 + (i % 3))]  # same, next, or two slices later
    frame = pl.DataFrame({"set_id": np.arange(len(sets)), "tokens": sets})
    sliced = pl.DataFrame(slices, schema={"set_id": pl.Int64, "slice": pl.Int64}, orient="row")
    everything = similar_set_pairs(frame, 0.8, seed=2)
    within = similar_set_pairs(frame, 0.8, seed=2, slices=sliced)
    near = {i for i in range(200) if i % 3 < 2}
    expected = everything.filter((pl.col("set_id") // 2).is_in(list(near)))
    assert within.equals(expected)
