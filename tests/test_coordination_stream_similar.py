"""co_similar in the incremental state equals the batch co_similar, whatever the order and batching.

Hypothesis draws small streams whose texts are planted near-duplicates of a few messages (a word
swapped, added or dropped, so that pairs fall on both sides of the threshold), plus reposts, texts
that are only @mentions and texts shorter than ``min_tokens``, and checks that
:class:`CoActionState` gives the very edges (weights and evidence) of
``co_action_edges(posts, "co_similar", config)``. Then: eviction keeps the held sets bounded while
the reported matches still add up to the batch's; the band cap only removes; and the scale-out
path (actions routed by band code to several workers, merged by an :class:`ObjectMatchLedger`)
gives the batch's edges too.
"""

from __future__ import annotations

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_coordination_stream import NO_EVICTION, make_posts, micro_batches, ordered_with_disorder

from detectors.coordination import CoActionConfig
from detectors.coordination.coaction import co_action_edges
from detectors.coordination.incremental import (
    INCREMENTAL_NETWORK_TYPES,
    STREAM_NETWORK_TYPES,
    CoActionState,
    IncrementalConfig,
    MatchLedger,
    ObjectMatchLedger,
)
from stream.config import CoordinatorSettings
from stream.coordination.rekey import decode_actions, encode_actions, object_actions
from stream.simulation import generate_stream

SIMILAR = ("co_similar",)
#: Messages of 4 to 10 words: one word changed is above 0.8 Jaccard for the long ones, below for the short.
MESSAGES = [
    "the election was stolen share before they delete it now",
    "vote no on the harbour tax plan",
    "great game last night",
    "breaking news from the capital today everyone must read this",
]
VOCABULARY = ["fraud", "truth", "now", "friends", "wake", "up", "read"]


@st.composite
def near_duplicate(draw: st.DrawFn) -> str:
    """One of the messages, sometimes with a word swapped, dropped or added, and a mention or two."""
    words = draw(st.sampled_from(MESSAGES)).split()
    for _ in range(draw(st.integers(0, 2))):
        edit = draw(st.sampled_from(["swap", "drop", "add", "keep"]))
        i = draw(st.integers(0, len(words) - 1))
        if edit == "swap":
            words[i] = draw(st.sampled_from(VOCABULARY))
        elif edit == "drop" and len(words) > 1:
            del words[i]
        elif edit == "add":
            words.insert(i, draw(st.sampled_from(VOCABULARY)))
    if draw(st.booleans()):
        words.insert(0, "@someone")
    return " ".join(words).upper() if draw(st.booleans()) else " ".join(words)


@st.composite
def streams(draw: st.DrawFn, max_posts: int = 40) -> tuple[pl.DataFrame, list[int], list[int], CoActionConfig]:
    """(posts, arrival order with replays, micro-batch sizes, co-action settings)."""
    n = draw(st.integers(1, max_posts))
    rows = []
    for i in range(n):
        row = {
            "id": f"p{i:03d}",
            "account": draw(st.sampled_from("abcde")),
            "t": draw(st.integers(0, 240) | st.floats(0, 240, allow_nan=False).map(lambda x: round(x, 3))),
            "text": draw(near_duplicate() | st.sampled_from(["@only @mentions", "", "now", "wake up"])),
        }
        if draw(st.integers(0, 9)) == 0:
            row["repost_of"] = "r1"
        rows.append(row)
    order = draw(st.permutations(range(n)))
    arrival = list(order) + draw(st.lists(st.integers(0, n - 1), max_size=5))
    sizes = draw(st.lists(st.integers(1, max(1, len(arrival))), min_size=1, max_size=8))
    coaction = CoActionConfig(
        windows_s={"co_similar": float(draw(st.sampled_from([0, 1, 10, 30, 60, 300])))},
        similarity_threshold=draw(st.sampled_from([0.5, 0.8, 0.9])),
        min_tokens=draw(st.sampled_from([1, 3])),
        evidence_per_edge=3,
    )
    return make_posts(rows), arrival, sizes, coaction


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_streaming_co_similar_equals_batch_whatever_the_order_and_partitioning(
    stream: tuple[pl.DataFrame, list[int], list[int], CoActionConfig],
) -> None:
    posts, arrival, sizes, coaction = stream
    expected = co_action_edges(posts, "co_similar", coaction)
    config = IncrementalConfig(coaction=coaction, networks=SIMILAR, horizon_s=NO_EVICTION, max_posts_per_object=None)
    state, ledger = CoActionState(config), MatchLedger(coaction)
    for batch in micro_batches(posts, arrival, sizes):
        ledger.apply(state.add(batch).matches)
    # Whole frames: user_1, user_2, weight AND the evidence pairs (the nearest partner) with their times.
    assert state.edges()["co_similar"].equals(expected)
    assert ledger.edges(SIMILAR)["co_similar"].equals(expected)


