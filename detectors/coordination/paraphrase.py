"""Random-hyperplane (SimHash) LSH over sentence embeddings, then exact cosine verification.

The ``co_paraphrase`` network links accounts whose posts say the same thing in other words: their
all-MiniLM-L6-v2 embeddings (384-d, L2-normalised, computed once per post by the AI-text detector)
have a cosine >= a threshold. Comparing every pair is quadratic, so, as :mod:`.minhash` does for
token sets, an index proposes candidate pairs and each candidate is verified with its exact cosine:
a reported pair is always truly similar (no false positives) and the only loss is a pair the index
never proposed.

The index is Charikar's SimHash: a random hyperplane through the origin separates two unit vectors
at angle ``theta`` with probability ``theta / pi``, so one sign bit agrees with probability
``p(c) = 1 - arccos(c) / pi`` for cosine ``c``. ``num_bits`` bits are cut into ``bands`` bands of
``rows`` bits; two vectors are candidates when all bits of some band agree, which happens with
probability ``1 - (1 - p(c)**rows)**bands``. :func:`choose_bands` takes the largest ``rows`` (fewest
false candidates) that still proposes a pair *at* the threshold with probability >=
:data:`TARGET_RECALL_AT_THRESHOLD`; pairs above it are proposed more often still. At the default
cosine 0.9 and 1,024 bits that is 64 bands of 16 bits: a pair at 0.9 is proposed with probability
0.996, one at 0.95 with 0.99999, while an unrelated pair (cosine 0) is a candidate with probability
0.001, a same-topic one (0.5) with 0.09 and a close one (0.85) with 0.95 (verification drops those).

SimHash's curve is soft (bits are coin flips, not min-hashes), so what bounds the cost is *time*:
co-action pairs must lie within ``±window``, so each vector is bucketed also by its time slice
(``t // window``) and only meets vectors of its own and the next slice; the candidates then grow
with the posts per window, not with the batch.

The index only pays off in dense slices. Hashing costs ``n * dim * num_bits`` multiply-adds (one
matrix product), the same as comparing each vector with ``num_bits`` others, and its band joins
and verification about as much again (:data:`LSH_COST_PER_VECTOR`, measured: ~1,000
comparisons). So :func:`similar_vector_pairs` is a hybrid: per slice, :func:`slice_plan` compares
the cost of comparing its vectors exactly with those of its own slice and the next (``n_s *
(n_s / 2 + n_next)`` comparisons) against the index's (``n_s * 1,000``); sparse slices are compared
exactly by blocked matrix products (nothing missed there), dense ones go through the index. A
short window or a quiet stream is then as fast as brute force and exact, a long window over a
busy stream as fast as the index. :func:`exact_similar_pairs` is the blocked brute force over
time (no slices) it is tested and benchmarked against.

Everything is numpy (one matrix product per block of vectors, one gather per block of candidates)
and polars joins; no Python loop runs per vector or per pair.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

#: Probability that LSH proposes a pair whose cosine equals the threshold (auto band choice).
TARGET_RECALL_AT_THRESHOLD = 0.995
#: Default hyperplanes: 1,024 bits make 64 bands of 16 at cosine 0.9 (see the module docstring).
DEFAULT_NUM_BITS = 1024
#: Vectors projected per matrix product, and candidate pairs verified per gather (bounds memory:
#: 16,384 x 1,024 float32 projections are 64 MiB, 32,768 x 384 float32 gathered rows 48 MiB).
_PROJECT_BLOCK = 16_384
_VERIFY_BLOCK = 32_768
#: A band's bits are packed into one 64-bit integer.
_MAX_ROWS = 64
#: What the index costs per vector, in exact comparisons (dot products of two embeddings): hashing
#: is one projection onto 1,024 hyperplanes (as many multiply-adds as 1,024 comparisons, but one
#: well-shaped matrix product: measured ~450 comparisons' time), and its 64 band rows go through
#: two joins, then candidates are verified (~500 more in sparse slices, more in dense ones). A
#: slice is compared exactly when that costs less per vector (see :func:`slice_plan`).
LSH_COST_PER_VECTOR = 1_000.0
#: Rows per matrix product when sparse slices are compared exactly.
_EXACT_BLOCK = 512

PAIR_SCHEMA: dict[str, pl.DataType] = {
    "vector_id": pl.UInt32(),
    "match_vector_id": pl.UInt32(),
    "cosine": pl.Float32(),
}


def bit_agreement(cosine: float) -> float:
    """Probability that one random hyperplane puts two vectors of this cosine on the same side."""
    return 1.0 - math.acos(max(-1.0, min(1.0, cosine))) / math.pi


def candidate_probability(cosine: float, bands: int, rows: int) -> float:
    """Probability that two vectors of this cosine share at least one band of ``rows`` bits."""
    return 1.0 - (1.0 - bit_agreement(cosine) ** rows) ** bands


def choose_bands(threshold: float, num_bits: int = DEFAULT_NUM_BITS) -> tuple[int, int]:
    """Pick ``(bands, rows)`` with ``bands * rows <= num_bits`` for a cosine ``threshold``.

    Like :func:`.minhash.choose_bands`: the largest ``rows`` (at most 64, so a band packs into one
    64-bit integer) that still proposes a pair at exactly the threshold with probability >=
    :data:`TARGET_RECALL_AT_THRESHOLD`. ``(0.9, 1024) -> (64, 16)``, ``(0.8, 1024) -> (85, 12)``,
    ``(0.95, 1024) -> (48, 21)``.
    """
    if not -1.0 < threshold <= 1.0:
        raise ValueError(f"cosine threshold must be in (-1, 1], got {threshold}")
    if num_bits < 1:
        raise ValueError(f"num_bits must be >= 1, got {num_bits}")
    best = (num_bits, 1)
    for rows in range(1, min(num_bits, _MAX_ROWS) + 1):
        bands = num_bits // rows
        if candidate_probability(threshold, bands, rows) >= TARGET_RECALL_AT_THRESHOLD:
            best = (bands, rows)
    return best


def embedding_matrix(column: pl.Series) -> np.ndarray:
    """A posts frame's embedding column (list or array of numbers) as ``[rows, dim]`` float32.

    Null and empty rows become NaN rows (no direction, see :func:`normalise_rows`). All other rows
    must have one length: vectors of different lengths come from different models and cannot be
    compared, so that is an error rather than a silent truncation.
    """
    dtype = column.dtype
    if isinstance(dtype, pl.Array | pl.List) and dtype.inner.is_numeric():
        lists = column.cast(pl.List(pl.Float32))
    else:
        raise ValueError(
            f"the {column.name!r} column must hold lists or arrays of floats (one embedding per post), "
            f"got {dtype}; parse text first (e.g. str.json_decode) or drop the column"
        )
    lengths = lists.list.len().fill_null(0).to_numpy()
    widths = np.unique(lengths[lengths > 0])
    if len(widths) == 0:
        return np.full((len(column), 0), np.nan, dtype=np.float32)
    if len(widths) > 1:
        raise ValueError(
            f"the {column.name!r} column mixes embeddings of lengths {widths.tolist()}; "
            "all posts' embeddings must come from one model"
        )
    width = int(widths[0])
    out = np.full((len(column), width), np.nan, dtype=np.float32)
    present = lengths == width
    flat = lists.filter(pl.Series(present)).explode().to_numpy().astype(np.float32, copy=False)
    out[present] = flat.reshape(-1, width)
    return out


def normalise_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(valid, unit)``: rows that are finite and non-zero, and those rows L2-normalised (float32).

    The AI-text detector writes NaN rows for posts it did not score; such rows, and all-zero ones,
    have no direction and take part in nothing.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"embeddings must be a 2-d array [posts, dim], got shape {vectors.shape}")
    norms = np.linalg.norm(vectors, axis=1)
    valid = np.isfinite(norms) & (norms > 0)
    unit = vectors[valid] / norms[valid, None]
    return valid, np.ascontiguousarray(unit, dtype=np.float32)


def simhash_bands(vectors: np.ndarray, bands: int, rows: int, *, seed: int = 0) -> np.ndarray:
    """``[n, bands]`` int64 band codes: the sign bits of ``bands * rows`` seeded random projections."""
    if not 1 <= rows <= _MAX_ROWS:
        raise ValueError(f"rows per band must be in [1, {_MAX_ROWS}], got {rows}")
    n, dim = vectors.shape
    planes = np.random.default_rng(seed).standard_normal((dim, bands * rows)).astype(np.float32)
    codes = np.empty((n, bands), dtype=np.int64)
    for start in range(0, n, _PROJECT_BLOCK):
        bits = (vectors[start : start + _PROJECT_BLOCK] @ planes) > 0
        packed = np.packbits(bits.reshape(len(bits), bands, rows), axis=-1, bitorder="little")
        # A band's bits, little-endian, zero-padded to 8 bytes: one int64 per band (exact, no hashing).
        words = np.zeros((len(bits), bands, 8), dtype=np.uint8)
        words[..., : packed.shape[-1]] = packed
        codes[start : start + _PROJECT_BLOCK] = words.view("<i8")[..., 0]
    return codes


def slice_occurrences(slices: pl.DataFrame | None, n: int) -> pl.DataFrame:
    """``vector_id`` (UInt32), ``slice`` (Int64): the distinct (vector, time slice) occurrences.

    Without ``slices`` every vector is in slice 0.
    """
    if slices is None:
        return pl.DataFrame({"vector_id": np.arange(n, dtype=np.uint32), "slice": np.zeros(n, dtype=np.int64)})
    occurrences = slices.select(pl.col("vector_id").cast(pl.UInt32), pl.col("slice").cast(pl.Int64)).unique()
    if occurrences.height and int(occurrences["vector_id"].max()) >= n:  # type: ignore[arg-type]
        raise ValueError(f"slices name vector_id {occurrences['vector_id'].max()}, but there are only {n} vectors")
    return occurrences.sort("slice", "vector_id")


def _band_buckets(codes: np.ndarray, occurrences: pl.DataFrame) -> pl.LazyFrame:
    """``vector_id, band, code, slice`` rows: one per vector occurrence and band (``codes`` by vector id)."""
    bands = codes.shape[1]
    vector_ids, slice_ids = occurrences["vector_id"].to_numpy(), occurrences["slice"].to_numpy()
    return pl.DataFrame(
        {
            "vector_id": np.repeat(vector_ids, bands),
            "band": np.tile(np.arange(bands, dtype=np.int32), len(vector_ids)),
            "code": codes[vector_ids].reshape(-1),
            "slice": np.repeat(slice_ids, bands),
        }
    ).lazy()


def _owned_candidates(codes: np.ndarray, owners: pl.DataFrame, successors: pl.DataFrame) -> pl.DataFrame:
    """Distinct ``vector_id < match_vector_id`` pairs sharing a band code: within an owner slice, or
    between an owner slice ``s`` (``owners``) and slice ``s + 1`` (``successors``)."""
    left = _band_buckets(codes, owners)
    right = _band_buckets(codes, successors)
    same = (
        left.join(left, on=["band", "code", "slice"], suffix="_2")
        .filter(pl.col("vector_id") < pl.col("vector_id_2"))
        .select("vector_id", "vector_id_2")
    )
    nxt = (
        left.with_columns(pl.col("slice") + 1)
        .join(right, on=["band", "code", "slice"], suffix="_2")
        .filter(pl.col("vector_id") != pl.col("vector_id_2"))
        .select(
            pl.min_horizontal("vector_id", "vector_id_2").alias("vector_id"),
            pl.max_horizontal("vector_id", "vector_id_2").alias("vector_id_2"),
        )
    )
    # Unordered: callers sort what they keep (see _both_orientations).
    pairs = pl.concat([same, nxt]).unique()
    return pairs.select("vector_id", pl.col("vector_id_2").alias("match_vector_id")).collect()


def candidate_pairs(codes: np.ndarray, slices: pl.DataFrame | None = None) -> pl.DataFrame:
    """Distinct ``vector_id < match_vector_id`` pairs sharing a band code in the same or adjacent slice."""
    occurrences = slice_occurrences(slices, len(codes))
    return _owned_candidates(codes, occurrences, occurrences)


def slice_plan(occurrences: pl.DataFrame, lsh_cost: float = LSH_COST_PER_VECTOR) -> pl.DataFrame:
    """``slice, vectors, next_vectors, exact``: which time slices are compared exactly.

    A slice ``s`` owns the pairs within it and those with slice ``s + 1``. Comparing them exactly
    costs ``vectors * (vectors / 2 + next_vectors)`` comparisons, the index about ``vectors *
    lsh_cost`` (:data:`LSH_COST_PER_VECTOR`), so a slice is ``exact`` when ``vectors / 2 +
    next_vectors <= lsh_cost``: sparse slices (a short window, a quiet hour) are compared exactly,
    dense ones go through the index.
    """
    counts = occurrences.group_by("slice").agg(vectors=pl.len().cast(pl.Int64))
    following = counts.select(pl.col("slice") - 1, next_vectors="vectors")
    return (
        counts.join(following, on="slice", how="left")
        .with_columns(pl.col("next_vectors").fill_null(0))
        .with_columns(exact=pl.col("vectors") / 2 + pl.col("next_vectors") <= lsh_cost)
        .sort("slice")
    )


def _exact_slice_pairs(
    vectors: np.ndarray, threshold: float, rows: pl.DataFrame, targets: pl.DataFrame
) -> pl.DataFrame:
    """Every pair with cosine >= ``threshold`` between a vector of ``rows`` and one of ``targets`` in its
    own slice or the next, by blocked matrix products.

    ``rows`` and ``targets`` are ``vector_id, slice`` sorted by ``(slice, vector_id)``, ``rows`` a
    subset of ``targets``. A block of rows is compared with the targets from its own first row to
    the end of the slice after its last: each pair within a slice once, as the cost estimate of
    :func:`slice_plan` counts it.
    """
    t_vec, t_slice = targets["vector_id"].to_numpy(), targets["slice"].to_numpy()
    first = (
        rows.join(targets.with_row_index("position"), on=["vector_id", "slice"], maintain_order="left")["position"]
        .cast(pl.Int64)
        .to_numpy()
    )
    r_vec, r_slice = rows["vector_id"].to_numpy(), rows["slice"].to_numpy()
    found_left, found_right, found_cos = [], [], []
    for start in range(0, len(r_vec), _EXACT_BLOCK):
        stop = min(start + _EXACT_BLOCK, len(r_vec))
        low = int(first[start])
        high = int(np.searchsorted(t_slice, r_slice[stop - 1] + 1, side="right"))
        sims = vectors[r_vec[start:stop]] @ vectors[t_vec[low:high]].T
        i, j = np.nonzero(sims >= threshold)
        step = t_slice[low + j] - r_slice[start + i]
        left, right = r_vec[start + i], t_vec[low + j]
        keep = (step >= 0) & (step <= 1) & (left != right)
        found_left.append(np.minimum(left, right)[keep])
        found_right.append(np.maximum(left, right)[keep])
        found_cos.append(sims[i[keep], j[keep]])
    if not found_left:
        return pl.DataFrame(schema=PAIR_SCHEMA)
    return pl.DataFrame(
        {
            "vector_id": np.concatenate(found_left),
            "match_vector_id": np.concatenate(found_right),
            "cosine": np.concatenate(found_cos),
        },
        schema=PAIR_SCHEMA,
    ).unique(["vector_id", "match_vector_id"], keep="first", maintain_order=True)


def pair_cosines(vectors: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Exact cosines of the row pairs ``(left[i], right[i])`` of unit ``vectors``, gathered in blocks."""
    out = np.empty(len(left), dtype=np.float32)
    for start in range(0, len(left), _VERIFY_BLOCK):
        stop = start + _VERIFY_BLOCK
        out[start:stop] = np.einsum("ij,ij->i", vectors[left[start:stop]], vectors[right[start:stop]])
    return out


