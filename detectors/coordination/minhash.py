"""MinHash signatures and LSH banding over token sets, then exact Jaccard verification.

QUT's co_similar_tweet compares every pair of posts inside the time window with an exact Jaccard
similarity, which is why its cost explodes with the window. Here the similar *token sets* are
found once for the whole batch, independent of time: MinHash/LSH proposes candidate pairs of
distinct token sets, and each candidate is verified with the exact Jaccard of its two sets, so a
reported pair is always truly similar (no false positives) and the only loss is a candidate LSH
never proposed. The banding is chosen so that a pair *at* the threshold is proposed with
probability >= :data:`TARGET_RECALL_AT_THRESHOLD`; pairs above it are proposed more often still.

Hashing uses the universal family ``h(x) = (a*x + b) mod (2**31 - 1)`` on a 31-bit reduction of
polars' seeded 64-bit token hash, so every product fits in a signed 64-bit integer and the whole
computation is polars expressions (one ``min`` aggregation per permutation).
"""

from __future__ import annotations

import numpy as np
import polars as pl

_PRIME = (1 << 31) - 1

#: Probability that LSH proposes a pair whose Jaccard equals the threshold (auto band choice).
TARGET_RECALL_AT_THRESHOLD = 0.995


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


def minhash_signatures(token_sets: pl.DataFrame, *, num_perm: int = 96, seed: int = 0) -> pl.DataFrame:
    """``set_id, tokens`` -> ``set_id, h0 .. h{num_perm-1}`` (one MinHash value per permutation)."""
    rng = np.random.default_rng(seed)
    a = rng.integers(1, _PRIME, size=num_perm, dtype=np.int64)
    b = rng.integers(0, _PRIME, size=num_perm, dtype=np.int64)
    x = (pl.col("token").hash(seed) % _PRIME).cast(pl.Int64)
    return (
        token_sets.lazy()
        .select("set_id", pl.col("tokens").alias("token"))
        .explode("token")
        .group_by("set_id")
        .agg([((x * int(a[i]) + int(b[i])) % _PRIME).min().alias(f"h{i}") for i in range(num_perm)])
        .collect()
    )


def similar_set_pairs(
    token_sets: pl.DataFrame,
    threshold: float,
    *,
    num_perm: int = 96,
    bands: int | None = None,
    seed: int = 0,
) -> pl.DataFrame:
    """Pairs of distinct token sets with exact Jaccard >= ``threshold``, found via MinHash/LSH.

    ``token_sets`` has ``set_id`` (int, unique) and ``tokens`` (``list[str]`` of distinct tokens,
    non-empty). Returns ``set_id, match_set_id, jaccard`` with both orientations of each pair,
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
    signatures = minhash_signatures(token_sets, num_perm=num_perm, seed=seed)
    buckets = pl.concat(
        [
            signatures.select(
                "set_id",
                pl.lit(band, dtype=pl.Int32).alias("band"),
                pl.struct([f"h{band * rows + j}" for j in range(rows)]).hash(seed).alias("bucket"),
            )
            for band in range(bands)
        ]
    )
    candidates = (
        buckets.join(buckets, on=["band", "bucket"], suffix="_2")
        .filter(pl.col("set_id") < pl.col("set_id_2"))
        .select("set_id", pl.col("set_id_2").alias("match_set_id"))
        .unique()
    )
    tokens = token_sets.lazy().select("set_id", "tokens", size=pl.col("tokens").list.len())
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
        .select("set_id", "match_set_id", "jaccard")
        .collect()
    )
    both = pl.concat(
        [
            verified,
            verified.select(pl.col("match_set_id").alias("set_id"), pl.col("set_id").alias("match_set_id"), "jaccard"),
        ]
    )
    return both.sort("set_id", "match_set_id")
