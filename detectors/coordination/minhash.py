"""MinHash signatures and LSH banding over token sets, then exact Jaccard verification.

QUT's co_similar_tweet compares every pair of posts inside the time window with an exact Jaccard
similarity, which is why its cost explodes with the window. Here the similar *token sets* are
found once for the whole batch, independent of time: MinHash/LSH proposes candidate pairs of
distinct token sets, and each candidate is verified with the exact Jaccard of its two sets, so a
reported pair is always truly similar (no false positives) and the only loss is a candidate LSH
never proposed. The banding is chosen so that a pair *at* the threshold is proposed with
probability >= :data:`TARGET_RECALL_AT_THRESHOLD`; pairs above it are proposed more often still.

Hashing uses the universal family ``h(x) = (a*x + b) mod (2**31 - 1)`` on a 31-bit reduction of
polars' seeded 64-bit token hash, so every product fits in a signed 64-bit integer. Each distinct
token is hashed once per permutation and each set takes a segmented minimum over its tokens
(numpy); band codes, the candidate join and verification have no per-pair Python loop.

Similar sets only matter for co-actions when their posts lie within the window of each other, so
:func:`similar_set_pairs` takes the time slices (``t // window``) each set occurs in and pairs
only sets in the same or adjacent slices, as :mod:`.paraphrase` does: at a one-minute window on
three months of tweets that leaves 800 candidates instead of 942,000, and no pair within the
window is lost.
"""

from __future__ import annotations

import numpy as np
import polars as pl

_PRIME = (1 << 31) - 1

#: Probability that LSH proposes a pair whose Jaccard equals the threshold (auto band choice).
TARGET_RECALL_AT_THRESHOLD = 0.995
#: Permutations hashed per pass (bounds memory: tokens x block int32 values).
_PERM_BLOCK = 8
#: Odd 64-bit multiplier of the band-code hash (the golden-ratio constant).
_MIX = 0x9E3779B97F4A7C15


