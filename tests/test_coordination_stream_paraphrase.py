"""co_paraphrase in the incremental state equals the batch co_paraphrase, whatever the order and batching.

The stream relates embeddings through the SimHash index only (it cannot know in advance how dense
a time slice will be, which the batch's hybrid uses), so the reference is the batch with
``paraphrase_search = "lsh"``: hypothesis draws small streams whose embeddings are noisy copies of a
few prototypes (so that cosines fall on both sides of the threshold, and with few bits the index
misses some pairs, which the stream must miss too), plus identical vectors, posts without an
embedding or with an all-zero one, and reposts. Then: against the default hybrid the stream only
misses pairs (never invents one) and finds every planted paraphrase; eviction keeps the held
vectors bounded while the reported matches still add up to the batch's; the band cap only removes;
mixed embedding lengths are an error.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest
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
)

PARAPHRASE = ("co_paraphrase",)
DIM = 8
PROTOTYPES = np.random.default_rng(7).standard_normal((3, DIM))


def with_embeddings(posts: pl.DataFrame, vectors: list[list[float] | None]) -> pl.DataFrame:
    return posts.with_columns(embedding=pl.Series(vectors, dtype=pl.List(pl.Float32)))


@st.composite
def embedding(draw: st.DrawFn) -> list[float] | None:
    """A noisy copy of a prototype (noise levels put cosines around 0.8-0.99), or no usable vector."""
    kind = draw(st.sampled_from(["copy", "copy", "copy", "null", "zero"]))
    if kind == "null":
        return None
    if kind == "zero":
        return [0.0] * DIM
    base = PROTOTYPES[draw(st.integers(0, len(PROTOTYPES) - 1))]
    noise = draw(st.sampled_from([0.0, 0.1, 0.25, 0.4]))
    rng = np.random.default_rng(draw(st.integers(0, 3)))  # few seeds: identical vectors recur
    return (base + noise * rng.standard_normal(DIM)).astype(np.float32).tolist()


@st.composite
def streams(draw: st.DrawFn, max_posts: int = 40) -> tuple[pl.DataFrame, list[int], list[int], CoActionConfig]:
    """(posts, arrival order with replays, micro-batch sizes, co-action settings)."""
    n = draw(st.integers(1, max_posts))
    rows, vectors = [], []
    for i in range(n):
        row = {
            "id": f"p{i:03d}",
            "account": draw(st.sampled_from("abcde")),
            "t": draw(st.integers(0, 240) | st.floats(0, 240, allow_nan=False).map(lambda x: round(x, 3))),
            "text": "a post",
        }
        if draw(st.integers(0, 9)) == 0:
            row["repost_of"] = "r1"
        rows.append(row)
        vectors.append(draw(embedding()))
    order = draw(st.permutations(range(n)))
    arrival = list(order) + draw(st.lists(st.integers(0, n - 1), max_size=5))
    sizes = draw(st.lists(st.integers(1, max(1, len(arrival))), min_size=1, max_size=8))
    coaction = CoActionConfig(
        windows_s={"co_paraphrase": float(draw(st.sampled_from([0, 1, 10, 60, 300])))},
        paraphrase_threshold=draw(st.sampled_from([0.8, 0.9, 0.95])),
        # Few bits: the index misses pairs, and the stream must miss exactly the same ones.
        paraphrase_bits=draw(st.sampled_from([16, 64, 1024])),
        seed=draw(st.integers(0, 2)),
        evidence_per_edge=3,
    )
    return with_embeddings(make_posts(rows), vectors), arrival, sizes, coaction


def lsh_batch(coaction: CoActionConfig) -> CoActionConfig:
    return dataclasses.replace(coaction, paraphrase_search="lsh")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_streaming_co_paraphrase_equals_the_lsh_batch_whatever_the_order_and_partitioning(
    stream: tuple[pl.DataFrame, list[int], list[int], CoActionConfig],
) -> None:
    posts, arrival, sizes, coaction = stream
    expected = co_action_edges(posts, "co_paraphrase", lsh_batch(coaction))
    config = IncrementalConfig(coaction=coaction, networks=PARAPHRASE, horizon_s=NO_EVICTION, max_posts_per_object=None)
    state, ledger = CoActionState(config), MatchLedger(coaction)
    for batch in micro_batches(posts, arrival, sizes):
        ledger.apply(state.add(batch).matches)
    # Whole frames: user_1, user_2, weight AND the evidence pairs (the nearest partner) with their times.
    assert state.edges()["co_paraphrase"].equals(expected)
    assert ledger.edges(PARAPHRASE)["co_paraphrase"].equals(expected)


def planted_stream(n_accounts: int = 60, seed: int = 0) -> tuple[pl.DataFrame, set[str]]:
    """Organic accounts posting unrelated vectors, and a campaign of 8 posting paraphrases of one message
    (cosine ~0.97 with each other) within a minute, four times over two hours."""
    rng = np.random.default_rng(seed)
    dim = 32
    message = rng.standard_normal(dim)
    rows, vectors = [], []
    campaign = {f"camp{i}" for i in range(8)}
    for burst in range(4):
        for i, account in enumerate(sorted(campaign)):
            rows.append({"id": f"c{burst}-{i}", "account": account, "t": burst * 1800 + i * 7.0, "text": "x"})
            vectors.append((message + 0.18 * rng.standard_normal(dim)).tolist())
    for i in range(n_accounts * 10):
        rows.append({"id": f"o{i}", "account": f"org{i % n_accounts}", "t": float(rng.uniform(0, 7200)), "text": "y"})
        vectors.append(rng.standard_normal(dim).tolist())
    return with_embeddings(make_posts(rows), vectors), campaign


def test_against_the_default_hybrid_the_stream_only_misses_and_finds_the_planted_campaign() -> None:
    posts, campaign = planted_stream()
    coaction = CoActionConfig()
    hybrid = co_action_edges(posts, "co_paraphrase", coaction)
    state = CoActionState(IncrementalConfig(coaction=coaction, networks=PARAPHRASE, horizon_s=NO_EVICTION))
    for start in range(0, posts.height, 97):
        state.add(posts[start : start + 97])
    streamed = state.edges()["co_paraphrase"]
    assert streamed.equals(co_action_edges(posts, "co_paraphrase", lsh_batch(coaction)))
    joined = streamed.join(hybrid, on=["user_1", "user_2"], how="left", suffix="_hybrid")
    assert joined["weight_hybrid"].null_count() == 0 and (joined["weight"] <= joined["weight_hybrid"]).all()
    linked = set(streamed["user_1"]) | set(streamed["user_2"])
    assert linked == campaign  # all 8, and no organic account (unrelated vectors are far below 0.9)
    assert streamed.height == 8 * 7 and streamed["weight"].min() == 4


def pairs_at_threshold(n: int, cosine: float = 0.902, dim: int = 32, seed: int = 11) -> pl.DataFrame:
    """``n`` pairs of accounts ``a<i>``, ``b<i>`` posting one second apart, 1,000 s from the next pair,
    vectors at exactly ``cosine`` (just above the default threshold, where the index proposes a pair
    with probability 0.996: a few of 2,000 pairs are missed)."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((n, dim))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    w = rng.standard_normal((n, dim))
    w -= (w * u).sum(axis=1, keepdims=True) * u
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    v = cosine * u + np.sqrt(1 - cosine**2) * w
    rows = [{"id": f"{side}{i}", "account": f"{side}{i}", "t": i * 1000.0 + (side == "b"), "text": "x"}
            for i in range(n) for side in "ab"]  # fmt: skip
    return with_embeddings(make_posts(rows), [vec.tolist() for i in range(n) for vec in (u[i], v[i])])