def _both_orientations(pairs: pl.DataFrame) -> pl.DataFrame:
    flipped = pairs.select(
        pl.col("match_vector_id").alias("vector_id"), pl.col("vector_id").alias("match_vector_id"), "cosine"
    )
    return pl.concat([pairs, flipped]).sort("vector_id", "match_vector_id")


def similar_vector_pairs(
    vectors: np.ndarray,
    threshold: float,
    *,
    slices: pl.DataFrame | None = None,
    num_bits: int = DEFAULT_NUM_BITS,
    bands: int | None = None,
    seed: int = 0,
    lsh_cost: float = LSH_COST_PER_VECTOR,
) -> pl.DataFrame:
    """Pairs of distinct rows of ``vectors`` with exact cosine >= ``threshold``: SimHash LSH for dense
    time slices, exact comparison for sparse ones.

    ``vectors`` is ``[n, dim]``, rows L2-normalised (see :func:`normalise_rows`); a row's index is
    its ``vector_id``. ``slices`` (``vector_id, slice``, a vector may occur in several slices)
    restricts pairs to vectors occurring in the same or adjacent slices; with window-wide
    slices (``t // window``) no pair within the window is lost by it. Without ``slices`` all
    vectors are one slice. Per slice, :func:`slice_plan` chooses by its cost estimate: a sparse
    slice is compared exactly (all its pairs found), a dense one through the index (a pair is
    missed only when no band proposes it). ``lsh_cost=0`` uses the index everywhere,
    ``math.inf`` compares everything exactly. Returns ``vector_id, match_vector_id, cosine``
    with both orientations of each pair, so it can be used directly as a key relation (like
    :func:`.minhash.similar_set_pairs`). Deterministic for a given ``seed``.
    """
    n = len(vectors)
    if n < 2:
        return pl.DataFrame(schema=PAIR_SCHEMA)
    if bands is None:
        bands, rows = choose_bands(threshold, num_bits)
    else:
        rows = num_bits // bands
        if rows < 1:
            raise ValueError(f"bands={bands} needs num_bits >= bands, got num_bits={num_bits}")
    occurrences = slice_occurrences(slices, n)
    plan = slice_plan(occurrences, lsh_cost)
    exact_slices = plan.filter("exact")["slice"]
    indexed_slices = plan.filter(~pl.col("exact"))["slice"]
    found = []
    if exact_slices.len():
        owners = occurrences.filter(pl.col("slice").is_in(exact_slices.implode()))
        targets = occurrences.filter(pl.col("slice").is_in(pl.concat([exact_slices, exact_slices + 1]).implode()))
        found.append(_exact_slice_pairs(vectors, threshold, owners, targets))
    if indexed_slices.len():
        owners = occurrences.filter(pl.col("slice").is_in(indexed_slices.implode()))
        successors = occurrences.filter(pl.col("slice").is_in((indexed_slices + 1).implode()))
        # Only the vectors the index meets are hashed (codes of the others are never read).
        hashed = np.unique(np.concatenate([owners["vector_id"].to_numpy(), successors["vector_id"].to_numpy()]))
        codes = np.empty((n, bands), dtype=np.int64)
        codes[hashed] = simhash_bands(vectors[hashed], bands, min(rows, _MAX_ROWS), seed=seed)
        candidates = _owned_candidates(codes, owners, successors)
        left = candidates["vector_id"].to_numpy()
        right = candidates["match_vector_id"].to_numpy()
        cosine = pair_cosines(vectors, left, right)
        keep = cosine >= threshold
        found.append(
            pl.DataFrame(
                {"vector_id": left[keep], "match_vector_id": right[keep], "cosine": cosine[keep]}, schema=PAIR_SCHEMA
            )
        )
    verified = pl.concat(found).unique(["vector_id", "match_vector_id"], keep="first", maintain_order=True)
    return _both_orientations(verified)