def test_planted_near_duplicates_link_and_a_nearer_partner_moves_the_evidence() -> None:
    text = "the election was stolen share before they delete it now"
    state = CoActionState(IncrementalConfig(networks=SIMILAR, horizon_s=NO_EVICTION))
    state.add(make_posts([{"id": "a1", "account": "a", "t": 0, "text": text},
                          {"id": "b1", "account": "b", "t": 200, "text": text + " friends"}]))  # fmt: skip
    delta = state.add(make_posts([{"id": "b2", "account": "b", "t": 10, "text": text.replace("now", "wake")}]))
    a_to_b = delta.matches.filter(pl.col("account_id") == "a").row(0, named=True)
    assert (a_to_b["match_post_id"], a_to_b["new"]) == ("b2", False)  # 9/11 >= 0.8, and nearer than b1
    assert state.edges()["co_similar"].get_column("weight").to_list() == [1, 2]


def test_eviction_keeps_the_held_sets_bounded_and_still_equals_batch() -> None:
    """A day of posts with near-duplicate bursts, up to 10 minutes out of order, a one-hour horizon."""
    generated = generate_stream(n_organic=120, n_campaigns=3, duration_s=24 * 3600, posts_per_account=20, seed=6)
    posts = generated.posts.drop("machine_probability")
    coaction = CoActionConfig()
    config = IncrementalConfig(coaction=coaction, networks=SIMILAR, horizon_s=3600, max_posts_per_object=None)
    state, ledger = CoActionState(config), MatchLedger(coaction)
    arriving = ordered_with_disorder(posts, disorder_s=600, seed=2)
    held = []
    for start in range(0, arriving.height, 300):
        ledger.apply(state.add(arriving[start : start + 300]).matches)
        held.append(state.held_rows())
    assert state.stats.late == 0 and state.stats.evicted_slices > 0
    expected = co_action_edges(posts, "co_similar", coaction)
    assert expected.height > 0
    assert ledger.edges(SIMILAR)["co_similar"].equals(expected)
    # Bounded: sets and band entries of about (horizon + 2 windows) of a day, never the whole day.
    distinct_sets = posts.select(pl.col("text").str.to_lowercase().n_unique()).item()
    assert max(h["similar_sets"] for h in held) < 0.2 * distinct_sets
    assert max(h["similar_bands"] for h in held) < 0.2 * distinct_sets * 19


def test_the_band_cap_only_removes_edges_and_says_so() -> None:
    base = "breaking news from the capital today everyone must read this"
    rows = [{"id": f"v{i:03d}", "account": f"u{i:03d}", "t": i * 0.1, "text": f"{base} w{i}"} for i in range(120)]
    posts = make_posts(rows)
    expected = co_action_edges(posts, "co_similar", CoActionConfig())
    state = CoActionState(IncrementalConfig(networks=SIMILAR, max_posts_per_object=20))
    for start in range(0, posts.height, 25):
        state.add(posts[start : start + 25])
    capped = state.edges()["co_similar"]
    assert state.stats.capped_bands > 0
    joined = capped.join(expected, on=["user_1", "user_2"], how="left", suffix="_batch")
    assert joined["weight_batch"].null_count() == 0
    assert (joined["weight"] <= joined["weight_batch"]).all()
    assert capped.height < expected.height


def test_actions_routed_by_band_to_two_workers_merge_into_the_batch_edges() -> None:
    generated = generate_stream(n_organic=100, n_campaigns=3, campaign_size=8, seed=3)
    posts = generated.posts.drop("machine_probability")
    coaction = CoActionConfig()
    actions = object_actions(posts, SIMILAR, coaction)
    assert actions.get_column("route").str.starts_with("co_similar:band:").any()
    # Through the wire format, in shuffled order; Kafka would send equal routes to one partition.
    messages = encode_actions(actions.sample(fraction=1.0, shuffle=True, seed=4))
    wire, bad = decode_actions([value for _, value in messages])
    worker_of = pl.Series([key for key, _ in messages]).hash(1) % 2
    assert not bad
    config = IncrementalConfig(coaction=coaction, networks=SIMILAR, horizon_s=NO_EVICTION, max_posts_per_object=None)
    ledger = ObjectMatchLedger(config)
    for worker in (0, 1):
        state = CoActionState(config)
        mine = wire.filter(worker_of == worker)
        for start in range(0, mine.height, 400):
            delta = state.add_actions(mine[start : start + 400])
            ledger.apply(delta.object_matches, delta.actions)
    expected = co_action_edges(posts, "co_similar", coaction)
    assert expected.height > 0
    assert ledger.edges(SIMILAR)["co_similar"].equals(expected)


def test_co_similar_is_an_opt_in_stream_type_the_coordinator_accepts() -> None:
    assert "co_similar" in INCREMENTAL_NETWORK_TYPES and "co_similar" not in STREAM_NETWORK_TYPES
    assert "co_similar" not in CoordinatorSettings().networks
    settings_ = CoordinatorSettings(networks=("co_text", "co_similar"))
    assert settings_.incremental_config().networks == ("co_text", "co_similar")