def test_the_stream_misses_exactly_the_pairs_the_batch_index_misses() -> None:
    """2,000 pairs of accounts posting vectors at cosine 0.902 (just above the threshold, where the
    index proposes a pair with probability 0.996): the hybrid batch compares these sparse slices
    exactly and finds all, the index misses a few, and the stream misses the very same ones."""
    n = 2000
    posts = pairs_at_threshold(n)
    coaction = CoActionConfig()
    hybrid = co_action_edges(posts, "co_paraphrase", coaction)
    lsh = co_action_edges(posts, "co_paraphrase", lsh_batch(coaction))
    state = CoActionState(IncrementalConfig(coaction=coaction, networks=PARAPHRASE, horizon_s=NO_EVICTION))
    for start in range(0, posts.height, 333):
        state.add(posts[start : start + 333])
    assert hybrid.height == 2 * n
    assert 0 < 2 * n - lsh.height < 0.02 * 2 * n  # a few misses: about 0.4% at the threshold
    assert state.edges()["co_paraphrase"].equals(lsh)


def test_eviction_keeps_the_held_vectors_bounded_and_still_equals_batch() -> None:
    """Eight hours of embedded posts, up to 10 minutes out of order, a one-hour horizon."""
    rng = np.random.default_rng(3)
    messages = rng.standard_normal((40, 16))
    n = 4000
    rows = [{"id": f"p{i}", "account": f"u{i % 150}", "t": float(rng.uniform(0, 8 * 3600)), "text": "x"}
            for i in range(n)]  # fmt: skip
    vectors = (messages[rng.integers(0, 40, n)] + 0.2 * rng.standard_normal((n, 16))).tolist()
    posts = with_embeddings(make_posts(rows), vectors)
    coaction = CoActionConfig(windows_s={"co_paraphrase": 120.0})
    config = IncrementalConfig(coaction=coaction, networks=PARAPHRASE, horizon_s=3600, max_posts_per_object=None)
    state, ledger = CoActionState(config), MatchLedger(coaction)
    held = []
    arriving = ordered_with_disorder(posts, disorder_s=600, seed=2)
    for start in range(0, arriving.height, 200):
        ledger.apply(state.add(arriving[start : start + 200]).matches)
        held.append(state.held_rows())
    assert state.stats.late == 0 and state.stats.evicted_slices > 0
    expected = co_action_edges(posts, "co_paraphrase", lsh_batch(coaction))
    assert expected.height > 100
    assert ledger.edges(PARAPHRASE)["co_paraphrase"].equals(expected)
    # Bounded: about (horizon + 2 windows) of eight hours, never the whole stream.
    assert max(h["paraphrase_vectors"] for h in held) < 0.25 * n
    bands = state._indexes["co_paraphrase"].bands  # type: ignore[union-attr]
    assert max(h["paraphrase_bands"] for h in held) <= 0.25 * n * bands


