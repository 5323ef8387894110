"""co_similar incrementally: which token sets of a micro-batch are near-duplicates of which held ones.

The batch co_similar (:func:`~.coaction.co_action_edges` with ``"co_similar"``) relates two token
sets when they are identical or when they share a MinHash/LSH band *and* their exact Jaccard is
at least ``similarity_threshold``; a post then matches, per other account, that account's nearest
post on any related set within ``±window``. A set's band codes depend on the set alone (the same
:func:`~.minhash.minhash_signatures`, :func:`~.minhash.choose_bands` and
:func:`~.minhash.band_codes` as the batch, with the same ``num_perm`` and ``seed``), so whether two
sets are related does not depend on which other posts were seen: the relation the stream finds
between a new set and a held one is the batch's, and :class:`~.incremental.CoActionState` matches
over it exactly as over the identity relation of the exact types.

:class:`SimilarSetIndex` holds, per time slice one window wide (the state's slices), the distinct
sets seen in the slice with their tokens and their band codes. For a micro-batch it proposes, per
new set, the held or new sets sharing a band code in the same or an adjacent slice (two posts
within the window always are), verifies each candidate with the exact Jaccard the batch computes,
and returns the relation ``kh, okh`` (set hashes, identity included). Bounded like the actions:
slices are evicted with them, and a *band bucket* (one band code in one slice) is the hot object
whose distinct sets are capped at ``max_posts_per_object`` (a set over the cap is not indexed
under that code; the state counts it in ``StateStats.capped_bands``, and only then can a stream
miss a pair the batch finds).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl

from detectors.coordination.band_runs import BandRuns, add_entries, within_cap
from detectors.coordination.band_runs import candidates as band_candidates
from detectors.coordination.coaction import CoActionConfig
from detectors.coordination.minhash import band_codes, choose_bands, minhash_signatures
from detectors.coordination.slices import drop_slices

#: One distinct set held in one slice, with its tokens (for the exact Jaccard).
_SET_SCHEMA: dict[str, pl.DataType] = {"kh": pl.UInt64(), "tokens": pl.List(pl.String())}
#: The relation returned per micro-batch: new set ``kh`` is related to set ``okh``.
RELATED_SCHEMA: dict[str, pl.DataType] = {"kh": pl.UInt64(), "okh": pl.UInt64()}


def eligible_sets(keys: pl.Expr, min_tokens: int) -> pl.Expr:
    """True for a co_similar key (a token set joined by spaces) that can match: the batch keeps
    non-empty sets of at least ``max(min_tokens, 1)`` tokens (``coaction._similar_rows``)."""
    return (keys != "") & (keys.str.split(" ").list.len() >= max(min_tokens, 1))


def set_band_codes(keys: pl.Series, coaction: CoActionConfig) -> pl.DataFrame:
    """``key, code``: the LSH band codes of each distinct eligible key, as the batch computes them.

    What the scale-out path routes co_similar by (``stream/coordination/rekey.py``): two sets the batch can
    relate share at least one code, so one worker owning that code sees both.
    """
    bands, rows = choose_bands(coaction.similarity_threshold, coaction.num_perm)
    distinct = (
        keys.rename("key").unique().sort().to_frame().filter(eligible_sets(pl.col("key"), coaction.min_tokens))
    )
    if distinct.height == 0:
        return pl.DataFrame(schema={"key": pl.String(), "code": pl.UInt64()})
    token_sets = distinct.select(set_id=pl.int_range(pl.len()), tokens=pl.col("key").str.split(" "))
    signatures = minhash_signatures(token_sets, num_perm=coaction.num_perm, seed=coaction.seed)
    matrix = signatures.select(pl.exclude("set_id")).to_numpy()
    codes = band_codes(matrix, bands, rows)
    return pl.DataFrame(
        {"key": np.repeat(distinct["key"].to_numpy(), bands), "code": codes.reshape(-1)},
        schema={"key": pl.String(), "code": pl.UInt64()},
    )


class SimilarSetIndex:
    """The held token sets of co_similar by slice and band code; see the module docstring.

    ``slice_us`` is the state's co_similar slice width, ``max_sets_per_band`` the cap per band
    bucket (None: no cap). Pure: no I/O.
    """

    def __init__(self, coaction: CoActionConfig, slice_us: int, max_sets_per_band: int | None) -> None:
        self.coaction = coaction
        self.threshold = coaction.similarity_threshold
        self.min_tokens = max(coaction.min_tokens, 1)
        self._slice_us = slice_us
        self._cap = max_sets_per_band
        self._bands: dict[int, BandRuns] = {}
        self._sets: dict[int, pl.DataFrame] = {}
        self.capped = 0

    def copy(self) -> SimilarSetIndex:
        """An independent snapshot sharing the (immutable) slice frames."""
        twin = SimilarSetIndex(self.coaction, self._slice_us, self._cap)
        twin._bands, twin._sets, twin.capped = dict(self._bands), dict(self._sets), self.capped
        return twin

    def relate(self, new: pl.DataFrame) -> pl.DataFrame:
        """``kh, okh`` (:data:`RELATED_SCHEMA`) for a micro-batch's actions (``kh, key, b``), and index them.

        Each eligible new set is related to itself and to every held or new set that shares a band
        code with it in the same or an adjacent slice and has Jaccard >= the threshold. Ineligible
        sets (too few tokens) relate to nothing, as in the batch.
        """
        sets = (
            new.select("kh", "key", "b")
            .filter(eligible_sets(pl.col("key"), self.min_tokens))
            .unique(["kh", "b"], keep="first", maintain_order=True)
        )
        if sets.height == 0:
            return pl.DataFrame(schema=RELATED_SCHEMA)
        codes = set_band_codes(sets.get_column("key"), self.coaction)
        distinct = sets.unique("kh", keep="first").select("kh", "key", tokens=pl.col("key").str.split(" "))
        entries = sets.select("kh", "b").join(distinct.select("kh", "key").join(codes, on="key"), on="kh")
        touched = sorted({b + d for b in sets.get_column("b").unique().to_list() for d in (-1, 0, 1)})
        candidates = band_candidates(entries, "code", self._bands)
        related = [distinct.select("kh", okh="kh")]
        if candidates.height:
            tokens = pl.concat(
                [distinct.select("kh", "tokens"), *(self._sets[b] for b in touched if b in self._sets)]
            ).unique("kh", keep="first")
            related.append(self._verified(candidates, tokens))
        self._index(sets.select("kh", "b"), distinct, entries)
        return pl.concat(related).cast(RELATED_SCHEMA)  # type: ignore[arg-type]

    def _verified(self, candidates: pl.DataFrame, tokens: pl.DataFrame) -> pl.DataFrame:
        """The candidate pairs whose exact Jaccard reaches the threshold, computed as the batch does
        (``minhash.similar_set_pairs``: the same size pre-test, the same float division)."""
        sized = tokens.lazy().select("kh", "tokens", size=pl.col("tokens").list.len())
        threshold = self.threshold
        smaller, larger = pl.min_horizontal("size", "match_size"), pl.max_horizontal("size", "match_size")
        return (
            candidates.lazy()
            .join(sized, on="kh")
            .join(sized.rename({"kh": "okh", "tokens": "match_tokens", "size": "match_size"}), on="okh")
            .filter(smaller >= threshold * larger - 1e-9)
            .with_columns(inter=pl.col("tokens").list.set_intersection("match_tokens").list.len())
            .with_columns(jaccard=pl.col("inter") / (pl.col("size") + pl.col("match_size") - pl.col("inter")))
            .filter(pl.col("jaccard") >= threshold)
            .select("kh", "okh")
            .collect()
        )

    def _index(self, sets: pl.DataFrame, distinct: pl.DataFrame, entries: pl.DataFrame) -> None:
        """Hold each (set, slice) not held yet: its tokens, and its band codes up to the bucket cap."""
        slices = [int(b) for b in sets.get_column("b").unique().to_list()]
        held = _gather_with_slice(self._sets, slices, {"kh": pl.UInt64()}, "kh")
        fresh = sets.join(held, on=["kh", "b"], how="anti") if held.height else sets
        if fresh.height == 0:
            return
        codes = entries.join(fresh, on=["kh", "b"]).select("code", "kh", "b")
        if self._cap is not None:
            kept = within_cap(codes, "code", self._bands, self._cap)
            self.capped += codes.height - kept.height
            codes = kept
        tokens = fresh.join(distinct.select("kh", "tokens"), on="kh")
        for (b,), part in tokens.partition_by("b", as_dict=True).items():
            self._sets[int(b)] = _concat(self._sets.get(int(b)), part.drop("b"))
        add_entries(codes, "code", self._bands)

    def evict(self, limit_us: int) -> int:
        """Drop the slices whose posts are all older than ``limit_us`` (the state's rule); returns how many."""
        return sum(drop_slices(table, self._slice_us, limit_us) for table in (self._bands, self._sets))

    def held_rows(self) -> Mapping[str, int]:
        """Rows held now: band entries and distinct sets (per slice)."""
        return {
            "similar_bands": sum(len(runs) for runs in self._bands.values()),
            "similar_sets": sum(f.height for f in self._sets.values()),
        }


def _gather_with_slice(
    table: Mapping[int, pl.DataFrame], slices: list[int], schema: Mapping[str, pl.DataType], column: str
) -> pl.DataFrame:
    """One column of the given slices, with the slice number ``b``."""
    frames = [table[b].select(column).with_columns(b=pl.lit(b, pl.Int64)) for b in slices if b in table]
    return pl.concat(frames) if frames else pl.DataFrame(schema={**schema, "b": pl.Int64()})


def _concat(existing: pl.DataFrame | None, part: pl.DataFrame) -> pl.DataFrame:
    if existing is None:
        return part
    combined = pl.concat([existing, part], rechunk=False)
    return combined.rechunk() if combined.n_chunks() > 32 else combined