def exact_similar_pairs(
    vectors: np.ndarray,
    threshold: float,
    *,
    times: np.ndarray | None = None,
    window: float | None = None,
    block: int = 2_048,
) -> pl.DataFrame:
    """Every pair of rows with cosine >= ``threshold`` by blocked brute force (the LSH's reference).

    Without ``times`` all pairs are compared (``n**2 / 2`` dot products in ``block``-row matrix
    products). With ``times`` (one number per row) and ``window``, only pairs with ``|t_i - t_j| <=
    window`` are kept, and each block of rows (in time order) is compared only with the rows in
    its time range ``± window``. Same output as :func:`similar_vector_pairs`.
    """
    n = len(vectors)
    if n < 2:
        return pl.DataFrame(schema=PAIR_SCHEMA)
    if times is None:
        order = np.arange(n)
        t = np.zeros(n)
        window = math.inf
    else:
        if window is None:
            raise ValueError("exact_similar_pairs: times need a window")
        order = np.argsort(times, kind="stable")
        t = np.asarray(times, dtype=np.float64)[order]
        # A block much longer than the window compares rows that can never pair: shrink it to about
        # the rows per window (not under 256, where a matrix product stops paying for its overhead).
        per_window = n * (2 * window + 1) / (t[-1] - t[0] + 1)
        block = int(min(block, max(256, per_window)))
    v = vectors[order]
    found_left, found_right, found_cos = [], [], []
    for start in range(0, n, block):
        stop = min(start + block, n)
        # Rows from this block's start on that can be within the window of one of its rows.
        end = n if math.isinf(window) else int(np.searchsorted(t, t[stop - 1] + window, side="right"))
        for col in range(start, end, 4 * block):
            col_stop = min(col + 4 * block, end)
            sims = v[start:stop] @ v[col:col_stop].T
            i, j = np.nonzero(sims >= threshold)
            i_abs, j_abs = i + start, j + col
            keep = j_abs > i_abs  # each unordered pair once, no self-pairs
            if not math.isinf(window):
                keep &= np.abs(t[j_abs] - t[i_abs]) <= window
            found_left.append(order[i_abs[keep]])
            found_right.append(order[j_abs[keep]])
            found_cos.append(sims[i[keep], j[keep]])
    left = np.concatenate(found_left).astype(np.uint32)
    right = np.concatenate(found_right).astype(np.uint32)
    pairs = pl.DataFrame(
        {
            "vector_id": np.minimum(left, right),
            "match_vector_id": np.maximum(left, right),
            "cosine": np.concatenate(found_cos).astype(np.float32),
        },
        schema=PAIR_SCHEMA,
    )
    return _both_orientations(pairs)