def test_the_band_cap_only_removes_edges_and_says_so() -> None:
    rng = np.random.default_rng(5)
    message = rng.standard_normal(24)
    rows = [{"id": f"v{i:03d}", "account": f"u{i:03d}", "t": i * 0.1, "text": "x"} for i in range(120)]
    posts = with_embeddings(make_posts(rows), (message + 0.1 * rng.standard_normal((120, 24))).tolist())
    coaction = CoActionConfig()
    expected = co_action_edges(posts, "co_paraphrase", lsh_batch(coaction))
    state = CoActionState(IncrementalConfig(coaction=coaction, networks=PARAPHRASE, max_posts_per_object=20))
    for start in range(0, posts.height, 25):
        state.add(posts[start : start + 25])
    capped = state.edges()["co_paraphrase"]
    assert state.stats.capped_bands > 0
    joined = capped.join(expected, on=["user_1", "user_2"], how="left", suffix="_batch")
    assert joined["weight_batch"].null_count() == 0
    assert (joined["weight"] <= joined["weight_batch"]).all()
    assert capped.height < expected.height


def test_embeddings_of_another_length_are_an_error_not_a_silent_mismatch() -> None:
    state = CoActionState(IncrementalConfig(networks=PARAPHRASE))
    state.add(with_embeddings(make_posts([{"id": "a", "account": "a", "t": 0}]), [[1.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="length 2 after embeddings of length 3"):
        state.add(with_embeddings(make_posts([{"id": "b", "account": "b", "t": 1}]), [[1.0, 0.0]]))


def test_co_paraphrase_is_an_opt_in_stream_type() -> None:
    assert "co_paraphrase" in INCREMENTAL_NETWORK_TYPES and "co_paraphrase" not in STREAM_NETWORK_TYPES
    # Posts without embeddings take part in nothing (and cost nothing).
    state = CoActionState(IncrementalConfig(networks=("co_text", "co_paraphrase")))
    delta = state.add(make_posts([{"id": "a", "account": "a", "t": 0, "text": "same"},
                                  {"id": "b", "account": "b", "t": 1, "text": "same"}]))  # fmt: skip
    assert set(delta.matches["network"]) == {"co_text"}


def test_band_keys_are_distinct_for_distinct_bands_and_codes() -> None:
    from detectors.coordination.incremental_paraphrase import band_keys

    codes = np.array([[0, 1, 2], [1, 0, 2], [2**15, 5, 0]], dtype=np.int64)
    exact = band_keys(codes, rows=16)  # band << 16 | code: packed exactly
    assert exact.tolist() == [0, (1 << 16) + 1, (2 << 16) + 2, 1, 1 << 16, (2 << 16) + 2, 2**15, (1 << 16) + 5, 2 << 16]
    wide = np.array([[-1, -1], [-1, 7]], dtype=np.int64)  # 64-bit codes: mixed, still one key per (band, code)
    mixed = band_keys(wide, rows=64)
    assert mixed[0] != mixed[1] and mixed[0] == mixed[2] and len(set(mixed.tolist())) == 3
