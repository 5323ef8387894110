"""co_paraphrase incrementally: which embeddings of a micro-batch are paraphrases of which held ones.

The batch co_paraphrase (:func:`~.coaction.co_action_edges` with ``"co_paraphrase"``) relates two
distinct post embeddings (L2-normalised, identical vectors are one object) when they are
identical or when their exact cosine is at least ``paraphrase_threshold``; a post then matches,
per other account, that account's nearest post on any related vector within ``±window``, exactly
as co_similar does with token sets. The batch finds the pairs with a hybrid (exact comparison in
sparse time slices, the SimHash index in dense ones); a stream cannot know how dense a slice will
become, so it always uses the index: two vectors are candidates when they share a SimHash band
code (the batch's :func:`~.paraphrase.simhash_bands`, with the same ``paraphrase_bits``, bands and
``seed``) in the same or an adjacent window-wide slice, and a candidate is kept when its exact
cosine (computed as the batch's :func:`~.paraphrase.pair_cosines` does) reaches the threshold.
A vector's band codes depend on the vector alone, so the relation the stream finds is, whatever the
order and the micro-batching, the one a batch run with ``paraphrase_search = "lsh"`` finds; next
to the default hybrid it lacks only pairs the index never proposes (a pair *at* the threshold with
probability 0.004 at the default 64 bands of 16 bits, a pair at cosine 0.95 with 1e-5), and it
never reports a pair below the threshold.

:class:`ParaphraseIndex` holds, per slice, the distinct vectors seen in it (float32, the exact
bytes the batch would compare) and their band entries. Memory per held vector: its ``dim`` floats
plus ``bands`` entries of 16 bytes (all-MiniLM-L6-v2 at the defaults: 1,536 + 64 x 16 bytes, about
2.6 kB; up to 1.5 kB more while a slice's matrix has room left from doubling), so a horizon of a
million embedded posts holds about 2.6-4 GB: choose ``horizon_s`` for the rate of embedded posts
(the AI-text stage bounds it). A *band bucket* (one band code in one slice) is the
hot object whose vectors are capped at ``max_posts_per_object``, as for co_similar (counted in
``capped``; only then can the stream miss a pair the index would have proposed).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl
import pyarrow as pa

from detectors.coordination.band_runs import BandRuns, add_entries, within_cap
from detectors.coordination.band_runs import candidates as band_candidates
from detectors.coordination.coaction import CoActionConfig
from detectors.coordination.paraphrase import choose_bands, simhash_bands
from detectors.coordination.slices import drop_slices

#: Where a held vector is in its slice's matrix.
_ROWS_SCHEMA: dict[str, pl.DataType] = {"kh": pl.UInt64(), "row": pl.Int64()}
#: Candidate pairs verified per gather (bounds memory: 32,768 x 2 x 384 float32 rows are 96 MiB).
_VERIFY_BLOCK = 32_768
#: The relation returned per micro-batch: new vector ``kh`` is related to vector ``okh``.
RELATED_SCHEMA: dict[str, pl.DataType] = {"kh": pl.UInt64(), "okh": pl.UInt64()}


def vector_keys(unit: np.ndarray) -> pl.Series:
    """The object key of each row of ``unit`` (L2-normalised float32): its exact bytes, as Binary.

    Identical vectors get identical keys (the batch's rule: one object per distinct vector), and
    the index reads the vector back from its key, so a key is all a stream action needs to carry.
    """
    unit = np.ascontiguousarray(unit, dtype=np.float32)
    width = unit.shape[1] * unit.itemsize
    array = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(unit), [None, pa.py_buffer(unit.tobytes())])
    return pl.Series("key", array).cast(pl.Binary)


def key_vectors(keys: pl.Series) -> np.ndarray:
    """The vectors behind :func:`vector_keys` keys, ``[rows, dim]`` float32 (read from Arrow's buffers)."""
    if keys.len() == 0:
        return np.zeros((0, 0), dtype=np.float32)
    array = keys.to_arrow().cast(pa.large_binary())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    _, offsets, data = array.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int64)[array.offset : array.offset + len(array) + 1]
    widths = np.diff(bounds)
    if array.null_count or len(np.unique(widths)) != 1:
        raise ValueError("co_paraphrase: every post's embedding must have the same length")
    flat = np.frombuffer(data, dtype=np.uint8)[bounds[0] : bounds[-1]]
    return flat.view(np.float32).reshape(len(array), -1)


def band_keys(codes: np.ndarray, rows: int) -> np.ndarray:
    """One uint64 per (band, code) of ``codes`` (``[n, bands]`` from :func:`~.paraphrase.simhash_bands`).

    Exact, ``band << rows | code``, whenever it fits in 64 bits (the defaults: 64 bands of 16 bits
    use 22). Otherwise the pair is mixed into 64 bits (splitmix64): two different (band, code) pairs
    then share a key with probability 2**-64, which would only add a candidate (verified like any).
    """
    n, bands = codes.shape
    band = np.broadcast_to(np.arange(bands, dtype=np.uint64), (n, bands))
    code = codes.astype(np.uint64)
    if rows + max(1, (bands - 1).bit_length()) <= 64:
        return ((band << np.uint64(rows)) | code).reshape(-1)
    with np.errstate(over="ignore"):
        z = code ^ (band * np.uint64(0x9E3779B97F4A7C15))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return (z ^ (z >> np.uint64(31))).reshape(-1)


class _SliceVectors:
    """The distinct vectors held for one slice: a ``kh -> row`` frame and a matrix that grows by
    doubling, so adding a micro-batch costs its own size, not the slice's.

    Snapshots (:meth:`ParaphraseIndex.copy`) share the matrix: rows are only ever appended, a
    snapshot reads only the rows it knows, and :meth:`appended` writes in place only when nobody
    appended past this object's rows (``_used``, shared by every object on the buffer); otherwise
    it copies first.
    """

    def __init__(self, matrix: np.ndarray, size: int, rows: pl.DataFrame, used: list[int]) -> None:
        self.matrix, self.size, self.rows, self._used = matrix, size, rows, used

    @classmethod
    def of(cls, kh: np.ndarray, vectors: np.ndarray) -> _SliceVectors:
        empty = cls(np.empty((0, vectors.shape[1]), dtype=np.float32), 0, pl.DataFrame(schema=_ROWS_SCHEMA), [0])
        return empty.appended(kh, vectors)

    def appended(self, kh: np.ndarray, vectors: np.ndarray) -> _SliceVectors:
        n, size = len(kh), self.size
        matrix, used = self.matrix, self._used
        if used[0] != size or size + n > len(matrix):
            grown = np.empty((max(2 * len(matrix), size + n, 64), matrix.shape[1]), dtype=np.float32)
            grown[:size] = matrix[:size]
            matrix, used = grown, [size]
        matrix[size : size + n] = vectors
        used[0] = size + n
        rows = pl.DataFrame({"kh": kh, "row": np.arange(size, size + n, dtype=np.int64)}, schema=_ROWS_SCHEMA)
        return _SliceVectors(matrix, size + n, pl.concat([self.rows, rows], rechunk=False), used)


def stream_paraphrase_actions(posts: pl.DataFrame) -> pl.DataFrame:
    """``post_id, account_id, t_us, key``: the posts taking part in co_paraphrase, keyed by their vector's bytes.

    The batch's :func:`~.coaction.paraphrase_actions` numbers the distinct vectors of one batch;
    a stream needs a key that means the same in every micro-batch, so here it is the normalised
    vector itself (:func:`vector_keys`).
    """
    from detectors.coordination.coaction import paraphrase_actions

    actions, vectors = paraphrase_actions(posts)
    if actions.height == 0:
        return actions.select("post_id", "account_id", "t_us", key=pl.lit(None, pl.Binary))
    keys = vector_keys(vectors)
    return actions.with_columns(key=keys.gather(actions.get_column("key")))


class ParaphraseIndex:
    """The held embeddings of co_paraphrase by slice and SimHash band; see the module docstring.

    ``slice_us`` is the state's co_paraphrase slice width, ``max_vectors_per_band`` the cap per
    band bucket (None: no cap). Pure: no I/O.
    """

    def __init__(self, coaction: CoActionConfig, slice_us: int, max_vectors_per_band: int | None) -> None:
        self.coaction = coaction
        self.threshold = coaction.paraphrase_threshold
        self.bands, self.rows = choose_bands(coaction.paraphrase_threshold, coaction.paraphrase_bits)
        self._slice_us = slice_us
        self._cap = max_vectors_per_band
        self._bands: dict[int, BandRuns] = {}
        # Per slice: the held distinct vectors.
        self._vectors: dict[int, _SliceVectors] = {}
        self.dim: int | None = None
        self.capped = 0

    def copy(self) -> ParaphraseIndex:
        """An independent snapshot sharing the (immutable) slice frames and arrays."""
        twin = ParaphraseIndex(self.coaction, self._slice_us, self._cap)
        twin._bands, twin._vectors = dict(self._bands), dict(self._vectors)
        twin.dim, twin.capped = self.dim, self.capped
        return twin

    def relate(self, new: pl.DataFrame) -> pl.DataFrame:
        """``kh, okh`` (:data:`RELATED_SCHEMA`) for a micro-batch's actions (``kh, key, b``), and index them.

        Each new vector is related to itself and to every held or new vector that shares a band
        code with it in the same or an adjacent slice and has an exact cosine >= the threshold.
        """
        sets = new.select("kh", "key", "b").unique(["kh", "b"], keep="first", maintain_order=True)
        if sets.height == 0:
            return pl.DataFrame(schema=RELATED_SCHEMA)
        distinct = sets.unique("kh", keep="first", maintain_order=True)
        vectors = key_vectors(distinct.get_column("key"))
        self._check_dim(vectors.shape[1])
        kh = distinct.get_column("kh").to_numpy()
        codes = simhash_bands(vectors, self.bands, self.rows, seed=self.coaction.seed)
        keys = band_keys(codes, self.rows)
        band_rows = pl.DataFrame({"kh": np.repeat(kh, self.bands), "key": keys},
                                 schema={"kh": pl.UInt64(), "key": pl.UInt64()})  # fmt: skip
        entries = sets.select("kh", "b").join(band_rows, on="kh")
        touched = sorted({b + d for b in sets.get_column("b").unique().to_list() for d in (-1, 0, 1)})
        candidates = band_candidates(entries, "key", self._bands)
        related = [distinct.select("kh", okh="kh")]
        if candidates.height:
            related.append(self._verified(candidates, kh, vectors, touched))
        self._index(sets.select("kh", "b"), kh, vectors, entries)
        return pl.concat(related).cast(RELATED_SCHEMA)  # type: ignore[arg-type]

    def _check_dim(self, dim: int) -> None:
        if self.dim is None:
            self.dim = dim
        elif dim != self.dim:
            raise ValueError(
                f"co_paraphrase: embeddings of length {dim} after embeddings of length {self.dim}; "
                "all posts' embeddings must come from one model"
            )

    def _verified(
        self, candidates: pl.DataFrame, kh: np.ndarray, vectors: np.ndarray, touched: list[int]
    ) -> pl.DataFrame:
        """The candidate pairs whose exact cosine reaches the threshold: the batch's arithmetic
        (:func:`~.paraphrase.pair_cosines`: one ``einsum`` row per pair on the same float32 vectors),
        gathered block by block from the new vectors and the touched slices' matrices."""
        new_rows = pl.DataFrame({"kh": kh, "left": np.arange(len(kh), dtype=np.int64)},
                                schema={"kh": pl.UInt64(), "left": pl.Int64()})  # fmt: skip
        needed = candidates.select(kh="okh").unique()
        sources = [new_rows.select("kh", row="left", src=pl.lit(-1, pl.Int64))]
        sources += [self._vectors[b].rows.join(needed, on="kh", how="semi").with_columns(src=pl.lit(b, pl.Int64))
                    for b in touched if b in self._vectors]  # fmt: skip
        lookup = pl.concat(sources).unique("kh", keep="first").rename({"kh": "okh"})
        pairs = candidates.join(new_rows, on="kh").join(lookup, on="okh")
        matrices = {b: self._vectors[b].matrix for b in touched if b in self._vectors}
        matrices[-1] = vectors
        keep = np.zeros(pairs.height, dtype=bool)
        left_all, row_all, src_all = (pairs.get_column(c).to_numpy() for c in ("left", "row", "src"))
        for start in range(0, pairs.height, _VERIFY_BLOCK):
            stop = min(start + _VERIFY_BLOCK, pairs.height)
            right = np.empty((stop - start, vectors.shape[1]), dtype=np.float32)
            src, row = src_all[start:stop], row_all[start:stop]
            for b in np.unique(src):
                mask = src == b
                right[mask] = matrices[int(b)][row[mask]]
            cosine = np.einsum("ij,ij->i", vectors[left_all[start:stop]], right)
            keep[start:stop] = cosine >= self.threshold
        return pairs.filter(pl.Series(keep)).select("kh", "okh")

    def _index(self, sets: pl.DataFrame, kh: np.ndarray, vectors: np.ndarray, entries: pl.DataFrame) -> None:
        """Hold each (vector, slice) not held yet: its vector, and its band codes up to the bucket cap."""
        slices = [int(b) for b in sets.get_column("b").unique().to_list()]
        held = pl.concat(
            [self._vectors[b].rows.select("kh").with_columns(b=pl.lit(b, pl.Int64)) for b in slices
             if b in self._vectors]
            or [pl.DataFrame(schema={"kh": pl.UInt64(), "b": pl.Int64()})]
        )
        fresh = sets.join(held, on=["kh", "b"], how="anti") if held.height else sets
        if fresh.height == 0:
            return
        codes = entries.join(fresh, on=["kh", "b"]).select("key", "kh", "b")
        if self._cap is not None:
            kept = within_cap(codes, "key", self._bands, self._cap)
            self.capped += codes.height - kept.height
            codes = kept
        position = pl.DataFrame({"kh": kh, "i": np.arange(len(kh), dtype=np.int64)},
                                schema={"kh": pl.UInt64(), "i": pl.Int64()})  # fmt: skip
        for (b,), part in fresh.join(position, on="kh").partition_by("b", as_dict=True).items():
            keys, rows = part.get_column("kh").to_numpy(), vectors[part.get_column("i").to_numpy()]
            held_b = self._vectors.get(int(b))
            self._vectors[int(b)] = _SliceVectors.of(keys, rows) if held_b is None else held_b.appended(keys, rows)
        add_entries(codes, "key", self._bands)

    def evict(self, limit_us: int) -> int:
        """Drop the slices whose posts are all older than ``limit_us`` (the state's rule); returns how many."""
        return sum(drop_slices(table, self._slice_us, limit_us) for table in (self._bands, self._vectors))

    def held_rows(self) -> Mapping[str, int]:
        """Rows held now: band entries and distinct vectors (per slice)."""
        return {
            "paraphrase_bands": sum(len(runs) for runs in self._bands.values()),
            "paraphrase_vectors": sum(v.size for v in self._vectors.values()),
        }


__all__ = ["RELATED_SCHEMA", "ParaphraseIndex", "key_vectors", "stream_paraphrase_actions", "vector_keys"]
