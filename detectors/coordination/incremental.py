"""Co-action networks incrementally: add micro-batches of posts, get the new and changed matches.

The batch functions in :mod:`.coaction` see every post at once. A stream sees posts a micro-batch at
a time, in any order, and can keep only a bounded past. :class:`CoActionState` gives the same edges
as :func:`~.coaction.co_action_networks` on the same posts, whatever the order and the batching,
while holding only a sliding *horizon* of posts:

* **Same semantics, exactly.** The actions of a post (its shared objects) come from
  :func:`~.coaction.post_actions`, and a match is what the batch as-of join finds: for each post
  and each other account, that account's nearest post on the same object within ``±window``
  (inclusive), ties resolved as the batch resolves them (see :func:`_per_object_best` and
  :func:`_winners`). :meth:`CoActionState.edges` aggregates the matches with
  :func:`~.coaction.edges_from_matches`, so weights *and* evidence equal the batch's.
  ``tests/test_coordination_stream.py`` checks this with hypothesis over shuffles and splits.
* **Work per micro-batch does not grow with the horizon.** Stored actions are kept in time slices
  one window wide, per network type. A post can only match posts in its own slice or the two next
  to it, so a micro-batch is joined with at most three slices per object it touches (a join on
  ``(object hash, slice)``), never with the whole horizon.
* **Time-based eviction.** The *watermark* is the newest ``created_at`` seen. A slice is dropped
  once all its posts are more than ``horizon + window`` older than the watermark, and a post that
  arrives more than ``horizon`` behind the watermark is *late*: counted and ignored. Hence the
  guarantee: **if no post arrives more than ``horizon`` behind the newest post seen before its
  micro-batch, no match is ever missed**, and the matches reported over time (the deltas, see
  :class:`MatchLedger`) equal the batch's on the whole stream. Memory holds the posts of
  ``horizon + 2 windows`` of event time, whatever the length of the stream.
* **Hot objects are capped.** A viral link shared by 100,000 accounts within a minute would make
  every new share join 100,000 stored ones. With ``max_posts_per_object`` = C, at most C actions
  per object and window-wide slice are *stored*; further ones are still matched against what is
  stored and against their own micro-batch, but are not kept for later posts to match. What this
  does to exactness: nothing for an object with at most C posts per slice (all the tests' data and
  all coordination worth a reviewer's time); for a hotter object, a post over the cap is never
  seen by posts of later micro-batches, so those matches are missed and its edges are a *subset* of
  the batch's (weights can only be lower, no edge is invented, evidence is still true). The number
  of capped actions is in :attr:`StateStats.capped`. Work per action is bounded by 3C partners.

Objects are joined by a 64-bit hash of their key (normalised text can be 32 kB; the hash keeps the
state small); two different objects colliding in the same three slices has a probability of order
``n**2 / 2**64``, which we accept. Post ids already seen (an at-least-once redelivery brings back
the same post with the same ``created_at``) are recognised by a hash of the id in one-minute slices
and ignored, so a replay changes nothing; an id that comes back with another time is a new post.

``co_similar`` is incremental too, and exact, but opt-in (:data:`OPTIONAL_STREAM_NETWORK_TYPES`):
its objects are token sets, and a new post looks for partners on every held set *related* to its
own (identical, or sharing a MinHash band with Jaccard >= the threshold), which
:class:`~.incremental_similar.SimilarSetIndex` finds with the batch's very signatures and bands,
so the candidate sets and hence the edges are the batch's. ``co_paraphrase`` is opt-in the same
way: its objects are the posts' sentence embeddings (a column ``embedding``, which the stream's
posts carry when the workers publish them, ``worker.publish_embeddings``), related when their
cosine reaches the threshold, found by :class:`~.incremental_paraphrase.ParaphraseIndex` with the
batch's SimHash bands; its edges are those of a batch run with ``paraphrase_search = "lsh"`` (the
stream cannot use the batch's exact comparison of sparse slices, see that module).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import networkx as nx
import polars as pl

from detectors.coordination.coaction import (
    MATCH_SCHEMA,
    CoActionConfig,
    edges_from_matches,
    post_actions,
)
from detectors.coordination.graph import (
    CampaignConfig,
    CampaignResult,
    assign_campaign_ids,
    find_communities,
    pair_strengths,
    score_campaigns,
)
from detectors.coordination.incremental_paraphrase import ParaphraseIndex, stream_paraphrase_actions
from detectors.coordination.incremental_similar import SimilarSetIndex
from detectors.coordination.slices import drop_slices

#: The network types the stream computes by default (exactly as the batch does).
STREAM_NETWORK_TYPES: tuple[str, ...] = ("co_repost", "co_text", "co_reply", "co_link", "co_hashtag")
#: Types the state also computes exactly, but only when asked for: co_similar costs several times
#: the five exact types together (MinHash per post, a band index of ``bands`` rows per held set;
#: ``bench/bench_coordination_stream.py --networks``), so a deployment opts in.
OPTIONAL_STREAM_NETWORK_TYPES: tuple[str, ...] = ("co_similar", "co_paraphrase")
#: Every type :class:`CoActionState` accepts.
INCREMENTAL_NETWORK_TYPES: tuple[str, ...] = STREAM_NETWORK_TYPES + OPTIONAL_STREAM_NETWORK_TYPES

#: Default horizon: six hours of event time. Long enough for a campaign's repeated bursts to add up
#: to the graph stage's ``min_co_actions`` (the generator's campaigns burst about twice an hour),
#: short enough that memory stays a few hundred MB at thousands of posts per second.
DEFAULT_HORIZON_S = 6 * 3600.0
#: Default cap on stored actions per object and window-wide slice: above any coordinated burst
#: (tens to hundreds of accounts), below the viral objects that would dominate the cost.
DEFAULT_MAX_POSTS_PER_OBJECT = 1_000
#: Narrowest slice: windows of 0 s would otherwise make one slice per microsecond.
MIN_SLICE_US = 1_000_000
#: Slice width of the replay memory (post ids seen): a replay has the same time, so it is in the same
#: slice; a minute keeps the slices few when a micro-batch spans hours of a slow stream.
SEEN_SLICE_US = 60_000_000

_ACTION_SCHEMA: dict[str, pl.DataType] = {
    "post_id": pl.String(),
    "account_id": pl.String(),
    "t_us": pl.Int64(),
    "kh": pl.UInt64(),
    "b": pl.Int64(),
}
#: One row per (post, other account, object): that account's nearest post on that object.
_MATCH_ROW_SCHEMA: dict[str, pl.DataType] = {
    **MATCH_SCHEMA,
    "kh": pl.UInt64(),
    "gap": pl.Int64(),
    "b": pl.Int64(),
    # Hash of (post, account): finds a micro-batch's pairs among the stored rows with one integer join
    # (a collision only adds a row that the exact grouping on the strings then leaves alone).
    "pk": pl.UInt64(),
}
_ACTIVITY_SCHEMA: dict[str, pl.DataType] = {"account_id": pl.String(), "n_posts": pl.Int64()}
#: What :class:`CoActionDelta` reports per changed match.
DELTA_SCHEMA: dict[str, pl.DataType] = {"network": pl.String(), **MATCH_SCHEMA, "new": pl.Boolean()}
#: Per-object match rows as coordination workers pass them on (:attr:`CoActionDelta.object_matches`).
OBJECT_MATCH_SCHEMA: dict[str, pl.DataType] = {"network": pl.String(), **MATCH_SCHEMA, "kh": pl.UInt64()}
#: An accepted action without its object: what account activity and campaign scores count.
ACTIVITY_ROW_SCHEMA: dict[str, pl.DataType] = {
    "network": pl.String(),
    "post_id": pl.String(),
    "account_id": pl.String(),
    "t_us": pl.Int64(),
}
_PAIR = ["post_id", "match_account_id"]


@dataclass(frozen=True)
class IncrementalConfig:
    """Knobs of the incremental state; the co-action semantics themselves are ``coaction``'s.

    ``horizon_s`` is how far behind the newest post a post may arrive and still be matched
    exactly (and so how much event time the state holds); ``max_posts_per_object`` caps stored
    actions per object and window-wide slice (None: no cap, exact for any object).
    """

    coaction: CoActionConfig = field(default_factory=CoActionConfig)
    networks: tuple[str, ...] = STREAM_NETWORK_TYPES
    horizon_s: float = DEFAULT_HORIZON_S
    max_posts_per_object: int | None = DEFAULT_MAX_POSTS_PER_OBJECT
    hash_seed: int = 0x0C0A

    def __post_init__(self) -> None:
        unsupported = [n for n in self.networks if n not in INCREMENTAL_NETWORK_TYPES]
        if unsupported:
            raise ValueError(
                f"network types {unsupported} are not incremental; use some of {', '.join(INCREMENTAL_NETWORK_TYPES)}"
            )
        if self.horizon_s < 0:
            raise ValueError(f"horizon_s must be >= 0 seconds, got {self.horizon_s}")
        if self.max_posts_per_object is not None and self.max_posts_per_object < 1:
            raise ValueError(f"max_posts_per_object must be >= 1 or None, got {self.max_posts_per_object}")
        if self.coaction.include_self_loops:
            raise ValueError("include_self_loops is a batch-only option (QUT's raw table); the stream leaves them out")


@dataclass
class StateStats:
    """Running totals: what was added, ignored and capped, and how much the state holds now."""

    posts: int = 0
    duplicates: int = 0
    late: int = 0
    capped: int = 0
    capped_bands: int = 0
    evicted_slices: int = 0


@dataclass(frozen=True)
class CoActionDelta:
    """What one micro-batch changed.

    ``matches`` has one row per (post, other account, type) whose match is new (``new``: the
    post's first match with that account, so the edge's weight grows by one) or changed (a nearer
    post of that account arrived: the evidence changes, the weight does not). ``accepted``,
    ``duplicates`` and ``late`` count the batch's posts.

    For the scale-out path (a graph stage fed by several coordination workers): ``object_matches``
    are the per-object rows (``OBJECT_MATCH_SCHEMA``) the batch made better or new, and
    ``actions`` the accepted actions without their objects (``ACTIVITY_ROW_SCHEMA``). An
    :class:`ObjectMatchLedger` fed with them from every worker holds what one state would.
    """

    matches: pl.DataFrame
    accepted: int = 0
    duplicates: int = 0
    late: int = 0
    object_matches: pl.DataFrame = field(default_factory=lambda: _empty(OBJECT_MATCH_SCHEMA))
    actions: pl.DataFrame = field(default_factory=lambda: _empty(ACTIVITY_ROW_SCHEMA))

    def edge_increments(self) -> pl.DataFrame:
        """``network, user_1, user_2, new_weight``: how much each touched edge's weight grew."""
        return (
            self.matches.group_by("network", pl.col("account_id").alias("user_1"),
                                  pl.col("match_account_id").alias("user_2"))
            .agg(new_weight=pl.col("new").sum().cast(pl.Int64))
            .sort("network", "user_1", "user_2")
        )