def choose_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """Pick ``(bands, rows)`` with ``bands * rows <= num_perm`` for a similarity ``threshold``.

    The probability that two sets of Jaccard ``s`` share a band is ``1 - (1 - s**r)**b``. We take
    the largest ``r`` (fewest false candidates to verify) that still proposes a pair at exactly
    the threshold with probability >= :data:`TARGET_RECALL_AT_THRESHOLD`.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"similarity threshold must be in (0, 1], got {threshold}")
    best = (num_perm, 1)
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        if 1.0 - (1.0 - threshold**rows) ** bands >= TARGET_RECALL_AT_THRESHOLD:
            best = (bands, rows)
    return best


def _signature_matrix(token_sets: pl.DataFrame, num_perm: int, seed: int) -> np.ndarray:
    """``[sets, num_perm]`` int64 MinHash values, rows in ``token_sets`` order (non-empty sets).

    Each distinct token is hashed under every permutation once (``h(x) = (a*x + b) mod p``), then
    each set takes the minimum over its tokens: a gather and a segmented minimum per block of
    permutations, so memory stays near ``tokens x block``.
    """
    rng = np.random.default_rng(seed)
    a = rng.integers(1, _PRIME, size=num_perm, dtype=np.int64)
    b = rng.integers(0, _PRIME, size=num_perm, dtype=np.int64)
    lengths = token_sets["tokens"].list.len().to_numpy()
    if token_sets.height == 0:
        return np.zeros((0, num_perm), dtype=np.int64)
    if (lengths == 0).any():
        raise ValueError("token sets must be non-empty (drop empty sets before hashing)")
    hashed = token_sets.select((pl.col("tokens").explode().hash(seed) % _PRIME).cast(pl.Int64))
    distinct, token = np.unique(hashed.to_series().to_numpy(), return_inverse=True)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    out = np.empty((len(lengths), num_perm), dtype=np.int64)
    for first in range(0, num_perm, _PERM_BLOCK):
        block = slice(first, first + _PERM_BLOCK)
        values = ((distinct[:, None] * a[block] + b[block]) % _PRIME).astype(np.int32)  # < 2**31
        out[:, block] = np.minimum.reduceat(values[token.reshape(-1)], starts, axis=0)
    return out


def minhash_signatures(token_sets: pl.DataFrame, *, num_perm: int = 96, seed: int = 0) -> pl.DataFrame:
    """``set_id, tokens`` -> ``set_id, h0 .. h{num_perm-1}`` (one MinHash value per permutation)."""
    matrix = _signature_matrix(token_sets, num_perm, seed)
    return pl.DataFrame({"set_id": token_sets["set_id"], **{f"h{i}": matrix[:, i] for i in range(num_perm)}})


def band_codes(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """``[sets, bands]`` uint64: one code per band of ``rows`` MinHash values (equal bands, equal codes).

    A multiply-xor hash of the band's values and its number; two different bands share a code only
    by a 64-bit collision, which verification then rejects, so no pair is lost or invented by it.
    """
    codes = np.empty((len(signatures), bands), dtype=np.uint64)
    values = signatures.astype(np.uint64)
    for band in range(bands):
        code = np.full(len(signatures), ((band + 1) * _MIX) % 2**64, dtype=np.uint64)
        for j in range(rows):
            code = (code ^ values[:, band * rows + j]) * np.uint64(_MIX)
        codes[:, band] = code
    return codes


def candidate_pairs(codes: np.ndarray, set_ids: np.ndarray, slices: pl.DataFrame | None = None) -> pl.DataFrame:
    """Distinct ``set_id < match_set_id`` pairs sharing a band code, in the same or adjacent slice.

    ``codes`` is ``[sets, bands]`` (:func:`band_codes`), row ``i`` the set ``set_ids[i]``;
    ``slices`` (``set_id, slice``; a set may occur in several time slices) restricts pairs to sets
    occurring in the same or adjacent slices, as :func:`.paraphrase.candidate_pairs` does.
    Codes no other set has are dropped first: with sets of text most are unique.
    """
    schema = {"set_id": pl.Int64, "match_set_id": pl.Int64}
    flat = codes.reshape(-1)
    order = np.argsort(flat, kind="stable")
    ordered = flat[order]
    starts = np.ones(len(ordered), dtype=bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    run = np.cumsum(starts) - 1
    shared = np.bincount(run)[run] > 1
    entries = pl.DataFrame(
        {
            "code": ordered[shared],
            "set_id": np.asarray(set_ids, dtype=np.int64)[order[shared] // codes.shape[1]],
        }
    ).lazy()
    if slices is None:
        pairs = entries.join(entries, on="code", suffix="_2").filter(pl.col("set_id") < pl.col("set_id_2"))
    else:
        occurrences = slices.lazy().select(pl.col("set_id").cast(pl.Int64), pl.col("slice").cast(pl.Int64)).unique()
        entries = entries.join(occurrences, on="set_id")
        same = entries.join(entries, on=["code", "slice"], suffix="_2").filter(pl.col("set_id") < pl.col("set_id_2"))
        nxt = (
            entries.with_columns(pl.col("slice") + 1)
            .join(entries, on=["code", "slice"], suffix="_2")
            .filter(pl.col("set_id") != pl.col("set_id_2"))
            .select(
                pl.min_horizontal("set_id", "set_id_2").alias("set_id"),
                pl.max_horizontal("set_id", "set_id_2").alias("set_id_2"),
            )
        )
        pairs = pl.concat([same.select("set_id", "set_id_2"), nxt])
    out = pairs.select("set_id", match_set_id="set_id_2").unique().collect()
    return out.cast(schema) if out.height else pl.DataFrame(schema=schema)


def similar_set_pairs(
    token_sets: pl.DataFrame,
    threshold: float,
    *,
    num_perm: int = 96,
    bands: int | None = None,
    seed: int = 0,
    slices: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Pairs of distinct token sets with exact Jaccard >= ``threshold``, found via MinHash/LSH.

    ``token_sets`` has ``set_id`` (int, unique) and ``tokens`` (``list[str]`` of distinct tokens,
    non-empty). ``slices`` (``set_id, slice``) keeps only pairs occurring in the same or adjacent
    time slices (see :func:`candidate_pairs`): with window-wide slices no pair within the window
    is lost. Returns ``set_id, match_set_id, jaccard`` with both orientations of each pair,
    so it can be used directly as a key relation. Deterministic for a given ``seed``.
    """
    empty = pl.DataFrame(
        schema={
            "set_id": token_sets.schema["set_id"],
            "match_set_id": token_sets.schema["set_id"],
            "jaccard": pl.Float64,
        }
    )
    if token_sets.height < 2:
        return empty
    if bands is None:
        bands, rows = choose_bands(threshold, num_perm)
    else:
        rows = num_perm // bands
        if rows < 1:
            raise ValueError(f"bands={bands} needs num_perm >= bands, got num_perm={num_perm}")
    signatures = _signature_matrix(token_sets, num_perm, seed)
    candidates = candidate_pairs(band_codes(signatures, bands, rows), token_sets["set_id"].to_numpy(), slices)
    if candidates.height == 0:
        return empty
    id_type = token_sets.schema["set_id"]
    tokens = token_sets.lazy().select(pl.col("set_id").cast(pl.Int64), "tokens", size=pl.col("tokens").list.len())
    sizes = tokens.select("set_id", "size")
    verified = (
        candidates.lazy()
        .join(sizes, on="set_id")
        .join(sizes.rename({"set_id": "match_set_id", "size": "match_size"}), on="match_set_id")
        # Jaccard <= min(|A|, |B|) / max(|A|, |B|): an integer test that skips most list work
        # (the epsilon only guards float rounding; the exact test below decides).
        .filter(pl.min_horizontal("size", "match_size") >= threshold * pl.max_horizontal("size", "match_size") - 1e-9)
        .join(tokens.select("set_id", "tokens"), on="set_id")
        .join(
            tokens.select(pl.col("set_id").alias("match_set_id"), pl.col("tokens").alias("match_tokens")),
            on="match_set_id",
        )
        .with_columns(inter=pl.col("tokens").list.set_intersection("match_tokens").list.len())
        .with_columns(jaccard=pl.col("inter") / (pl.col("size") + pl.col("match_size") - pl.col("inter")))
        .filter(pl.col("jaccard") >= threshold)
        .select(pl.col("set_id").cast(id_type), pl.col("match_set_id").cast(id_type), "jaccard")
        .collect()
    )
    both = pl.concat(
        [
            verified,
            verified.select(pl.col("match_set_id").alias("set_id"), pl.col("set_id").alias("match_set_id"), "jaccard"),
        ]
    )
    return both.sort("set_id", "match_set_id")
