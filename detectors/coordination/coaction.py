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
window. Here each post is joined only to the *accounts* that share its object (``posts x
accounts`` per object, not ``posts x posts``), and an as-of join finds, for each (post, account),
that account's nearest post on the object; it matches when the gap is within the window. The
cost does not depend on the window, and the nearest post is the evidence for the edge.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from detectors.coordination.minhash import similar_set_pairs
from detectors.coordination.paraphrase import (
    DEFAULT_NUM_BITS,
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
    ``paraphrase_bits`` and ``seed`` configure co_paraphrase.

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
    seed: int = 0
    include_self_loops: bool = False

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


def post_actions(posts: pl.DataFrame, network: str) -> pl.DataFrame:
    """The posts taking part in one network type, each with the object it shares (``key``).

    Returns ``post_id, account_id, t_us, key`` (a post with several urls has one row per url).
    For ``co_similar`` the key is the post's token set joined by spaces (identical sets); for
    ``co_paraphrase`` the number of its distinct embedding (see :func:`paraphrase_actions`).
    """
    if network == "co_paraphrase":
        actions, _ = paraphrase_actions(posts)
        return actions.with_columns(pl.col("key").cast(pl.String))
    base = _base(posts)
    if network == "co_repost":
        out = base.filter(pl.col("repost_of").is_not_null()).with_columns(key=pl.col("repost_of"))
    elif network == "co_text":
        out = base.filter(_not_repost() & pl.col("text").is_not_null()).with_columns(key=normalised_text("text"))
    elif network == "co_reply":
        out = base.filter(_not_repost() & pl.col("reply_to").is_not_null()).with_columns(key=pl.col("reply_to"))
    elif network == "co_link":
        out = (
            base.filter(_not_repost())
            .select("post_id", "account_id", "t_us", pl.col("urls").alias("key"))
            .explode("key")
            .with_columns(pl.col("key").str.strip_chars())
            # No phantom link: a post without urls, or with an empty url, shares nothing.
            .filter(pl.col("key").is_not_null() & (pl.col("key") != ""))
        )
    elif network == "co_hashtag":
        out = base.filter(_not_repost()).with_columns(key=hashtag_set("hashtags")).filter(pl.col("key").is_not_null())
    elif network == "co_similar":
        out = base.filter(_not_repost() & pl.col("text").is_not_null()).with_columns(
            key=token_set("text").list.join(" ")
        )
    else:
        raise ValueError(f"unknown network type {network!r}; known: {', '.join(KNOWN_NETWORK_TYPES)}")
    return (
        out.select("post_id", "account_id", "t_us", pl.col("key").cast(pl.String))
        .unique(["post_id", "key"], keep="first", maintain_order=True)
        .collect()
    )


_PARAPHRASE_ACTIONS_SCHEMA: dict[str, pl.DataType] = {
    "post_id": pl.String(),
    "account_id": pl.String(),
    "t_us": pl.Int64(),
    "key": pl.UInt32(),
}


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
    base = (
        _base(posts)
        .filter(_not_repost() & pl.col(EMBEDDING_COLUMN).is_not_null())
        .select("post_id", "account_id", "t_us", EMBEDDING_COLUMN)
        .collect()
    )
    if base.height == 0:
        return empty
    valid, unit = normalise_rows(embedding_matrix(base[EMBEDDING_COLUMN]))
    if not valid.any():
        return empty
    # One id per distinct vector: rows compared as raw bytes, ids in byte order (deterministic).
    row_bytes = np.ascontiguousarray(unit).view(np.dtype((np.void, unit.shape[1] * unit.itemsize))).ravel()
    _, first, inverse = np.unique(row_bytes, return_index=True, return_inverse=True)
    actions = base.filter(pl.Series(valid)).select(
        "post_id", "account_id", "t_us", key=pl.Series(inverse.reshape(-1).astype(np.uint32))
    )
    return actions, unit[first]


# --------------------------------------------------------------------------------------------
# Actions -> post-level matches -> edges
# --------------------------------------------------------------------------------------------


def _window_us(window_s: float) -> int:
    if window_s < 0:
        raise ValueError(f"time window must be >= 0 seconds, got {window_s}")
    return round(window_s * 1_000_000)


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
    if actions.height == 0:
        return pl.DataFrame(schema=MATCH_SCHEMA)
    tolerance = _window_us(window_s)
    if related_keys is None and not include_self_loops:
        # An object only one account shared links nobody: most objects, and the cheapest rows to drop.
        actions = actions.filter(pl.col("account_id").n_unique().over("key") > 1)
    # Work on integers: a number in (time, post id) order stands for the post, and accounts and
    # string keys become dictionary codes, so every sort and join below is over integers.
    rows = actions.sort("t_us", "post_id").with_columns(
        # One number per post (a post with several urls has several rows, all with its number).
        row=(pl.col("post_id") != pl.col("post_id").shift()).fill_null(True).cum_sum().cast(pl.UInt32) - 1,
        account=pl.col("account_id").cast(pl.Categorical).to_physical(),
        code=(
            pl.col("key").cast(pl.Categorical).to_physical()
            if related_keys is None and actions.schema["key"] == pl.String
            else pl.col("key")
        ),
    )
    slim = rows.lazy().select("row", "account", "t_us", "code")
    key_accounts = slim.select(match_code="code", match_account="account").unique()
    if related_keys is None:
        targets = key_accounts.with_columns(code=pl.col("match_code"))
    else:
        relation = related_keys.lazy().select(code="key", match_code="match_key")
        targets = relation.join(key_accounts, on="match_code")
    candidates = slim.join(targets, on="code")
    if not include_self_loops:
        candidates = candidates.filter(pl.col("account") != pl.col("match_account"))
    right = slim.select(match_code="code", match_account="account", match_t_us="t_us", match_row="row")
    matched = (
        candidates.sort("t_us", "row")
        .join_asof(
            right,  # already in (time, row) order
            left_on="t_us",
            right_on="match_t_us",
            by=["match_code", "match_account"],
            strategy="nearest",
            tolerance=tolerance,
            check_sortedness=False,
        )
        .filter(pl.col("match_row").is_not_null())
        .with_columns(gap=(pl.col("match_t_us") - pl.col("t_us")).abs())
        # A post can reach one account through several keys (several urls): keep the closest.
        .sort("row", "match_account", "gap", "match_row")
        .unique(["row", "match_account"], keep="first", maintain_order=True)
        .select("row", "match_row")
        .collect()
    )
    posts = rows.unique("row", keep="first", maintain_order=True).select("post_id", "account_id", "t_us")
    left = posts[matched["row"]]
    matched_posts = posts[matched["match_row"]]
    return pl.DataFrame(
        {
            "post_id": left["post_id"],
            "account_id": left["account_id"],
            "t_us": left["t_us"],
            "match_post_id": matched_posts["post_id"],
            "match_account_id": matched_posts["account_id"],
            "match_t_us": matched_posts["t_us"],
        },
        schema=MATCH_SCHEMA,
    )


def edges_from_matches(matches: pl.DataFrame, *, min_weight: int = 1, evidence_per_edge: int = 5) -> pl.DataFrame:
    """Aggregate post-level matches into QUT-style directed edges with evidence.

    Returns ``user_1, user_2, weight, evidence`` sorted by ``user_1, user_2``; ``evidence`` holds
    the earliest ``evidence_per_edge`` matched pairs ``(post_1, time_1, post_2, time_2)``.
    """
    if matches.height == 0:
        return pl.DataFrame(schema=EDGE_SCHEMA)
    as_time = lambda c: pl.from_epoch(pl.col(c), time_unit="us").dt.replace_time_zone("UTC")  # noqa: E731
    evidence = pl.struct(
        pl.col("post_id").alias("post_1"),
        as_time("t_us").alias("time_1"),
        pl.col("match_post_id").alias("post_2"),
        as_time("match_t_us").alias("time_2"),
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


def co_action_matches(posts: pl.DataFrame, network: str, config: CoActionConfig | None = None) -> pl.DataFrame:
    """Post-level matches of one network type (the rows behind every edge)."""
    config = config or CoActionConfig()
    window_s = config.window_s(network)
    if network == "co_paraphrase":
        return _paraphrase_matches(posts, window_s, config)
    actions = post_actions(posts, network)
    if network != "co_similar":
        return match_actions(actions, window_s, include_self_loops=config.include_self_loops)
    return _similar_matches(actions, window_s, config)


def _similar_matches(actions: pl.DataFrame, window_s: float, config: CoActionConfig) -> pl.DataFrame:
    """co_similar: exact token-set identity plus LSH-found similar sets, then the window match."""
    sets = (
        actions.select(pl.col("key").alias("set_key"))
        .unique()
        .with_columns(tokens=pl.col("set_key").str.split(" "))
        .filter((pl.col("set_key") != "") & (pl.col("tokens").list.len() >= max(config.min_tokens, 1)))
        .sort("set_key")
        .with_row_index("set_id")
    )
    keyed = actions.join(sets.select("set_key", "set_id"), left_on="key", right_on="set_key").select(
        "post_id", "account_id", "t_us", pl.col("set_id").alias("key")
    )
    similar = similar_set_pairs(
        sets.select("set_id", "tokens"),
        config.similarity_threshold,
        num_perm=config.num_perm,
        seed=config.seed,
    )
    related = pl.concat(
        [
            sets.select(pl.col("set_id").alias("key"), pl.col("set_id").alias("match_key")),
            similar.select(pl.col("set_id").alias("key"), pl.col("match_set_id").alias("match_key")),
        ]
    )
    return match_actions(keyed, window_s, related_keys=related, include_self_loops=config.include_self_loops)


def _paraphrase_matches(posts: pl.DataFrame, window_s: float, config: CoActionConfig) -> pl.DataFrame:
    """co_paraphrase: identical embeddings plus LSH-found similar ones, then the window match.

    The index only pairs vectors occurring in the same or adjacent window-wide time slices: two
    posts within ``±window`` always are, so this bounds the work without losing a match.
    """
    actions, vectors = paraphrase_actions(posts)
    if actions.height == 0:
        return pl.DataFrame(schema=MATCH_SCHEMA)
    slice_us = max(_window_us(window_s), 1)
    slices = actions.select(pl.col("key").alias("vector_id"), slice=pl.col("t_us") // slice_us)
    similar = similar_vector_pairs(
        vectors,
        config.paraphrase_threshold,
        slices=slices,
        num_bits=config.paraphrase_bits,
        seed=config.seed,
    )
    identity = pl.Series(np.arange(len(vectors), dtype=np.uint32))
    related = pl.concat(
        [
            pl.DataFrame({"key": identity, "match_key": identity}),
            similar.select(pl.col("vector_id").alias("key"), pl.col("match_vector_id").alias("match_key")),
        ]
    )
    return match_actions(actions, window_s, related_keys=related, include_self_loops=config.include_self_loops)


def co_action_edges(posts: pl.DataFrame, network: str, config: CoActionConfig | None = None) -> pl.DataFrame:
    """Directed, weighted edges of one network type with evidence (see the module docstring)."""
    config = config or CoActionConfig()
    return edges_from_matches(
        co_action_matches(posts, network, config),
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
    posts: pl.DataFrame,
    config: CoActionConfig | None = None,
    networks: Iterable[str] = NETWORK_TYPES,
) -> dict[str, pl.DataFrame]:
    """Every requested network type for one batch of posts, as ``{type: edges}``.

    The default is :data:`NETWORK_TYPES`; pass ``KNOWN_NETWORK_TYPES`` (or name ``co_paraphrase``)
    to include the paraphrase network.
    """
    config = config or CoActionConfig()
    return {network: co_action_edges(posts, network, config) for network in networks}