def _empty(schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=dict(schema))


def _stream_actions(posts: pl.DataFrame, network: str) -> pl.DataFrame:
    """A micro-batch's actions of one type; co_paraphrase keyed by the vector itself (stable across batches)."""
    return stream_paraphrase_actions(posts) if network == "co_paraphrase" else post_actions(posts, network)


def _per_object_best(rows: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
    """Per (post, account, object) the partner the batch's as-of join picks: the nearest, and among
    equally near ones the latest (then the largest post id), which is what polars' ``join_asof``
    with ``strategy="nearest"`` returns (checked against it in the tests)."""
    return (
        rows.lazy()
        .sort(["gap", "match_t_us", "match_post_id"], descending=[False, True, True])
        .unique(["post_id", "match_account_id", "kh"], keep="first", maintain_order=True)
    )


def _winners(rows: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
    """Per (post, account) over its objects: the nearest, then the earliest, as the batch's final sort."""
    return (
        rows.lazy()
        .sort("gap", "match_t_us", "match_post_id")
        .unique(_PAIR, keep="first", maintain_order=True)
    )


class CoActionState:
    """The co-action networks of a sliding horizon of posts, updated one micro-batch at a time.

    Feed :meth:`add` validated posts (the post schema, as the workers' validator produces it), in
    any order and batching; read :meth:`edges`, :meth:`matches`, :meth:`activity` and
    :meth:`posts` for the graph stage (:func:`campaigns_from_state`). Pure: no I/O.
    """

    def __init__(self, config: IncrementalConfig | None = None) -> None:
        self.config = config or IncrementalConfig()
        coaction = self.config.coaction
        self._window_us = {n: round(coaction.window_s(n) * 1_000_000) for n in self.config.networks}
        if any(w < 0 for w in self._window_us.values()):
            raise ValueError(f"time windows must be >= 0 seconds, got {coaction.windows_s}")
        self._slice_us = {n: max(w, MIN_SLICE_US) for n, w in self._window_us.items()}
        self._horizon_us = round(self.config.horizon_s * 1_000_000)
        self._actions: dict[str, dict[int, pl.DataFrame]] = {n: {} for n in self.config.networks}
        self._matches: dict[str, dict[int, pl.DataFrame]] = {n: {} for n in self.config.networks}
        self._activity: dict[str, dict[int, pl.DataFrame]] = {n: {} for n in self.config.networks}
        self._seen: dict[int, pl.DataFrame] = {}
        # The types whose objects relate to other objects (near-duplicate sets, close vectors).
        index_types = {"co_similar": SimilarSetIndex, "co_paraphrase": ParaphraseIndex}
        self._indexes: dict[str, SimilarSetIndex | ParaphraseIndex] = {
            network: index_types[network](coaction, self._slice_us[network], self.config.max_posts_per_object)
            for network in self.config.networks
            if network in index_types
        }
        self.watermark_us: int | None = None
        self.stats = StateStats()

    def copy(self) -> CoActionState:
        """An independent snapshot, cheap: slices are immutable frames that the copy shares."""
        twin = CoActionState(self.config)
        for name in ("_actions", "_matches", "_activity"):
            setattr(twin, name, {n: dict(slices) for n, slices in getattr(self, name).items()})
        twin._seen = dict(self._seen)
        twin._indexes = {network: index.copy() for network, index in self._indexes.items()}
        twin.watermark_us = self.watermark_us
        twin.stats = StateStats(**vars(self.stats))
        return twin

    # -- feeding ---------------------------------------------------------------------------------
    def add(self, posts: pl.DataFrame) -> CoActionDelta:
        """Add a micro-batch of posts; return the matches it created or changed.

        Within the batch the first row of a post id wins (as in the batch functions); a post id
        already in the state with the same time is a replay and is ignored.
        """
        if posts.height == 0:
            return CoActionDelta(_empty(DELTA_SCHEMA))
        fresh, duplicates, late = self._admit(posts, ["post_id"], pl.col("created_at").dt.epoch("us"))
        actions = {network: _stream_actions(fresh, network) for network in self.config.networks} if fresh.height else {}
        return self._apply(actions, fresh.height, duplicates, late)

    def add_actions(self, actions: pl.DataFrame) -> CoActionDelta:
        """Add actions already split by object: ``network, post_id, account_id, t_us, key``.

        The scale-out path (``stream/coordination/rekey.py``): a coordination worker receives only the actions
        of the objects routed to it, one message per (post, object), and must match a post on
        those objects only. Replays are recognised per (type, post, object). Use either this or
        :meth:`add` on one state, not both.
        """
        if actions.height == 0:
            return CoActionDelta(_empty(DELTA_SCHEMA))
        fresh, duplicates, late = self._admit(actions, ["network", "post_id", "key"], pl.col("t_us"))
        by_network = {
            network: fresh.filter(pl.col("network") == network).drop("network") for network in self.config.networks
        }
        return self._apply(by_network, fresh.height, duplicates, late)

    def _apply(self, actions: Mapping[str, pl.DataFrame], accepted: int, duplicates: int, late: int) -> CoActionDelta:
        """Match each type's admitted actions, advance the watermark, evict, and report the changes."""
        changed, improved = [], []
        for network, frame in actions.items():
            if frame.height:
                post_level, object_level = self._add_actions(network, frame)
                changed.append(post_level.with_columns(network=pl.lit(network)))
                improved.append(object_level.with_columns(network=pl.lit(network)).select(list(OBJECT_MATCH_SCHEMA)))
        newest = max((int(f.get_column("t_us").max()) for f in actions.values() if f.height), default=None)  # type: ignore[arg-type]
        if newest is not None:
            self.watermark_us = newest if self.watermark_us is None else max(self.watermark_us, newest)
            self._evict()
        matches = pl.concat(changed).select(list(DELTA_SCHEMA)) if changed else _empty(DELTA_SCHEMA)
        object_matches = pl.concat(improved) if improved else _empty(OBJECT_MATCH_SCHEMA)
        accepted_actions = [
            f.select(network=pl.lit(network), post_id="post_id", account_id="account_id", t_us="t_us")
            for network, f in actions.items()
            if f.height
        ]
        activity = pl.concat(accepted_actions) if accepted_actions else _empty(ACTIVITY_ROW_SCHEMA)
        self.stats.posts += accepted
        self.stats.duplicates += duplicates
        self.stats.late += late
        return CoActionDelta(
            matches, accepted=accepted, duplicates=duplicates, late=late,
            object_matches=object_matches, actions=activity,
        )  # fmt: skip

    def _admit(self, frame: pl.DataFrame, identity: list[str], t_us: pl.Expr) -> tuple[pl.DataFrame, int, int]:
        """Drop late rows and replays; remember the identities of the rest. Returns (fresh, duplicates, late)."""
        seed = self.config.hash_seed
        first = frame.unique(identity, keep="first", maintain_order=True).with_columns(
            _t=t_us,
            _h=pl.col(identity[0]).hash(seed) if len(identity) == 1 else pl.struct(identity).hash(seed),
        )
        late = 0
        if self.watermark_us is not None:
            on_time = pl.col("_t") >= self.watermark_us - self._horizon_us
            late = first.height - int(first.select(on_time.sum()).item())
            first = first.filter(on_time)
        first = first.with_columns(_s=pl.col("_t") // SEEN_SLICE_US)
        slices = first.get_column("_s").unique().to_list()
        known = [self._seen[s] for s in slices if s in self._seen]
        fresh = first.join(pl.concat(known), on=["_s", "_h"], how="anti", maintain_order="left") if known else first
        # Repeats inside the micro-batch count as replays too.
        duplicates = frame.height - late - fresh.height
        for (s,), part in fresh.select("_s", "_h").partition_by("_s", as_dict=True).items():
            self._seen[s] = _append(self._seen.get(s), part)
        return fresh.drop("_t", "_h", "_s"), duplicates, late

    def _add_actions(self, network: str, actions: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Match one type's new actions with the stored ones; update the stored matches.

        Returns the changed post-level matches (``MATCH_SCHEMA`` + ``new``) and the new or better
        per-object rows (``MATCH_SCHEMA`` + ``kh``).

        A new action on object ``kh`` looks for partners on the objects ``okh`` related to it: for
        the exact types only itself; for co_similar itself and the near-duplicate token sets
        (:class:`~.incremental_similar.SimilarSetIndex`). A forward row's object is the partner's
        (``okh``), the reverse row's the new action's (``kh``): per-object rows are keyed by the
        matched post's object, as the batch's groups are.
        """
        window, width = self._window_us[network], self._slice_us[network]
        seed = self.config.hash_seed
        new = actions.select(
            "post_id",
            "account_id",
            "t_us",
            kh=pl.col("key").hash(seed),
            b=pl.col("t_us") // width,
        )
        index = self._indexes.get(network)
        if index is not None:
            related = index.relate(new.with_columns(key=actions.get_column("key")))
            self.stats.capped_bands = sum(i.capped for i in self._indexes.values())
        else:
            related = None
        activity = new.group_by("b", "account_id").agg(n_posts=pl.col("post_id").n_unique().cast(pl.Int64))
        for (b,), part in activity.partition_by("b", as_dict=True).items():
            self._activity[network][b] = _append(self._activity[network].get(b), part.drop("b"))

        touched = sorted({b + d for b in new.get_column("b").unique().to_list() for d in (-1, 0, 1)})
        stored = _gather(self._actions[network], touched, _ACTION_SCHEMA)
        cap = self.config.max_posts_per_object
        if cap is not None:
            counts = stored.group_by("kh", "b").agg(_n=pl.len().cast(pl.Int64))
            new = (
                new.join(counts, on=["kh", "b"], how="left", maintain_order="left")
                .with_columns(_keep=pl.col("_n").fill_null(0) + pl.int_range(pl.len()).over("kh", "b") < cap)
                .drop("_n")
            )
            self.stats.capped += new.height - int(new.get_column("_keep").sum())
        else:
            new = new.with_columns(_keep=pl.lit(True))

        # Candidate partners: stored actions and the whole micro-batch, in the same or a next slice.
        partners = pl.concat(
            [stored.with_columns(_fresh=pl.lit(False)), new.drop("_keep").with_columns(_fresh=pl.lit(True))]
        ).rename({"post_id": "match_post_id", "account_id": "match_account_id", "t_us": "match_t_us"})
        queries = new.lazy().with_columns(okh="kh") if related is None else new.lazy().join(related.lazy(), on="kh")
        pairs = (
            queries.select(
                "post_id", "account_id", "t_us", "kh", "okh", nb=pl.concat_list(pl.col("b") - 1, "b", pl.col("b") + 1)
            )
            .explode("nb")
            .join(partners.lazy().rename({"kh": "okh"}), left_on=["okh", "nb"], right_on=["okh", "b"])
            .filter(
                (pl.col("account_id") != pl.col("match_account_id"))
                & ((pl.col("t_us") - pl.col("match_t_us")).abs() <= window)
            )
            .collect()
        )
        columns = ["post_id", "account_id", "t_us", "kh", "match_account_id", "match_post_id", "match_t_us"]
        forward = pairs.select(*columns[:3], pl.col("okh").alias("kh"), *columns[4:])
        # A new action is also a candidate partner for the stored ones it matched (the other direction).
        reverse = pairs.filter(~pl.col("_fresh")).select(
            pl.col("match_post_id").alias("post_id"),
            pl.col("match_account_id").alias("account_id"),
            pl.col("match_t_us").alias("t_us"),
            "kh",
            pl.col("account_id").alias("match_account_id"),
            pl.col("post_id").alias("match_post_id"),
            pl.col("t_us").alias("match_t_us"),
        )
        candidates = _per_object_best(
            pl.concat([forward, reverse]).with_columns(
                gap=(pl.col("match_t_us") - pl.col("t_us")).abs(),
                b=pl.col("t_us") // width,
                pk=pl.struct(_PAIR).hash(seed),
            )
        ).collect()

        for (b,), part in new.filter(pl.col("_keep")).drop("_keep").partition_by("b", as_dict=True).items():
            self._actions[network][b] = _append(self._actions[network].get(b), part)
        if candidates.height == 0:
            return _empty(MATCH_SCHEMA).with_columns(new=pl.lit(True)), _empty({**MATCH_SCHEMA, "kh": pl.UInt64()})

        held = _gather(self._matches[network], touched, _MATCH_ROW_SCHEMA)
        keys = candidates.select("pk").unique()
        # Stored match rows are append-only: a better partner for (post, account, object) is a new
        # row, and the best row per key is the current one (so older versions never need rewriting).
        affected = _per_object_best(held.join(keys, on="pk", how="semi")).collect()
        before = _winners(affected).select(*_PAIR, _was=pl.col("match_post_id"))
        merged = _per_object_best(pl.concat([affected, candidates.select(list(_MATCH_ROW_SCHEMA))])).collect()
        changed = (
            _winners(merged)
            .join(before, on=_PAIR, how="left")
            .filter(pl.col("_was").is_null() | (pl.col("_was") != pl.col("match_post_id")))
            .select(*MATCH_SCHEMA, new=pl.col("_was").is_null())
            .collect()
        )
        version = [*_PAIR, "kh", "match_post_id"]
        improved = merged.join(affected.select(version), on=version, how="anti")
        for (b,), part in improved.partition_by("b", as_dict=True).items():
            self._matches[network][b] = _append(self._matches[network].get(b), part, compact=_compact_matches)
        return changed, improved.select(*MATCH_SCHEMA, "kh")

    def _evict(self) -> None:
        """Drop every slice whose posts are all more than ``horizon + window`` behind the watermark."""
        assert self.watermark_us is not None
        cutoff = self.watermark_us - self._horizon_us
        for network in self.config.networks:
            limit, width = cutoff - self._window_us[network], self._slice_us[network]
            for table in (self._actions[network], self._matches[network], self._activity[network]):
                self.stats.evicted_slices += drop_slices(table, width, limit)
            if network in self._indexes:
                self.stats.evicted_slices += self._indexes[network].evict(limit)
        drop_slices(self._seen, SEEN_SLICE_US, cutoff)

    # -- reading ----------------------------------------------------------------------------------
    def matches(self, network: str | None = None) -> pl.DataFrame:
        """Post-level matches (``MATCH_SCHEMA``; with a ``network`` column when ``network`` is None)."""
        if network is not None:
            return matches_from_object_rows(self.object_matches(network))
        frames = [self.matches(n).with_columns(network=pl.lit(n)) for n in self.config.networks]
        return pl.concat(frames) if frames else _empty({**MATCH_SCHEMA, "network": pl.String()})

    def object_matches(self, network: str) -> pl.DataFrame:
        """Per (post, other account, object): that account's nearest post on the object (``MATCH_SCHEMA``
        plus ``kh``, the object's hash). What coordination workers that each hold some objects
        pass on: :func:`matches_from_object_rows` of all their rows is the post-level matches."""
        rows = _gather(self._matches[network], sorted(self._matches[network]), _MATCH_ROW_SCHEMA)
        return _per_object_best(rows).select(*MATCH_SCHEMA, "kh").collect()

    def edges(self, networks: Iterable[str] | None = None) -> dict[str, pl.DataFrame]:
        """``{type: edges}`` of the posts in the horizon, as :func:`~.coaction.co_action_networks` gives them."""
        coaction = self.config.coaction
        return {
            network: edges_from_matches(
                self.matches(network), min_weight=coaction.min_weight, evidence_per_edge=coaction.evidence_per_edge
            )
            for network in (networks or self.config.networks)
        }

    def activity(self) -> pl.DataFrame:
        """``account_id, network, n_posts``: as :func:`~.graph.account_activity` on the horizon's posts."""
        frames = [
            _gather(slices, sorted(slices), _ACTIVITY_SCHEMA)
            .group_by("account_id")
            .agg(pl.col("n_posts").sum())
            .with_columns(network=pl.lit(network))
            for network, slices in self._activity.items()
        ]
        return pl.concat(frames).select("account_id", "network", "n_posts")

    def posts(self) -> pl.DataFrame:
        """``post_id, account_id, created_at`` of the stored posts (what campaign scores read)."""
        frames = [
            _gather(slices, sorted(slices), _ACTION_SCHEMA).select("post_id", "account_id", "t_us")
            for slices in self._actions.values()
        ]
        return _posts_of_actions(frames)

    @property
    def retained_since_us(self) -> int | None:
        """No post older than this is held any more (slices are dropped whole, so this is one slice
        earlier than the eviction rule): a stream stage can forget where such posts came from."""
        if self.watermark_us is None:
            return None
        cutoff = self.watermark_us - self._horizon_us
        return min((cutoff - self._window_us[n] - self._slice_us[n] for n in self.config.networks), default=cutoff)

    def held_rows(self) -> dict[str, int]:
        """Rows the state holds now, by table: what the memory tests and the benchmark watch."""
        return {
            "actions": sum(f.height for slices in self._actions.values() for f in slices.values()),
            "matches": sum(f.height for slices in self._matches.values() for f in slices.values()),
            "activity": sum(f.height for slices in self._activity.values() for f in slices.values()),
            "seen": sum(f.height for f in self._seen.values()),
            **{name: n for index in self._indexes.values() for name, n in index.held_rows().items()},
        }


def matches_from_object_rows(rows: pl.DataFrame) -> pl.DataFrame:
    """Post-level matches (``MATCH_SCHEMA``) from per-object rows (:meth:`CoActionState.object_matches`),
    whether from one state or concatenated from several workers that each held some of the objects."""
    with_gap = rows.with_columns(gap=(pl.col("match_t_us") - pl.col("t_us")).abs())
    return _winners(_per_object_best(with_gap)).select(list(MATCH_SCHEMA)).collect()


def _posts_of_actions(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """``post_id, account_id, created_at`` of every post in action frames (``t_us``), each once."""
    return (
        pl.concat(frames)
        .unique("post_id", keep="first")
        .select(
            "post_id",
            "account_id",
            pl.from_epoch("t_us", time_unit="us").dt.replace_time_zone("UTC").alias("created_at"),
        )
        .sort("created_at", "post_id")
    )


def _append(
    existing: pl.DataFrame | None,
    part: pl.DataFrame,
    *,
    compact: Callable[[pl.DataFrame], pl.DataFrame] = pl.DataFrame.rechunk,
) -> pl.DataFrame:
    """Append a chunk, compacting now and then so a long-lived slice is not thousands of chunks."""
    if existing is None:
        return part
    combined = pl.concat([existing, part], rechunk=False)
    return compact(combined) if combined.n_chunks() > 32 else combined


def _compact_matches(rows: pl.DataFrame) -> pl.DataFrame:
    """One slice of match rows without the versions a better partner superseded, in one chunk."""
    return _per_object_best(rows).collect().rechunk()


def _gather(
    slices: Mapping[int, pl.DataFrame], wanted: Sequence[int], schema: Mapping[str, pl.DataType]
) -> pl.DataFrame:
    frames = [slices[b] for b in wanted if b in slices]
    return pl.concat(frames, rechunk=False) if frames else _empty(schema)


# --------------------------------------------------------------------------------------------
# A ledger of deltas (the consumer side), and the graph stage over the state
# --------------------------------------------------------------------------------------------


class MatchLedger:
    """Accumulates :class:`CoActionDelta` matches: the latest match per (type, post, account).

    What a consumer of the deltas keeps (the graph stage of the scale-out path, or a test): with
    ``horizon_s`` it forgets matches whose post is older than that behind the newest one it saw;
    without, it keeps everything, and its :meth:`edges` are the batch's edges on every post ever
    added to the state that produced the deltas (given no late posts).
    """

    def __init__(self, config: CoActionConfig | None = None, *, horizon_s: float | None = None) -> None:
        self.config = config or CoActionConfig()
        self.horizon_us = None if horizon_s is None else round(horizon_s * 1_000_000)
        self._rows = _empty({**MATCH_SCHEMA, "network": pl.String()})
        self.watermark_us: int | None = None

    def apply(self, matches: pl.DataFrame) -> None:
        """Upsert a delta's match rows (a later row for the same post and account replaces the earlier)."""
        if matches.height == 0:
            return
        rows = matches.select(*MATCH_SCHEMA, "network")
        key = ["network", *_PAIR]
        self._rows = pl.concat([self._rows.join(rows.select(key), on=key, how="anti"), rows.unique(key, keep="last")])
        newest = int(rows.get_column("t_us").max())  # type: ignore[arg-type]
        self.watermark_us = newest if self.watermark_us is None else max(self.watermark_us, newest)
        if self.horizon_us is not None:
            self._rows = self._rows.filter(pl.col("t_us") >= self.watermark_us - self.horizon_us)

    def edges(self, networks: Iterable[str] = STREAM_NETWORK_TYPES) -> dict[str, pl.DataFrame]:
        """``{type: edges}`` from the accumulated matches."""
        return {
            n: edges_from_matches(
                self._rows.filter(pl.col("network") == n).drop("network"),
                min_weight=self.config.min_weight,
                evidence_per_edge=self.config.evidence_per_edge,
            )
            for n in networks
        }


class ObjectMatchLedger:
    """The horizon of the scale-out path's central graph stage: per-object match rows and accepted
    actions, from any number of coordination workers, each of which holds some of the objects.

    Feed it every worker's :attr:`CoActionDelta.object_matches` and :attr:`CoActionDelta.actions`
    (in any order, any number of times): per (type, post, other account, object) it keeps the best
    row under the as-of join's order, so a replay, a worker's rebuild after a restart, or rows that
    a better partner superseded change nothing. Each object's actions all reach one worker, whose
    row for the object only ever improves, so :meth:`matches` (:func:`matches_from_object_rows` of
    what is held) are the matches one :class:`CoActionState` over every post would give, and
    :meth:`activity` / :meth:`posts` (actions counted once per type and post, although a post's
    urls may reach several workers) are its activity and posts: :func:`campaigns_from_state`
    works on a ledger as on a state.

    Time-based eviction, like the state's: the watermark is the newest ``t_us`` seen; rows are
    kept in time buckets ``bucket_s`` wide (default: the widest window, at least a second) and a
    bucket is dropped once all its rows are more than ``horizon_s`` behind the watermark; a row
    arriving more than ``horizon_s`` behind it is late (counted in ``stats.late``, ignored).
    """

    def __init__(self, config: IncrementalConfig | None = None, *, bucket_s: float | None = None) -> None:
        self.config = config or IncrementalConfig()
        coaction = self.config.coaction
        widest = max((coaction.window_s(n) for n in self.config.networks), default=0.0)
        self._bucket_us = max(round((bucket_s if bucket_s is not None else widest) * 1_000_000), MIN_SLICE_US)
        self._horizon_us = round(self.config.horizon_s * 1_000_000)
        self._rows: dict[str, dict[int, pl.DataFrame]] = {n: {} for n in self.config.networks}
        self._actions: dict[str, dict[int, pl.DataFrame]] = {n: {} for n in self.config.networks}
        self.watermark_us: int | None = None
        self.stats = StateStats()

    def copy(self) -> ObjectMatchLedger:
        """An independent snapshot, cheap: buckets are immutable frames that the copy shares."""
        twin = ObjectMatchLedger(self.config, bucket_s=self._bucket_us / 1_000_000)
        twin._rows = {n: dict(b) for n, b in self._rows.items()}
        twin._actions = {n: dict(b) for n, b in self._actions.items()}
        twin.watermark_us = self.watermark_us
        twin.stats = StateStats(**vars(self.stats))
        return twin

    def apply(self, object_matches: pl.DataFrame, actions: pl.DataFrame) -> int:
        """Add per-object rows (``OBJECT_MATCH_SCHEMA``) and actions (``ACTIVITY_ROW_SCHEMA``);
        returns how many of them were late (and ignored)."""
        rows = object_matches.select(list(OBJECT_MATCH_SCHEMA))
        acts = actions.select(list(ACTIVITY_ROW_SCHEMA))
        late = 0
        if self.watermark_us is not None:
            cutoff = self.watermark_us - self._horizon_us
            kept_rows, kept_acts = rows.filter(pl.col("t_us") >= cutoff), acts.filter(pl.col("t_us") >= cutoff)
            late = rows.height - kept_rows.height + acts.height - kept_acts.height
            rows, acts = kept_rows, kept_acts
        width = self._bucket_us
        for table, frame, compact in (
            (self._rows, rows.with_columns(gap=(pl.col("match_t_us") - pl.col("t_us")).abs()), _compact_matches),
            (self._actions, acts, _compact_actions),
        ):
            frame = frame.filter(pl.col("network").is_in(list(table))).with_columns(b=pl.col("t_us") // width)
            for (network, b), part in frame.partition_by("network", "b", as_dict=True).items():
                table[str(network)][int(b)] = _append(table[str(network)].get(int(b)), part.drop("network", "b"),
                                                      compact=compact)  # fmt: skip
        newest = max((int(f.get_column("t_us").max()) for f in (rows, acts) if f.height), default=None)  # type: ignore[arg-type]
        if newest is not None:
            self.watermark_us = newest if self.watermark_us is None else max(self.watermark_us, newest)
            limit = self.watermark_us - self._horizon_us
            for table in (*self._rows.values(), *self._actions.values()):
                self.stats.evicted_slices += drop_slices(table, width, limit)
        self.stats.posts += acts.height
        self.stats.late += late
        return late

    def matches(self, network: str | None = None) -> pl.DataFrame:
        """Post-level matches (``MATCH_SCHEMA``; with a ``network`` column when ``network`` is None)."""
        if network is not None:
            slices = self._rows[network]
            rows = _gather(slices, sorted(slices), {**MATCH_SCHEMA, "kh": pl.UInt64(), "gap": pl.Int64()})
            return matches_from_object_rows(rows)
        frames = [self.matches(n).with_columns(network=pl.lit(n)) for n in self.config.networks]
        return pl.concat(frames) if frames else _empty({**MATCH_SCHEMA, "network": pl.String()})

    def edges(self, networks: Iterable[str] | None = None) -> dict[str, pl.DataFrame]:
        """``{type: edges}`` of the held matches."""
        coaction = self.config.coaction
        return {
            network: edges_from_matches(
                self.matches(network), min_weight=coaction.min_weight, evidence_per_edge=coaction.evidence_per_edge
            )
            for network in (networks or self.config.networks)
        }

    def _distinct_actions(self, network: str) -> pl.DataFrame:
        slices = self._actions[network]
        schema = {k: v for k, v in ACTIVITY_ROW_SCHEMA.items() if k != "network"}
        return _gather(slices, sorted(slices), schema).unique("post_id", keep="first", maintain_order=True)

    def activity(self) -> pl.DataFrame:
        """``account_id, network, n_posts``: posts per account that took part in each type."""
        frames = [
            self._distinct_actions(network)
            .group_by("account_id")
            .agg(n_posts=pl.len().cast(pl.Int64))
            .with_columns(network=pl.lit(network))
            for network in self.config.networks
        ]
        return pl.concat(frames).select("account_id", "network", "n_posts")

    def posts(self) -> pl.DataFrame:
        """``post_id, account_id, created_at`` of the posts held (what campaign scores read)."""
        frames = [self._distinct_actions(network) for network in self.config.networks]
        return _posts_of_actions(frames)

    @property
    def retained_since_us(self) -> int | None:
        """No row older than this is held any more (buckets are dropped whole)."""
        if self.watermark_us is None:
            return None
        return self.watermark_us - self._horizon_us - self._bucket_us

    def held_rows(self) -> dict[str, int]:
        """Rows held now: per-object matches and actions."""
        return {
            "matches": sum(f.height for slices in self._rows.values() for f in slices.values()),
            "actions": sum(f.height for slices in self._actions.values() for f in slices.values()),
        }


def _compact_actions(rows: pl.DataFrame) -> pl.DataFrame:
    """One bucket of actions with each post once (a replay or a second worker repeats it)."""
    return rows.unique("post_id", keep="first", maintain_order=True).rechunk()


def pruned_account_graph(
    networks: Mapping[str, pl.DataFrame],
    activity: pl.DataFrame,
    *,
    min_co_actions: int,
    min_strength: float,
    quantile: float | None = None,
) -> nx.Graph:
    """``prune_graph(account_graph(networks, activity), ...)`` without building the unpruned graph.

    A horizon of a busy stream links hundreds of thousands of account pairs by chance, and all but
    a few hundred fall to the pruning; putting them all into networkx first costs most of a graph
    run (measured: 25 s of 48 s for 1.3 million pairs). Here the pairs are combined and pruned as
    frames, and only the kept edges become a graph, added in the very order in which
    :func:`~.graph.prune_graph` would add them (the order its iteration over the full graph yields
    them: by the first appearance of the earlier endpoint, then by pair), so that seeded Louvain
    sees the same graph and finds the same communities.
    """
    strengths = pair_strengths(networks, activity)
    pair = ["account_a", "account_b"]
    combined = (
        strengths.group_by(pair)
        .agg(weight=1.0 - (1.0 - pl.col("strength")).product(), co_actions=pl.min_horizontal("w_ab", "w_ba").sum())
        .sort(pair)
        .with_row_index("row")
    )
    # Where each account first appears as account_graph adds the sorted pairs: its node order.
    appears = pl.concat(
        [
            combined.select(node="account_a", at=pl.col("row").cast(pl.Int64) * 2),
            combined.select(node="account_b", at=pl.col("row").cast(pl.Int64) * 2 + 1),
        ]
    ).group_by("node").agg(pl.col("at").min())
    kept = (
        combined.filter((pl.col("co_actions") >= min_co_actions) & (pl.col("weight") >= min_strength))
        .join(appears.rename({"node": "account_a", "at": "at_a"}), on="account_a")
        .join(appears.rename({"node": "account_b", "at": "at_b"}), on="account_b")
        .with_columns(
            u=pl.when(pl.col("at_a") < pl.col("at_b")).then("account_a").otherwise("account_b"),
            v=pl.when(pl.col("at_a") < pl.col("at_b")).then("account_b").otherwise("account_a"),
            first=pl.min_horizontal("at_a", "at_b"),
        )
        .sort("first", "row")
    )
    # The per-type strengths only for the kept pairs (lists are the costly part of the aggregation).
    types = strengths.join(kept.select(pair), on=pair).group_by(pair).agg(
        networks=pl.col("network"), strengths=pl.col("strength")
    )
    kept = kept.join(types, on=pair, maintain_order="left")
    if quantile is not None and kept.height:
        cut = kept.get_column("weight").quantile(quantile, interpolation="lower")
        kept = kept.filter(pl.col("weight") >= cut)
    graph = nx.Graph()
    graph.add_edges_from(
        (u, v, {"weight": float(w), "co_actions": int(n), "types": dict(zip(types, values, strict=True))})
        for u, v, w, n, types, values in kept.select("u", "v", "weight", "co_actions", "networks", "strengths")
        .iter_rows()
    )
    return graph


def campaigns_from_state(
    state: CoActionState | ObjectMatchLedger,
    config: CampaignConfig | None = None,
    previous: Mapping[str, frozenset[str]] | None = None,
) -> CampaignResult:
    """The graph stage of :func:`~.graph.detect_campaigns`, over the state's horizon instead of a frame.

    Same steps and knobs (account graph, pruning, Louvain with a seed, stable ids from
    ``previous``, scores); on a state holding every post of a batch it gives the batch's result. An
    :class:`ObjectMatchLedger` fed by coordination workers serves as well as a state.
    ``machine_share`` is null: the stream's posts carry no machine-written probability (the
    coordinator can fill it in from the store).
    """
    config = config or CampaignConfig()
    coaction = state.config.coaction
    matches_by_type = {network: state.matches(network) for network in state.config.networks}
    networks = {
        network: edges_from_matches(
            matches, min_weight=coaction.min_weight, evidence_per_edge=coaction.evidence_per_edge
        )
        for network, matches in matches_by_type.items()
    }
    matches = pl.concat([m.with_columns(network=pl.lit(n)) for n, m in matches_by_type.items()])
    graph = pruned_account_graph(
        networks,
        state.activity(),
        min_co_actions=config.min_co_actions,
        min_strength=config.min_strength,
        quantile=config.quantile,
    )
    communities = find_communities(graph, resolution=config.resolution, seed=config.seed, min_size=config.min_size)
    members = assign_campaign_ids(communities, previous, min_jaccard=config.min_id_jaccard)
    campaigns = score_campaigns(members, graph, state.posts(), matches, probability_column=config.probability_column)
    return CampaignResult(networks=networks, matches=matches, graph=graph, campaigns=campaigns, members=members)
