"""The incremental co-action state equals the batch functions, whatever the order and batching.

Hypothesis draws small streams over few accounts, objects and seconds (so that matches, ties at
equal distance and windows met exactly are common), shuffles them, cuts them into micro-batches,
replays some posts, and checks that :class:`CoActionState` gives the very frames
:func:`co_action_networks` gives on the whole set: weights and evidence. Then: eviction keeps the
state bounded and, when posts are never later than the horizon, the deltas still add up to the
batch; the hot-object cap only removes; the graph stage over the state is the batch's.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.coordination import CoActionConfig, co_action_networks, coerce_posts
from detectors.coordination.graph import (
    CampaignConfig,
    account_activity,
    account_graph,
    detect_campaigns,
    prune_graph,
)
from detectors.coordination.incremental import (
    STREAM_NETWORK_TYPES,
    CoActionState,
    IncrementalConfig,
    MatchLedger,
    campaigns_from_state,
    pruned_account_graph,
)
from stream.simulation import generate_stream

T0 = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
NO_EVICTION = 10.0**9

TEXTS = ["vote now", "Vote  NOW @x", "@y vote now", "hello world", "HELLO world", "@only", "other"]
URLS = ["https://x", "https://y", "https://z", "", " "]
TAGS = ["Vote", "#vote", "now", "#Now", "x"]


def make_posts(rows: list[dict]) -> pl.DataFrame:
    """Posts in the Chorus schema from short dicts (``id, account, t`` in seconds, plus any field)."""
    full = [
        {
            "post_id": r["id"],
            "account_id": r["account"],
            "created_at": T0 + dt.timedelta(seconds=r["t"]),
            "text": r.get("text", "x"),
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


@st.composite
def streams(draw: st.DrawFn, max_posts: int = 40) -> tuple[pl.DataFrame, list[int], list[int], dict[str, float]]:
    """(posts, arrival order with replays, micro-batch sizes, windows per type)."""
    n = draw(st.integers(1, max_posts))
    rows = []
    for i in range(n):
        rows.append(
            {
                "id": f"p{i:03d}",
                "account": draw(st.sampled_from("abcde")),
                # Whole seconds most of the time (ties and exact window edges), sometimes fractional.
                "t": draw(st.integers(0, 240) | st.floats(0, 240, allow_nan=False).map(lambda x: round(x, 3))),
                "text": draw(st.sampled_from(TEXTS)),
                "repost_of": draw(st.none() | st.sampled_from(["r1", "r2"])),
                "reply_to": draw(st.none() | st.sampled_from(["t1", "t2"])),
                "urls": draw(st.lists(st.sampled_from(URLS), max_size=3)),
                "hashtags": draw(st.lists(st.sampled_from(TAGS), max_size=3)),
            }
        )
    order = draw(st.permutations(range(n)))
    replays = draw(st.lists(st.integers(0, n - 1), max_size=5))
    arrival = list(order) + replays
    sizes = draw(st.lists(st.integers(1, max(1, len(arrival))), min_size=1, max_size=8))
    windows = {t: float(draw(st.sampled_from([0, 1, 10, 30, 60]))) for t in STREAM_NETWORK_TYPES}
    return make_posts(rows), arrival, sizes, windows


def micro_batches(posts: pl.DataFrame, arrival: list[int], sizes: list[int]) -> list[pl.DataFrame]:
    """Cut the arrival order into batches of the given sizes (cycled until every post is out)."""
    ordered = posts[arrival]
    batches, start, i = [], 0, 0
    while start < ordered.height:
        size = sizes[i % len(sizes)]
        batches.append(ordered[start : start + size])
        start, i = start + size, i + 1
    return batches


def feed(state: CoActionState, batches: list[pl.DataFrame], ledger: MatchLedger | None = None) -> None:
    for batch in batches:
        delta = state.add(batch)
        if ledger is not None:
            ledger.apply(delta.matches)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_streaming_equals_batch_whatever_the_order_and_partitioning(
    stream: tuple[pl.DataFrame, list[int], list[int], dict[str, float]],
) -> None:
    posts, arrival, sizes, windows = stream
    coaction = CoActionConfig(windows_s=windows, evidence_per_edge=3)
    expected = co_action_networks(posts, coaction, STREAM_NETWORK_TYPES)
    state = CoActionState(IncrementalConfig(coaction=coaction, horizon_s=NO_EVICTION, max_posts_per_object=None))
    ledger = MatchLedger(coaction)
    feed(state, micro_batches(posts, arrival, sizes), ledger)
    edges, from_deltas = state.edges(), ledger.edges()
    for network in STREAM_NETWORK_TYPES:
        # Whole frames: user_1, user_2, weight AND the evidence pairs with their times.
        assert edges[network].equals(expected[network]), network
        assert from_deltas[network].equals(expected[network]), network
    assert state.stats.posts == posts.height
    assert state.stats.duplicates == len(arrival) - posts.height


def test_a_replayed_micro_batch_changes_nothing() -> None:
    posts = generate_stream(n_organic=60, n_campaigns=2, campaign_size=5, seed=4).posts
    state = CoActionState(IncrementalConfig(horizon_s=NO_EVICTION))
    first = state.add(posts)
    assert first.matches.height > 0 and first.matches["new"].all()
    before = state.edges()
    again = state.add(posts.sample(fraction=0.5, seed=1))
    assert again.matches.height == 0 and again.accepted == 0 and again.duplicates == posts.height // 2
    for network, edges in state.edges().items():
        assert edges.equals(before[network])


def test_a_nearer_partner_changes_the_evidence_not_the_weight() -> None:
    state = CoActionState(IncrementalConfig(horizon_s=NO_EVICTION))
    state.add(make_posts([{"id": "a1", "account": "a", "t": 0, "repost_of": "x"},
                          {"id": "b1", "account": "b", "t": 50, "repost_of": "x"}]))  # fmt: skip
    delta = state.add(make_posts([{"id": "b2", "account": "b", "t": 5, "repost_of": "x"}]))
    a_to_b = delta.matches.filter(pl.col("account_id") == "a").row(0, named=True)
    assert (a_to_b["match_post_id"], a_to_b["new"]) == ("b2", False)
    increments = {(r["user_1"], r["user_2"]): r["new_weight"] for r in delta.edge_increments().to_dicts()}
    assert increments == {("a", "b"): 0, ("b", "a"): 1}  # b2 is b's second post matching a


def ordered_with_disorder(posts: pl.DataFrame, disorder_s: float, seed: int) -> pl.DataFrame:
    """Time order, except that each post may come up to ``disorder_s`` late (a jittered sort key)."""
    jitter = pl.Series(
        "jitter", (pl.int_range(posts.height, eager=True).shuffle(seed) % 1000) * (disorder_s * 1000)
    ).cast(pl.Int64)
    key = pl.col("created_at").dt.epoch("us") + jitter
    return posts.with_columns(_key=key).sort("_key", "post_id").drop("_key")


def test_eviction_keeps_memory_bounded_and_still_equals_batch() -> None:
    """A long stream, at most 10 minutes out of order, a one-hour horizon: the state holds about an
    hour of posts at any time, yet the matches it reported over time are the batch's, exactly."""
    stream = generate_stream(n_organic=250, n_campaigns=3, duration_s=24 * 3600, posts_per_account=24, seed=6)
    posts = stream.posts.drop("machine_probability")
    coaction = CoActionConfig()
    config = IncrementalConfig(coaction=coaction, horizon_s=3600, max_posts_per_object=None)
    state, ledger = CoActionState(config), MatchLedger(coaction)
    arriving = ordered_with_disorder(posts, disorder_s=600, seed=2)
    held = []
    for start in range(0, arriving.height, 200):
        ledger.apply(state.add(arriving[start : start + 200]).matches)
        held.append(state.held_rows()["actions"])
    assert state.stats.late == 0 and state.stats.evicted_slices > 0
    expected = co_action_networks(posts, coaction, STREAM_NETWORK_TYPES)
    for network, edges in ledger.edges().items():
        assert edges.equals(expected[network]), network
    # Bounded: about (horizon + 2 windows) / day of a steady stream's actions, never the whole day.
    assert max(held) < 0.15 * posts.height, (max(held), posts.height)
    warm = held[len(held) // 4 :]
    assert max(warm) < 2.0 * min(warm)


def test_posts_later_than_the_horizon_are_counted_late_and_ignored() -> None:
    state = CoActionState(IncrementalConfig(horizon_s=60))
    state.add(make_posts([{"id": "a1", "account": "a", "t": 1000, "repost_of": "x"}]))
    delta = state.add(make_posts([{"id": "b1", "account": "b", "t": 900, "repost_of": "x"},
                                  {"id": "c1", "account": "c", "t": 999, "repost_of": "x"}]))  # fmt: skip
    assert (delta.late, delta.accepted) == (1, 1)
    assert set(delta.matches.select("account_id", "match_account_id").iter_rows()) == {("a", "c"), ("c", "a")}


def test_the_hot_object_cap_only_removes_edges_and_says_so() -> None:
    rows = [{"id": f"v{i:03d}", "account": f"u{i:03d}", "t": i * 0.1, "urls": ["https://viral"]} for i in range(300)]
    rows += [{"id": f"c{i}", "account": f"u{i:03d}", "t": 20 + i, "urls": ["https://small"]} for i in range(5)]
    posts = make_posts(rows)
    expected = co_action_networks(posts, CoActionConfig(), ["co_link"])["co_link"]
    state = CoActionState(IncrementalConfig(max_posts_per_object=50))
    for start in range(0, posts.height, 25):
        state.add(posts[start : start + 25])
    capped = state.edges(["co_link"])["co_link"]
    assert state.stats.capped > 0
    joined = capped.join(expected, on=["user_1", "user_2"], how="left", suffix="_batch")
    assert joined["weight_batch"].null_count() == 0  # no invented edge
    assert (joined["weight"] <= joined["weight_batch"]).all()  # weights can only be lower
    assert capped.height < expected.height
    small = {(f"u{i:03d}", f"u{j:03d}") for i in range(5) for j in range(5) if i != j}
    assert small <= set(capped.select("user_1", "user_2").iter_rows())  # objects under the cap: intact


def test_the_graph_stage_over_the_state_is_the_batch_graph_stage() -> None:
    stream = generate_stream(n_organic=300, n_campaigns=3, campaign_size=8, seed=1)
    posts = stream.posts.drop("machine_probability")
    config = CampaignConfig(networks=STREAM_NETWORK_TYPES)
    expected = detect_campaigns(posts, config)
    state = CoActionState(IncrementalConfig(horizon_s=NO_EVICTION, max_posts_per_object=None))
    feed(state, micro_batches(posts, list(pl.int_range(posts.height, eager=True).shuffle(5)), [97, 311, 13]))
    result = campaigns_from_state(state, config)
    assert result.members == expected.members
    assert result.campaigns.equals(expected.campaigns)
    truth = stream.campaign_members()
    for members in truth.values():
        assert any(members <= found for found in result.members.values())


def test_configuration_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="not incremental"):
        IncrementalConfig(networks=("co_banana",))
    with pytest.raises(ValueError, match="horizon_s"):
        IncrementalConfig(horizon_s=-1)
    with pytest.raises(ValueError, match="max_posts_per_object"):
        IncrementalConfig(max_posts_per_object=0)
    with pytest.raises(ValueError, match="self_loops"):
        IncrementalConfig(coaction=CoActionConfig(include_self_loops=True))


@pytest.mark.parametrize("quantile", [None, 0.5])
def test_the_pruned_graph_is_built_in_prune_graphs_order(quantile: float | None) -> None:
    """Seeded Louvain depends on node and edge order: the shortcut must give the very same graph."""
    posts = generate_stream(n_organic=300, n_campaigns=3, seed=9).posts
    networks = co_action_networks(posts, CoActionConfig(), STREAM_NETWORK_TYPES)
    activity = account_activity(posts, STREAM_NETWORK_TYPES)
    expected = prune_graph(account_graph(networks, activity), min_co_actions=2, min_strength=0.1, quantile=quantile)
    graph = pruned_account_graph(networks, activity, min_co_actions=2, min_strength=0.1, quantile=quantile)
    assert list(graph.nodes) == list(expected.nodes)
    assert list(graph.edges(data=True)) == list(expected.edges(data=True))
    assert graph.number_of_edges() > 10
