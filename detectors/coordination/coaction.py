"""Co-action networks: which accounts did the same thing within a time window.

Semantics follow the QUT Digital Observatory's ``coordination_network_toolkit`` (MIT) so the
two can be compared edge for edge:

* Edges are **directed**: the weight of ``A -> B`` is the number of *distinct posts of A* that
  match *some* post of B whose timestamp lies within ``±window`` seconds, **inclusive** on both
  ends (QUT's ``e_2.timestamp between e_1.timestamp - w and e_1.timestamp + w``). ``A -> B`` and
  ``B -> A`` can differ.
* Self-loops are left out (QUT's export default); ``include_self_loops=True`` gives QUT's raw
  table, where every post matches itself.
* A post id that appears twice counts once, first row wins (QUT's ``insert or ignore``).
* Per network type, what "the same thing" means (and which posts take part):

  =============  =========================  ========================================  ===============
  Chorus         QUT                        shared object                             posts
  =============  =========================  ========================================  ===============
  co_repost      co_retweet                 ``repost_of``                             reposts
  co_text        co_tweet                   :func:`~.text.normalised_text`            non-reposts
  co_reply       co_reply                   ``reply_to``                              non-reposts
  co_link        co_link                    each distinct url of the post             non-reposts
  co_hashtag     (none; QUT issue #30)      :func:`~.text.hashtag_set` (whole set)    non-reposts
  co_similar     co_similar_tweet           token sets with Jaccard >= threshold      non-reposts
  co_paraphrase  (none)                     embeddings with cosine >= threshold       non-reposts
                                                                                      with embedding
  =============  =========================  ========================================  ===============

  ``co_paraphrase`` is opt-in (in :data:`KNOWN_NETWORK_TYPES`, not the default
  :data:`NETWORK_TYPES`): it needs an ``embedding`` column (all-MiniLM-L6-v2 sentence embeddings,
  which the AI-text detector computes once per post; ``chorus coord`` computes them when asked for
  this type and the input has none). Posts without an embedding (null, NaN or all-zero) take no
  part, and without the column the network is empty, so asking for it never fails. Similar
  embeddings are found with SimHash LSH plus exact cosine verification (see :mod:`.paraphrase`).

  Deliberate differences: ``co_link`` never links posts through an empty url (QUT's CSV loader
  turns an empty ``urls`` field into a shared url ``""``); ``co_similar`` finds similar token sets
  with MinHash/LSH plus exact Jaccard verification instead of comparing every pair, so it can miss
  a pair LSH did not propose (see :mod:`.minhash`), and posts with fewer than ``min_tokens``
  tokens never match (QUT's CLI default ``--min_document_size_similarity 1``; its Python default
  divides by zero on an empty set). ``co_paraphrase`` has no QUT counterpart and shares
  ``co_similar``'s semantics with "same object" read as "embeddings with cosine >= threshold".

How it is computed, and why it stays fast at a one-day window: QUT self-joins all posts sharing
an object and filters on time, which is quadratic in the posts per object and grows with the
window. Here each post is paired only with the *accounts* that share its object (``posts x
accounts`` per object, not ``posts x posts``), and for each (post, account) that account's nearest
post on the object is found by binary search (an as-of join); it matches when the gap is within
the window. The cost does not depend on the window, and the nearest post is the evidence for the
edge.

Two steps, so that several windows and types of one batch do not repeat work:
:func:`prepare_posts` derives once what the QUT toolkit derives while loading its database (or
caches there on first use): the first row per post id, integer times, posts numbered in time
order, integer account ids, and per type the shared objects (normalised texts, stripped urls,
hashtag and token sets, distinct embeddings) as integer codes. The network step
(``co_action_edges(prepared, ...)``) then works on integers only: objects shared by one account
are dropped, the (object, account) groups are laid out as one sorted 64-bit key (group, time),
every (post, other account on its object) is one ``searchsorted``, and edges are runs of one
integer sort, in numpy; strings come back only for the edges and their evidence. Every function
also takes a posts frame and prepares it itself.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from detectors.coordination.minhash import similar_set_pairs
from detectors.coordination.paraphrase import (
    DEFAULT_NUM_BITS,
    LSH_COST_PER_VECTOR,
    embedding_matrix,
    normalise_rows,
    similar_vector_pairs,
)
from detectors.coordination.text import hashtag_set, normalised_text, token_set

#: Chorus network type -> the QUT toolkit's name for the same network (where it has one).
QUT_NETWORK_NAMES: dict[str, str] = {
    "co_repost": "co_retweet",
    "co_text": "co_tweet",
    "co_reply": "co_reply",
    "co_link": "co_link",
    "co_similar": "co_similar_tweet",
}

#: The types computed by default: they need only the post schema.
NETWORK_TYPES: tuple[str, ...] = ("co_repost", "co_text", "co_reply", "co_link", "co_hashtag", "co_similar")
#: Types computed only when asked for: ``co_paraphrase`` needs per-post sentence embeddings, which
#: most inputs lack and which cost a model call per post to compute (see the module docstring).
OPTIONAL_NETWORK_TYPES: tuple[str, ...] = ("co_paraphrase",)
#: Every type the functions here accept.
KNOWN_NETWORK_TYPES: tuple[str, ...] = NETWORK_TYPES + OPTIONAL_NETWORK_TYPES

#: How co_paraphrase may search for pairs (``CoActionConfig.paraphrase_search``), and the index
#: cost per vector each one hands to :func:`~.paraphrase.similar_vector_pairs` (0: always the
#: index; infinite: always exact).
PARAPHRASE_SEARCHES: dict[str, float] = {"hybrid": LSH_COST_PER_VECTOR, "lsh": 0.0, "exact": math.inf}
#: The posts column holding sentence embeddings (list or array of floats, one vector per post).
EMBEDDING_COLUMN = "embedding"

#: Default window per type, in seconds. 60 s is the window most coordination studies start from
#: (Pacheco et al. 2021, CooRnet's data-driven windows land near it for reposts); hashtag sets and
#: near-duplicate text and paraphrases are slower behaviours, so they get longer defaults.
DEFAULT_WINDOWS_S: dict[str, float] = {
    "co_repost": 60.0,
    "co_text": 60.0,
    "co_reply": 60.0,
    "co_link": 60.0,
    "co_hashtag": 300.0,
    "co_similar": 300.0,
    "co_paraphrase": 300.0,
}

EVIDENCE_DTYPE = pl.Struct(
    {
        "post_1": pl.String,
        "time_1": pl.Datetime("us", "UTC"),
        "post_2": pl.String,
        "time_2": pl.Datetime("us", "UTC"),
    }
)

EDGE_SCHEMA: dict[str, pl.DataType] = {
    "user_1": pl.String(),
    "user_2": pl.String(),
    "weight": pl.Int64(),
    "evidence": pl.List(EVIDENCE_DTYPE),
}

MATCH_SCHEMA: dict[str, pl.DataType] = {
    "post_id": pl.String(),
    "account_id": pl.String(),
    "t_us": pl.Int64(),
    "match_post_id": pl.String(),
    "match_account_id": pl.String(),
    "match_t_us": pl.Int64(),
}


@dataclass(frozen=True)
class CoActionConfig:
    """Every knob of the co-action stage, with documented defaults.

    ``windows_s`` overrides :data:`DEFAULT_WINDOWS_S` per type. ``min_weight`` drops edges with
    fewer matched posts (QUT's API default is 1, its CLI's 2). ``evidence_per_edge`` is how many
    matched post pairs each edge keeps (the earliest ones). ``similarity_threshold``,
    ``min_tokens``, ``num_perm`` and ``seed`` configure co_similar; ``paraphrase_threshold``,
    ``paraphrase_bits``, ``paraphrase_search`` and ``seed`` configure co_paraphrase.

    ``paraphrase_search`` is how co_paraphrase finds its pairs: ``"hybrid"`` (the default: time
    slices sparse enough are compared exactly, dense ones through the SimHash index, see
    :func:`~.paraphrase.similar_vector_pairs`), ``"lsh"`` (the index everywhere: what the stream
    does, since a stream cannot know how dense a slice will be; it finds the pairs a batch with
    ``"lsh"`` finds, exactly) or ``"exact"`` (brute force within the window: every pair, slow on
    long windows).

    ``paraphrase_threshold`` (cosine of all-MiniLM-L6-v2 embeddings, default 0.9) is set where a
    pair is a rewording of one message rather than two posts on one topic. Measured with the
    encoder: the simulator's campaign paraphrases (word swaps, "Share" -> "Spread this", "covered
    up" -> "hidden") score 0.95-0.99 and a reordered sentence ("The election was stolen and the
    media is hiding it" / "Media is covering up that the election was stolen") 0.92, while a
    free rewording ("Great game last night, the defence was unbelievable" / "What a match
    yesterday, our defense was incredible") scores 0.78, two posts on one topic ("The harbour
    scandal is being covered up" / "The harbour festival was great fun this year") 0.36 and
    unrelated posts about 0. Organic posts on a trending topic land between 0.5 and 0.85, so 0.9
    keeps them out; lower it (0.8) to catch freer rewordings at the price of more chance pairs.
    Like every bag-of-meaning score it ignores negation ("Vote NO/YES on the tax plan": 0.94), so
    opposite stances in the same words link, as they do in co_similar.
    """

    windows_s: Mapping[str, float] = field(default_factory=dict)
    min_weight: int = 1
    evidence_per_edge: int = 5
    similarity_threshold: float = 0.8
    min_tokens: int = 1
    num_perm: int = 96
    paraphrase_threshold: float = 0.9
    paraphrase_bits: int = DEFAULT_NUM_BITS
    paraphrase_search: str = "hybrid"
    seed: int = 0
    include_self_loops: bool = False

    def __post_init__(self) -> None:
        if self.paraphrase_search not in PARAPHRASE_SEARCHES:
            raise ValueError(
                f"paraphrase_search = {self.paraphrase_search!r}: use one of {', '.join(PARAPHRASE_SEARCHES)}"
            )

    def window_s(self, network: str) -> float:
        """The window for one network type, in seconds."""
        if network not in KNOWN_NETWORK_TYPES:
            raise ValueError(f"unknown network type {network!r}; known: {', '.join(KNOWN_NETWORK_TYPES)}")
        return float(self.windows_s.get(network, DEFAULT_WINDOWS_S[network]))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> CoActionConfig:
        """Build from a parsed config file section; unknown keys are an error, not ignored."""
        known = set(cls.__dataclass_fields__)
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown co-action settings {sorted(unknown)}; known: {sorted(known)}")
        return cls(**dict(values))


# --------------------------------------------------------------------------------------------
# Posts -> actions (post, account, time, shared object)
# --------------------------------------------------------------------------------------------


def _base(posts: pl.DataFrame) -> pl.LazyFrame:
    """First row per post id, with time as integer microseconds (exact window arithmetic)."""
    return (
        posts.lazy()
        .unique("post_id", keep="first", maintain_order=True)
        .with_columns(t_us=pl.col("created_at").dt.epoch("us"))
    )


def _not_repost() -> pl.Expr:
    return pl.col("repost_of").is_null()


_POST_COLUMNS = ("post_id", "account_id", "t_us")
#: The post columns the shared objects are derived from.
_DERIVED_FROM = ("repost_of", "text", "reply_to", "urls", "hashtags")


def _keyed(base: pl.LazyFrame, network: str, keep: Sequence[str]) -> pl.LazyFrame:
    """``keep`` columns plus ``key`` (String): the rows of ``base`` taking part in one type, by the object shared.

    Every type but ``co_paraphrase`` (see :func:`_embedding_keys`). A post with several urls has one
    row per url; duplicates of a (post, key) are left to the caller.
    """
    if network == "co_repost":
        out = base.filter(pl.col("repost_of").is_not_null()).select(*keep, key=pl.col("repost_of"))
    elif network == "co_text":
        out = base.filter(_not_repost() & pl.col("text").is_not_null()).select(*keep, key=normalised_text("text"))
    elif network == "co_reply":
        out = base.filter(_not_repost() & pl.col("reply_to").is_not_null()).select(*keep, key=pl.col("reply_to"))
    elif network == "co_link":
        out = (
            base.filter(_not_repost())
            .select(*keep, pl.col("urls").alias("key"))
            .explode("key")
            .with_columns(pl.col("key").str.strip_chars())
            # No phantom link: a post without urls, or with an empty url, shares nothing.
            .filter(pl.col("key").is_not_null() & (pl.col("key") != ""))
        )
    elif network == "co_hashtag":
        out = base.filter(_not_repost()).select(*keep, key=hashtag_set("hashtags")).filter(pl.col("key").is_not_null())
    elif network == "co_similar":
        out = base.filter(_not_repost() & pl.col("text").is_not_null()).select(
            *keep, key=token_set("text").list.join(" ")
        )
    else:
        raise ValueError(f"unknown network type {network!r}; known: {', '.join(KNOWN_NETWORK_TYPES)}")
    return out.with_columns(pl.col("key").cast(pl.String))


def post_actions(posts: pl.DataFrame, network: str) -> pl.DataFrame:
    """The posts taking part in one network type, each with the object it shares (``key``).

    Returns ``post_id, account_id, t_us, key`` (a post with several urls has one row per url).
    For ``co_similar`` the key is the post's token set joined by spaces (identical sets); for
    ``co_paraphrase`` the number of its distinct embedding (see :func:`paraphrase_actions`).
    """
    if network == "co_paraphrase":
        actions, _ = paraphrase_actions(posts)
        return actions.with_columns(pl.col("key").cast(pl.String))
    return (
        _keyed(_base(posts), network, _POST_COLUMNS)
        .unique(["post_id", "key"], keep="first", maintain_order=True)
        .collect()
    )


_PARAPHRASE_ACTIONS_SCHEMA: dict[str, pl.DataType] = {
    "post_id": pl.String(),
    "account_id": pl.String(),
    "t_us": pl.Int64(),
    "key": pl.UInt32(),
}


def _embedding_keys(base: pl.DataFrame, keep: Sequence[str]) -> tuple[pl.DataFrame, np.ndarray] | None:
    """``keep`` columns plus ``key`` (UInt32, the row of the returned vectors) for posts with a usable embedding.

    ``base`` is a collected :func:`_base` frame with an ``embedding`` column. None when no post has one.
    """
    rows = base.filter(_not_repost() & pl.col(EMBEDDING_COLUMN).is_not_null())
    if rows.height == 0:
        return None
    valid, unit = normalise_rows(embedding_matrix(rows[EMBEDDING_COLUMN]))
    if not valid.any():
        return None
    # One id per distinct vector: rows compared as raw bytes, ids in byte order (deterministic).
    row_bytes = np.ascontiguousarray(unit).view(np.dtype((np.void, unit.shape[1] * unit.itemsize))).ravel()
    _, first, inverse = np.unique(row_bytes, return_index=True, return_inverse=True)
    keyed = rows.filter(pl.Series(valid)).select(*keep, key=pl.Series(inverse.reshape(-1).astype(np.uint32)))
    return keyed, unit[first]


def paraphrase_actions(posts: pl.DataFrame) -> tuple[pl.DataFrame, np.ndarray]:
    """The posts taking part in co_paraphrase, keyed by their distinct embedding, and those embeddings.

    Returns ``(actions, vectors)``: ``actions`` is ``post_id, account_id, t_us, key`` for the
    non-reposts with a usable embedding (not null, finite, not all zero), ``key`` (UInt32) the row of
    ``vectors`` ([distinct, dim] float32, L2-normalised) holding the post's embedding. Identical
    embeddings (the same text) share one row, so a copied message is one vector for the index.
    Without an ``embedding`` column there are no actions.
    """
    empty = pl.DataFrame(schema=_PARAPHRASE_ACTIONS_SCHEMA), np.zeros((0, 0), dtype=np.float32)
    if EMBEDDING_COLUMN not in posts.columns:
        return empty
    base = _base(posts).select(*_POST_COLUMNS, "repost_of", EMBEDDING_COLUMN).collect()
    return _embedding_keys(base, _POST_COLUMNS) or empty


# --------------------------------------------------------------------------------------------
# Prepared posts: the per-post derivations, once per batch
# --------------------------------------------------------------------------------------------

_ROW_SCHEMA: dict[str, pl.DataType] = {"row": pl.UInt32(), "match_row": pl.UInt32()}
_ACTION_SCHEMA: dict[str, pl.DataType] = {
    "row": pl.UInt32(),
    "account": pl.UInt32(),
    "t_us": pl.Int64(),
    "code": pl.UInt32(),
}
_TOKEN_SET_SCHEMA: dict[str, pl.DataType] = {"set_id": pl.UInt32(), "tokens": pl.List(pl.String)}


@dataclass(frozen=True)
class PreparedPosts:
    """A batch of posts with what every window and type needs derived once (see :func:`prepare_posts`).

    ``posts``: ``post_id, account, t_us``, one row per post id (first row wins) in ``(t_us,
    post_id)`` order, so a post is its row number and a smaller number is an earlier post.
    ``accounts``: the account ids in sorted order; ``account`` is a position in it, so integer
    order is the ids' order. ``actions``: per prepared type, ``row, account, t_us, code`` (UInt32),
    ``code`` numbering the shared object (normalised text, url, token set, ...), in ``(t_us,
    row)`` order. ``token_sets`` (co_similar): ``set_id, tokens``, the distinct non-empty token
    sets (``code`` of co_similar is a ``set_id``). ``vectors`` (co_paraphrase): the distinct
    L2-normalised embeddings (``code`` is a row).
    """

    posts: pl.DataFrame
    accounts: pl.Series
    actions: Mapping[str, pl.DataFrame]
    token_sets: pl.DataFrame
    vectors: np.ndarray

    def network_actions(self, network: str) -> pl.DataFrame:
        """The prepared actions of one type; an error naming the fix when it was not prepared."""
        if network not in self.actions:
            if network not in KNOWN_NETWORK_TYPES:
                raise ValueError(f"unknown network type {network!r}; known: {', '.join(KNOWN_NETWORK_TYPES)}")
            raise ValueError(
                f"{network} was not prepared (prepared: {', '.join(self.actions) or 'none'}); "
                f"pass it in prepare_posts(posts, networks=[..., {network!r}])"
            )
        return self.actions[network]


def _takes_part(network: str, columns: Sequence[str]) -> pl.Expr:
    """A cheap superset of the posts taking part in one type (the exact rule is :func:`_keyed`'s)."""
    if network == "co_repost":
        return pl.col("repost_of").is_not_null()
    if network == "co_paraphrase" and EMBEDDING_COLUMN not in columns:
        return pl.lit(False)
    needs = {
        "co_text": pl.col("text").is_not_null(),
        "co_reply": pl.col("reply_to").is_not_null(),
        "co_link": pl.col("urls").list.len() > 0,
        "co_hashtag": pl.col("hashtags").list.len() > 0,
        "co_similar": pl.col("text").is_not_null(),
        "co_paraphrase": pl.col(EMBEDDING_COLUMN).is_not_null(),
    }[network]
    return _not_repost() & needs


def prepare_posts(posts: pl.DataFrame, networks: Iterable[str] = NETWORK_TYPES) -> PreparedPosts:
    """Derive, once, what the network step of each type reads from the posts.

    What the QUT toolkit does while loading its database (or caches there on first use) happens
    here: first row per post id, integer times, posts numbered in time order, integer account
    ids, and per type the shared objects as integer codes (normalised texts, stripped urls,
    hashtag sets, token sets, distinct embeddings). Reuse the result for every window and type:
    ``co_action_edges(prepared, network, config)`` then only computes the network.
    """
    networks = tuple(dict.fromkeys(networks))
    for network in networks:
        if network not in KNOWN_NETWORK_TYPES:
            raise ValueError(f"unknown network type {network!r}; known: {', '.join(KNOWN_NETWORK_TYPES)}")
    used = [c for c in (*_POST_COLUMNS[:2], "created_at", *_DERIVED_FROM, EMBEDDING_COLUMN) if c in posts.columns]
    # Only posts that can take part in a requested type are numbered (row numbers are compared
    # within a type only). Collected before sorting: polars runs a lazy sort after a keep-first
    # unique far slower.
    taking_part = pl.any_horizontal(*(_takes_part(n, posts.columns) for n in networks)) if networks else pl.lit(False)
    base = (
        _base(posts.select(used))
        .filter(pl.col("account_id").is_not_null() & pl.col("t_us").is_not_null() & taking_part)
        .collect()
        .sort("t_us", "post_id")
        .with_row_index("row")
    )
    accounts = base["account_id"].unique().sort()
    base = base.with_columns(account=pl.col("account_id").cast(pl.Enum(accounts)).to_physical().cast(pl.UInt32))
    keep = ("row", "account", "t_us")
    exact = [n for n in networks if n not in ("co_similar", "co_paraphrase")]
    plans = [
        _keyed(base.lazy(), n, keep)
        .unique(["row", "key"], keep="first", maintain_order=True)
        # Dense codes from 0 (the network step indexes arrays by them).
        .select(*keep, code=pl.col("key").cast(pl.Categorical).to_physical().rank("dense") - 1)
        for n in exact
    ]
    if "co_similar" in networks:
        plans.append(_keyed(base.lazy(), "co_similar", keep))
    collected = pl.collect_all(plans)
    actions = dict(zip(exact, collected, strict=False))
    token_sets = pl.DataFrame(schema=_TOKEN_SET_SCHEMA)
    if "co_similar" in networks:
        keyed = collected[-1]
        sets = (
            keyed.select(set_key="key")
            .unique()
            .filter(pl.col("set_key") != "")
            .sort("set_key")
            .with_row_index("set_id")
        )
        actions["co_similar"] = keyed.join(sets, left_on="key", right_on="set_key", maintain_order="left").select(
            *keep, code="set_id"
        )
        token_sets = sets.select("set_id", tokens=pl.col("set_key").str.split(" "))
    vectors = np.zeros((0, 0), dtype=np.float32)
    if "co_paraphrase" in networks:
        found = _embedding_keys(base, keep) if EMBEDDING_COLUMN in base.columns else None
        if found is None:
            actions["co_paraphrase"] = pl.DataFrame(schema=_ACTION_SCHEMA)
        else:
            actions["co_paraphrase"], vectors = found[0].rename({"key": "code"}), found[1]
    return PreparedPosts(
        posts=base.select("post_id", "account", "t_us"),
        accounts=accounts,
        actions={n: actions[n].cast(_ACTION_SCHEMA) for n in networks},  # type: ignore[arg-type]
        token_sets=token_sets,
        vectors=vectors,
    )


# --------------------------------------------------------------------------------------------
# Actions -> post-level matches -> edges
# --------------------------------------------------------------------------------------------


def _window_us(window_s: float) -> int:
    if window_s < 0:
        raise ValueError(f"time window must be >= 0 seconds, got {window_s}")
    return round(window_s * 1_000_000)


#: "No such post" as a time gap (larger than any window).
_NO_GAP = np.iinfo(np.int64).max


def _segments(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For consecutive segments of ``counts`` items: each item's segment and its position in it."""
    counts = counts.astype(np.int64, copy=False)
    segment = np.repeat(np.arange(len(counts)), counts)
    within = np.arange(len(segment)) - np.repeat(np.cumsum(counts) - counts, counts)
    return segment, within


def _run_starts(sorted_values: np.ndarray) -> np.ndarray:
    """``True`` where a run of equal values starts in a sorted array."""
    starts = np.ones(len(sorted_values), dtype=bool)
    starts[1:] = sorted_values[1:] != sorted_values[:-1]
    return starts


def _match_rows(
    actions: pl.DataFrame,
    window_us: int,
    *,
    related: pl.DataFrame | None = None,
    several_per_post: bool = False,
    include_self_loops: bool = False,
) -> pl.DataFrame:
    """``row, match_row``: for each post and each other account, that account's nearest matching post.

    ``actions`` is prepared (``row, account, t_us, code`` in ``(t_us, row)`` order, codes dense from
    0). A post matches the posts with its own code, or with ``related`` codes (``key, match_key``,
    identity pairs included) when given. The module docstring's as-of join, in numpy: the posts of
    each (object, account) group lie one after the other in time order under one sorted 64-bit
    key (group, time rank), so one binary search per (post, account on its object) finds the
    nearest post at or before it and the first after it. The nearest wins; a tie goes to the later
    post, and among posts at the same time to the last (highest post id), as the streaming state
    does. When a post reaches an account through several codes (``several_per_post``: several
    urls, or ``related``) the nearest wins, then the earlier post. Returns one row per (post,
    matched account), in no particular order.
    """
    if actions.height == 0:
        return pl.DataFrame(schema=_ROW_SCHEMA)
    row, account = actions["row"].to_numpy(), actions["account"].to_numpy()
    t, code = actions["t_us"].to_numpy(), actions["code"].to_numpy()
    n_codes = int(code.max()) + 1
    if related is not None:
        rel_key = related["key"].cast(pl.Int64).to_numpy()
        rel_match = related["match_key"].cast(pl.Int64).to_numpy()
        n_codes = max(n_codes, int(rel_key.max(initial=0)) + 1, int(rel_match.max(initial=0)) + 1)
    elif not include_self_loops:
        # An object only one account shared links nobody: most objects, and the cheapest rows to drop.
        some_account = np.zeros(n_codes, dtype=account.dtype)
        some_account[code] = account  # any one of each object's accounts
        shared = np.bincount(code, weights=account != some_account[code], minlength=n_codes)[code] > 0
        row, account, t, code = row[shared], account[shared], t[shared], code[shared]
        if len(row) == 0:
            return pl.DataFrame(schema=_ROW_SCHEMA)
    # Groups: one per (object, account), numbered in (code, account) order; their posts in time order.
    n_accounts = int(account.max()) + 1
    group_key = code.astype(np.int64) * n_accounts + account
    by_group = np.argsort(group_key, kind="stable")
    sorted_key = group_key[by_group]
    group_first = _run_starts(sorted_key)
    group_code, group_account = np.divmod(sorted_key[group_first], n_accounts)
    time_rank = np.cumsum(_run_starts(t)) - 1  # t is in time order
    n_times = int(time_rank[-1]) + 1
    # One sorted integer per post: (group, time). Posts at one time in one group: the last one counts.
    position = (np.cumsum(group_first) - 1) * n_times + time_rank[by_group]
    same_time = np.flatnonzero(np.append(position[1:] != position[:-1], True))
    last_at_time = same_time[np.cumsum(_run_starts(position)) - 1]
    t_sorted = t[by_group]
    # Candidates: every (group, post on an object the group's object matches), group by group and in
    # time order within an object, so the binary searches below run over sorted queries.
    by_code = np.argsort(code, kind="stable")
    code_posts = np.zeros(n_codes + 1, dtype=np.int64)
    np.cumsum(np.bincount(code, minlength=n_codes), out=code_posts[1:])
    if related is None:
        group, source = np.arange(len(group_code)), group_code
    else:
        by_match = np.argsort(rel_match, kind="stable")
        rel_key, rel_match = rel_key[by_match], rel_match[by_match]
        match_starts = np.zeros(n_codes + 1, dtype=np.int64)
        np.cumsum(np.bincount(rel_match, minlength=n_codes), out=match_starts[1:])
        group, within = _segments(match_starts[group_code + 1] - match_starts[group_code])
        source = rel_key[match_starts[group_code[group]] + within]
    segment, within = _segments(code_posts[source + 1] - code_posts[source])
    group, post = group[segment], by_code[code_posts[source[segment]] + within]
    if not include_self_loops:
        other = group_account[group] != account[post]
        post, group = post[other], group[other]
    # Nearest post of the group: the last at or before the post's time, or the last of the first time after.
    lowest = group * n_times
    query = lowest + time_rank[post]
    after = np.searchsorted(position, query, side="right")
    before = np.maximum(after - 1, 0)
    has_before = (after > 0) & (position[before] >= lowest)
    after = np.minimum(after, len(position) - 1)  # the clamped one is not after the query: no later post
    has_after = (position[after] > query) & (position[after] < lowest + n_times)
    after = last_at_time[after]
    t_post = t[post]
    gap_before = np.where(has_before, t_post - t_sorted[before], _NO_GAP)
    gap_after = np.where(has_after, t_sorted[after] - t_post, _NO_GAP)
    take_after = gap_after <= gap_before
    gap = np.where(take_after, gap_after, gap_before)
    nearest = np.where(take_after, after, before)
    found = gap <= window_us
    post_row = row[post[found]]
    match_row = row[by_group[nearest[found]]]
    match_account, gap = group_account[group[found]], gap[found]
    if several_per_post or related is not None:
        order = np.lexsort((match_row, gap, match_account, post_row))
        post_row, match_row, match_account = post_row[order], match_row[order], match_account[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = (post_row[1:] != post_row[:-1]) | (match_account[1:] != match_account[:-1])
        post_row, match_row = post_row[first], match_row[first]
    return pl.DataFrame({"row": post_row, "match_row": match_row}, schema=_ROW_SCHEMA)


def _as_time(column: str) -> pl.Expr:
    return pl.from_epoch(pl.col(column), time_unit="us").dt.replace_time_zone("UTC")


def _edges_from_rows(
    prepared: PreparedPosts, matched: pl.DataFrame, *, min_weight: int = 1, evidence_per_edge: int = 5
) -> pl.DataFrame:
    """:func:`edges_from_matches` on ``row, match_row`` pairs of prepared posts (integers until the end).

    Account codes sort like the ids and rows like ``(time, post id)``, so sorting the pairs by
    (account, matched account, row) is ``edges_from_matches``'s order; an edge is a run of pairs.
    """
    if matched.height == 0:
        return pl.DataFrame(schema=EDGE_SCHEMA)
    row, match_row = matched["row"].to_numpy(), matched["match_row"].to_numpy()
    account = prepared.posts["account"].to_numpy()
    n_accounts = len(prepared.accounts)
    pair = account[row].astype(np.int64) * n_accounts + account[match_row]
    n_rows = prepared.posts.height
    # One integer key where it fits (faster than a lexsort; pairs are distinct, so any sort is stable).
    order = np.argsort(pair * n_rows + row) if n_accounts**2 * n_rows < 2**62 else np.lexsort((row, pair))
    pair, row, match_row = pair[order], row[order], match_row[order]
    starts = np.flatnonzero(_run_starts(pair))
    weight = np.diff(np.append(starts, len(pair)))
    strong = weight >= min_weight
    starts, weight = starts[strong], weight[strong]
    user_1, user_2 = np.divmod(pair[starts], n_accounts)
    edge, within = _segments(np.minimum(weight, max(evidence_per_edge, 0)))
    shown = starts[edge] + within
    posts = prepared.posts
    first, second = posts[row[shown]], posts[match_row[shown]]
    evidence = (
        pl.DataFrame(
            {
                "edge": edge,
                "post_1": first["post_id"],
                "t_1": first["t_us"],
                "post_2": second["post_id"],
                "t_2": second["t_us"],
            }
        )
        .group_by("edge", maintain_order=True)
        .agg(evidence=pl.struct("post_1", time_1=_as_time("t_1"), post_2="post_2", time_2=_as_time("t_2")))
    )
    edges = pl.DataFrame(
        {
            "edge": np.arange(len(starts)),
            "user_1": prepared.accounts.gather(user_1),
            "user_2": prepared.accounts.gather(user_2),
            "weight": weight.astype(np.int64),
        }
    )
    return (
        edges.join(evidence, on="edge", how="left", maintain_order="left")
        .select("user_1", "user_2", "weight", pl.col("evidence").fill_null([]))
        .cast(EDGE_SCHEMA)  # type: ignore[arg-type]
    )


def _matches_from_rows(prepared: PreparedPosts, matched: pl.DataFrame) -> pl.DataFrame:
    """``row, match_row`` pairs of prepared posts as post-level matches (:data:`MATCH_SCHEMA`)."""
    posts, names = prepared.posts, prepared.accounts
    account = posts["account"]
    matched = matched.with_columns(match_account=account.gather(matched["match_row"])).sort("row", "match_account")
    first, second = posts[matched["row"]], posts[matched["match_row"]]
    return pl.DataFrame(
        {
            "post_id": first["post_id"],
            "account_id": names.gather(first["account"]),
            "t_us": first["t_us"],
            "match_post_id": second["post_id"],
            "match_account_id": names.gather(second["account"]),
            "match_t_us": second["t_us"],
        },
        schema=MATCH_SCHEMA,
    )


def match_actions(
    actions: pl.DataFrame,
    window_s: float,
    *,
    related_keys: pl.DataFrame | None = None,
    include_self_loops: bool = False,
) -> pl.DataFrame:
    """For each post and each other account, that account's nearest matching post in the window.

    ``actions`` is ``post_id, account_id, t_us, key``. A post matches posts with the same key, or,
    when ``related_keys`` (``key, match_key``) is given, posts whose key is related to its own
    (co_similar: the similar token sets; include the identity pairs for exact matches).
    Returns one row per (post, matched account) with the nearest matched post (ties broken by
    post id): ``post_id, account_id, t_us, match_post_id, match_account_id, match_t_us``.
    """
    window_us = _window_us(window_s)
    if actions.height == 0:
        return pl.DataFrame(schema=MATCH_SCHEMA)
    # Encode as prepared posts: rows in (time, post id) order, account and key codes.
    rows = actions.sort("t_us", "post_id")
    posts = rows.unique("post_id", keep="first", maintain_order=True).with_row_index("row")
    accounts = posts["account_id"].unique().sort()
    keys = [actions.select("key")]
    if related_keys is not None:
        keys += [related_keys.select("key"), related_keys.select(key="match_key")]
    codes = pl.concat(keys).unique().with_row_index("code")
    encoded = (
        rows.join(posts.select("post_id", "row"), on="post_id", maintain_order="left")
        .join(codes, on="key", maintain_order="left")
        .select("row", account=pl.col("account_id").cast(pl.Enum(accounts)).to_physical(), t_us="t_us", code="code")
        .cast(_ACTION_SCHEMA)  # type: ignore[arg-type]
    )
    related = None
    if related_keys is not None:
        related = (
            related_keys.join(codes, on="key")
            .join(codes.rename({"key": "match_key", "code": "match_code"}), on="match_key")
            .select(key="code", match_key="match_code")
        )
    matched = _match_rows(
        encoded,
        window_us,
        related=related,
        several_per_post=encoded["row"].n_unique() < encoded.height,
        include_self_loops=include_self_loops,
    )
    prepared = PreparedPosts(
        posts=posts.select(
            "post_id", account=pl.col("account_id").cast(pl.Enum(accounts)).to_physical().cast(pl.UInt32), t_us="t_us"
        ),
        accounts=accounts,
        actions={},
        token_sets=pl.DataFrame(schema=_TOKEN_SET_SCHEMA),
        vectors=np.zeros((0, 0), dtype=np.float32),
    )
    return _matches_from_rows(prepared, matched)


def edges_from_matches(matches: pl.DataFrame, *, min_weight: int = 1, evidence_per_edge: int = 5) -> pl.DataFrame:
    """Aggregate post-level matches into QUT-style directed edges with evidence.

    Returns ``user_1, user_2, weight, evidence`` sorted by ``user_1, user_2``; ``evidence`` holds
    the earliest ``evidence_per_edge`` matched pairs ``(post_1, time_1, post_2, time_2)``.
    """
    if matches.height == 0:
        return pl.DataFrame(schema=EDGE_SCHEMA)
    evidence = pl.struct(
        pl.col("post_id").alias("post_1"),
        _as_time("t_us").alias("time_1"),
        pl.col("match_post_id").alias("post_2"),
        _as_time("match_t_us").alias("time_2"),
    )
    return (
        matches.lazy()
        .sort("account_id", "match_account_id", "t_us", "post_id")
        .group_by("account_id", "match_account_id", maintain_order=True)
        .agg(weight=pl.len().cast(pl.Int64), evidence=evidence.head(evidence_per_edge))
        .filter(pl.col("weight") >= min_weight)
        .rename({"account_id": "user_1", "match_account_id": "user_2"})
        .collect()
    )


# --------------------------------------------------------------------------------------------
# One function per network type, and all of them at once
# --------------------------------------------------------------------------------------------


def _prepared(posts: pl.DataFrame | PreparedPosts, networks: Iterable[str]) -> PreparedPosts:
    return posts if isinstance(posts, PreparedPosts) else prepare_posts(posts, networks)


def _network_rows(prepared: PreparedPosts, network: str, config: CoActionConfig) -> pl.DataFrame:
    """The network step of one type on prepared posts: ``row, match_row`` pairs."""
    window_us = _window_us(config.window_s(network))
    actions = prepared.network_actions(network)
    loops = config.include_self_loops
    if network == "co_similar":
        return _similar_rows(prepared, actions, window_us, config)
    if network == "co_paraphrase":
        return _paraphrase_rows(prepared, actions, window_us, config)
    return _match_rows(actions, window_us, several_per_post=network == "co_link", include_self_loops=loops)


def _similar_rows(
    prepared: PreparedPosts, actions: pl.DataFrame, window_us: int, config: CoActionConfig
) -> pl.DataFrame:
    """co_similar: exact token-set identity plus LSH-found similar sets, then the window match."""
    sets = prepared.token_sets.filter(pl.col("tokens").list.len() >= max(config.min_tokens, 1))
    if sets.height < prepared.token_sets.height:
        actions = actions.join(sets.select(code="set_id"), on="code", how="semi", maintain_order="left")
    if actions.height == 0:
        return pl.DataFrame(schema=_ROW_SCHEMA)
    # Only sets whose posts lie in the same or adjacent window-wide slices can match: no pair is lost.
    slices = actions.select(set_id="code", slice=pl.col("t_us") // max(window_us, 1))
    similar = similar_set_pairs(
        sets, config.similarity_threshold, num_perm=config.num_perm, seed=config.seed, slices=slices
    )
    related = pl.concat(
        [
            sets.select(key="set_id", match_key="set_id"),
            similar.select(key="set_id", match_key="match_set_id"),
        ]
    )
    return _match_rows(actions, window_us, related=related, include_self_loops=config.include_self_loops)


def _paraphrase_rows(
    prepared: PreparedPosts, actions: pl.DataFrame, window_us: int, config: CoActionConfig
) -> pl.DataFrame:
    """co_paraphrase: identical embeddings plus LSH-found similar ones, then the window match.

    The index only pairs vectors occurring in the same or adjacent window-wide time slices: two
    posts within ``±window`` always are, so this bounds the work without losing a match.
    """
    if actions.height == 0:
        return pl.DataFrame(schema=_ROW_SCHEMA)
    vectors = prepared.vectors
    slice_us = max(window_us, 1)
    slices = actions.select(vector_id="code", slice=pl.col("t_us") // slice_us)
    similar = similar_vector_pairs(
        vectors,
        config.paraphrase_threshold,
        slices=slices,
        num_bits=config.paraphrase_bits,
        seed=config.seed,
        lsh_cost=PARAPHRASE_SEARCHES[config.paraphrase_search],
    )
    identity = pl.Series(np.arange(len(vectors), dtype=np.uint32))
    related = pl.concat(
        [
            pl.DataFrame({"key": identity, "match_key": identity}),
            similar.select(key="vector_id", match_key="match_vector_id"),
        ]
    )
    return _match_rows(actions, window_us, related=related, include_self_loops=config.include_self_loops)


def co_action_matches(
    posts: pl.DataFrame | PreparedPosts, network: str, config: CoActionConfig | None = None
) -> pl.DataFrame:
    """Post-level matches of one network type (the rows behind every edge).

    ``posts`` is a posts frame or, to compute several windows or types of one batch, the result
    of :func:`prepare_posts` (the derivations are then not repeated).
    """
    config = config or CoActionConfig()
    config.window_s(network)  # unknown types: the error names the known ones
    prepared = _prepared(posts, [network])
    return _matches_from_rows(prepared, _network_rows(prepared, network, config))


def co_action_edges(
    posts: pl.DataFrame | PreparedPosts, network: str, config: CoActionConfig | None = None
) -> pl.DataFrame:
    """Directed, weighted edges of one network type with evidence (see the module docstring).

    ``posts`` is a posts frame or the result of :func:`prepare_posts` (see :func:`co_action_matches`).
    """
    config = config or CoActionConfig()
    config.window_s(network)
    prepared = _prepared(posts, [network])
    return _edges_from_rows(
        prepared,
        _network_rows(prepared, network, config),
        min_weight=config.min_weight,
        evidence_per_edge=config.evidence_per_edge,
    )


def _one(network: str, posts: pl.DataFrame, window_s: float, **settings: Any) -> pl.DataFrame:
    windows = {network: window_s}
    return co_action_edges(posts, network, CoActionConfig(windows_s=windows, **settings))


def co_repost(posts: pl.DataFrame, window_s: float = 60.0, **settings: Any) -> pl.DataFrame:
    """Accounts reposting the same post within the window (QUT co_retweet)."""
    return _one("co_repost", posts, window_s, **settings)


def co_text(posts: pl.DataFrame, window_s: float = 60.0, **settings: Any) -> pl.DataFrame:
    """Accounts posting the same normalised text within the window (QUT co_tweet)."""
    return _one("co_text", posts, window_s, **settings)


def co_reply(posts: pl.DataFrame, window_s: float = 60.0, **settings: Any) -> pl.DataFrame:
    """Accounts replying to the same post within the window (QUT co_reply)."""
    return _one("co_reply", posts, window_s, **settings)


def co_link(posts: pl.DataFrame, window_s: float = 60.0, **settings: Any) -> pl.DataFrame:
    """Accounts sharing the same url within the window (QUT co_link, without phantom links)."""
    return _one("co_link", posts, window_s, **settings)


def co_hashtag(posts: pl.DataFrame, window_s: float = 300.0, **settings: Any) -> pl.DataFrame:
    """Accounts using the same set of hashtags within the window (QUT's requested #30)."""
    return _one("co_hashtag", posts, window_s, **settings)


def co_similar(posts: pl.DataFrame, window_s: float = 300.0, **settings: Any) -> pl.DataFrame:
    """Accounts posting near-duplicate text (token-set Jaccard >= threshold) within the window."""
    return _one("co_similar", posts, window_s, **settings)


def co_paraphrase(posts: pl.DataFrame, window_s: float = 300.0, **settings: Any) -> pl.DataFrame:
    """Accounts posting paraphrases (embedding cosine >= threshold) within the window (opt-in type)."""
    return _one("co_paraphrase", posts, window_s, **settings)


def co_action_networks(
    posts: pl.DataFrame | PreparedPosts,
    config: CoActionConfig | None = None,
    networks: Iterable[str] = NETWORK_TYPES,
) -> dict[str, pl.DataFrame]:
    """Every requested network type for one batch of posts, as ``{type: edges}``.

    The default is :data:`NETWORK_TYPES`; pass ``KNOWN_NETWORK_TYPES`` (or name ``co_paraphrase``)
    to include the paraphrase network. The posts are prepared once for all of them.
    """
    config = config or CoActionConfig()
    networks = tuple(networks)
    for network in networks:
        config.window_s(network)
    prepared = _prepared(posts, networks)
    return {network: co_action_edges(prepared, network, config) for network in networks}
