"""From co-action edges to campaigns: one account graph, pruning, Louvain, scores, stable ids.

Functions over frames and networkx graphs, every knob a keyword with a documented default and a
seed for anything random (networkx's own style). The steps:

1. :func:`account_activity` counts each account's *eligible* posts per network type (reposts for
   co_repost, url-carrying non-reposts for co_link, ...): the denominator of the normalisation.
2. :func:`account_graph` merges all types into one undirected graph. Per type and pair, the
   **strength** is ``min(w_ab / n_a, w_ba / n_b)``: the share of each account's eligible posts
   that co-occur with the other, taking the smaller side. Why this normalisation: a raw count
   rewards volume, so one hyperactive account that reposts everything links to everyone; dividing
   by its activity makes its shares small, and taking the minimum is CooRTweet's edge-symmetry
   idea (a pair is only as coordinated as its less coordinated member), in a form that stays
   comparable across types and windows (it lies in [0, 1]). Types combine by noisy-or,
   ``1 - prod(1 - s_t)``, so acting together through several channels raises the weight.
3. :func:`prune_graph` keeps an edge when the pair shares at least ``min_co_actions`` co-actions
   (default 2, QUT's CLI default ``--min_edge_weight``: one coincidence is not coordination; it is
   this rule that removes organic chance pairs, whose strength can be high only because a single
   shared repost is all either account posted of that type) and ``strength >= min_strength``
   (default 0.1: at least a tenth of the less active account's eligible posts of some type; on the
   generated streams the 1st percentile of campaign-pair strengths is above 0.6), optionally above a
   quantile of strengths (CooRTweet's percentile filter).
4. :func:`find_communities` runs Louvain with a seed; communities under ``min_size`` are dropped.
5. :func:`assign_campaign_ids` keeps ids stable across windows: a community takes the id of the
   previous campaign it overlaps most (member Jaccard >= ``min_jaccard``, greedy, best first);
   otherwise its id is derived from its sorted members, so the same accounts get the same id.
6. :func:`score_campaigns` reports size, density, synchrony, machine share, burstiness.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import networkx as nx
import polars as pl

from detectors.coordination.coaction import (
    NETWORK_TYPES,
    CoActionConfig,
    co_action_matches,
    edges_from_matches,
    post_actions,
)

#: Default pruning: see the module docstring, step 3.
DEFAULT_MIN_CO_ACTIONS = 2
DEFAULT_MIN_STRENGTH = 0.1
#: Default smallest campaign: three accounts (two are a pair, not a campaign, for analysts).
DEFAULT_MIN_CAMPAIGN_SIZE = 3
#: Default overlap for a community to inherit a previous campaign's id.
DEFAULT_MIN_ID_JACCARD = 0.3


def account_activity(posts: pl.DataFrame, networks: Iterable[str] = NETWORK_TYPES) -> pl.DataFrame:
    """``account_id, network, n_posts``: each account's posts that can take part in each type."""
    frames = [
        post_actions(posts, network)
        .group_by("account_id")
        .agg(n_posts=pl.col("post_id").n_unique().cast(pl.Int64))
        .with_columns(network=pl.lit(network))
        for network in networks
    ]
    return pl.concat(frames).select("account_id", "network", "n_posts")


def pair_strengths(networks: Mapping[str, pl.DataFrame], activity: pl.DataFrame) -> pl.DataFrame:
    """Per unordered pair and type: ``account_a, account_b, network, w_ab, w_ba, strength``."""
    frames = [
        edges.select("user_1", "user_2", "weight").with_columns(network=pl.lit(network))
        for network, edges in networks.items()
        if edges.height
    ]
    schema = {
        "account_a": pl.String,
        "account_b": pl.String,
        "network": pl.String,
        "w_ab": pl.Int64,
        "w_ba": pl.Int64,
        "strength": pl.Float64,
    }
    if not frames:
        return pl.DataFrame(schema=schema)
    directed = pl.concat(frames).filter(pl.col("user_1") != pl.col("user_2"))
    a = pl.min_horizontal("user_1", "user_2")
    b = pl.max_horizontal("user_1", "user_2")
    forward = pl.col("user_1") == a
    pairs = directed.group_by(a.alias("account_a"), b.alias("account_b"), "network").agg(
        w_ab=pl.col("weight").filter(forward).sum().cast(pl.Int64),
        w_ba=pl.col("weight").filter(~forward).sum().cast(pl.Int64),
    )
    n = activity.select("account_id", "network", "n_posts")
    return (
        pairs.join(n.rename({"account_id": "account_a", "n_posts": "n_a"}), on=["account_a", "network"], how="left")
        .join(n.rename({"account_id": "account_b", "n_posts": "n_b"}), on=["account_b", "network"], how="left")
        .with_columns(
            strength=pl.min_horizontal(
                pl.col("w_ab") / pl.col("n_a").clip(lower_bound=1),
                pl.col("w_ba") / pl.col("n_b").clip(lower_bound=1),
            ).clip(upper_bound=1.0)
        )
        .select(list(schema))
        .sort("account_a", "account_b", "network")
    )


def account_graph(networks: Mapping[str, pl.DataFrame], activity: pl.DataFrame) -> nx.Graph:
    """One undirected account graph from all co-action types.

    Edge attributes: ``weight`` (noisy-or of the per-type strengths, used by Louvain),
    ``co_actions`` (sum over types of ``min(w_ab, w_ba)``: co-actions both sides share) and
    ``types`` (``{network: strength}``).
    """
    strengths = pair_strengths(networks, activity)
    combined = strengths.group_by("account_a", "account_b").agg(
        weight=1.0 - (1.0 - pl.col("strength")).product(),
        co_actions=pl.min_horizontal("w_ab", "w_ba").sum(),
        networks=pl.col("network"),
        strengths=pl.col("strength"),
    )
    graph = nx.Graph()
    for a, b, weight, co_actions, types, values in combined.sort("account_a", "account_b").iter_rows():
        graph.add_edge(
            a, b, weight=float(weight), co_actions=int(co_actions), types=dict(zip(types, values, strict=True))
        )
    return graph


def prune_graph(
    graph: nx.Graph,
    *,
    min_co_actions: int = DEFAULT_MIN_CO_ACTIONS,
    min_strength: float = DEFAULT_MIN_STRENGTH,
    quantile: float | None = None,
) -> nx.Graph:
    """A copy of ``graph`` without weak edges and without the accounts left isolated."""
    keep = [
        (a, b)
        for a, b, data in graph.edges(data=True)
        if data["co_actions"] >= min_co_actions and data["weight"] >= min_strength
    ]
    if quantile is not None and keep:
        weights = pl.Series([graph.edges[e]["weight"] for e in keep])
        cut = weights.quantile(quantile, interpolation="lower")
        keep = [e for e in keep if graph.edges[e]["weight"] >= cut]
    pruned = nx.Graph()
    pruned.add_edges_from((a, b, graph.edges[a, b]) for a, b in keep)
    return pruned


def find_communities(
    graph: nx.Graph,
    *,
    resolution: float = 1.0,
    seed: int = 0,
    min_size: int = DEFAULT_MIN_CAMPAIGN_SIZE,
) -> list[frozenset[str]]:
    """Louvain communities of at least ``min_size`` accounts, largest first (then by first member)."""
    if graph.number_of_edges() == 0:
        return []
    communities = nx.community.louvain_communities(graph, weight="weight", resolution=resolution, seed=seed)
    kept = [frozenset(c) for c in communities if len(c) >= min_size]
    return sorted(kept, key=lambda c: (-len(c), min(c)))


def campaign_id_for(members: Iterable[str]) -> str:
    """A deterministic id from the sorted members: the same accounts always get the same id."""
    digest = hashlib.sha1("\n".join(sorted(members)).encode("utf-8")).hexdigest()
    return f"cmp-{digest[:12]}"


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def assign_campaign_ids(
    communities: Sequence[frozenset[str]],
    previous: Mapping[str, frozenset[str]] | None = None,
    *,
    min_jaccard: float = DEFAULT_MIN_ID_JACCARD,
) -> dict[str, frozenset[str]]:
    """``{campaign_id: members}``, reusing previous ids for communities that continue a campaign.

    Greedy one-to-one matching, highest member Jaccard first (ties by id and member order, so the
    result is deterministic); each previous id is used at most once.
    """
    previous = previous or {}
    candidates = sorted(
        (
            (-_jaccard(community, members), old_id, i)
            for i, community in enumerate(communities)
            for old_id, members in previous.items()
        ),
    )
    assigned: dict[int, str] = {}
    used: set[str] = set()
    for negative_jaccard, old_id, i in candidates:
        if -negative_jaccard < min_jaccard:
            break
        if i in assigned or old_id in used:
            continue
        assigned[i] = old_id
        used.add(old_id)
    result: dict[str, frozenset[str]] = {}
    for i, community in enumerate(communities):
        new_id = assigned.get(i) or campaign_id_for(community)
        while new_id in result:  # two communities with identical members cannot happen; be safe
            new_id = campaign_id_for([new_id, *community])
        result[new_id] = community
    return result


def _burstiness(times: pl.Expr) -> pl.Expr:
    """Goh & Barabási's B = (sigma - mu) / (sigma + mu) of inter-post gaps: 1 bursty, 0 Poisson, -1 regular."""
    gaps = times.sort().diff().drop_nulls().cast(pl.Float64)
    mu, sigma = gaps.mean(), gaps.std(ddof=0)
    return pl.when((mu + sigma) > 0).then((sigma - mu) / (sigma + mu)).otherwise(None)


def score_campaigns(
    campaigns: Mapping[str, frozenset[str]],
    graph: nx.Graph,
    posts: pl.DataFrame,
    matches: pl.DataFrame | None = None,
    *,
    probability_column: str = "machine_probability",
) -> pl.DataFrame:
    """One row per campaign: what an analyst ranks and reads first.

    * ``size``; ``density`` (share of member pairs linked in the pruned graph); ``mean_weight``.
    * ``synchrony``: share of the members' posts that co-occur (any type, within its window) with
      another member's post; needs ``matches`` (post-level, see :func:`co_action_matches`).
    * ``median_gap_s``: median time between matched member posts.
    * ``machine_share``: mean per-post machine-written probability over the members' posts, when
      ``posts`` has ``probability_column`` (the AI-text detector's output), else null.
    * ``burstiness``: Goh-Barabasi burstiness of the members' pooled posting times.
    * ``score`` = ``density * synchrony`` (``density`` alone without matches): a ranking
      heuristic, not a probability.
    """
    schema = {
        "campaign_id": pl.String,
        "size": pl.Int64,
        "density": pl.Float64,
        "mean_weight": pl.Float64,
        "synchrony": pl.Float64,
        "median_gap_s": pl.Float64,
        "machine_share": pl.Float64,
        "burstiness": pl.Float64,
        "score": pl.Float64,
        "members": pl.List(pl.String),
    }
    if not campaigns:
        return pl.DataFrame(schema=schema)
    structure = pl.DataFrame(
        [
            {
                "campaign_id": cid,
                "size": len(members),
                "density": nx.density(graph.subgraph(members)) if len(members) > 1 else 0.0,
                "mean_weight": (
                    sum(d["weight"] for _, _, d in graph.subgraph(members).edges(data=True))
                    / max(graph.subgraph(members).number_of_edges(), 1)
                ),
                "members": sorted(members),
            }
            for cid, members in campaigns.items()
        ],
        schema={k: schema[k] for k in ("campaign_id", "size", "density", "mean_weight", "members")},
    )
    membership = structure.select("campaign_id", pl.col("members").alias("account_id")).explode("account_id")
    member_posts = membership.join(
        posts.unique("post_id", keep="first").select(
            "post_id",
            "account_id",
            pl.col("created_at").dt.epoch("us").alias("t_us"),
            (pl.col(probability_column) if probability_column in posts.columns else pl.lit(None))
            .cast(pl.Float64)
            .alias("probability"),
        ),
        on="account_id",
    )
    activity = member_posts.group_by("campaign_id").agg(
        n_posts=pl.col("post_id").n_unique(),
        machine_share=pl.col("probability").mean(),
        burstiness=_burstiness(pl.col("t_us")),
    )
    if matches is not None and matches.height:
        inside = matches.join(membership, on="account_id").join(
            membership.rename({"account_id": "match_account_id"}), on=["campaign_id", "match_account_id"]
        )
        sync = inside.group_by("campaign_id").agg(
            synced_posts=pl.col("post_id").n_unique(),
            median_gap_s=((pl.col("match_t_us") - pl.col("t_us")).abs().median() / 1e6).cast(pl.Float64),
        )
    else:
        sync = pl.DataFrame(schema={"campaign_id": pl.String, "synced_posts": pl.UInt32, "median_gap_s": pl.Float64})
    has_matches = matches is not None
    return (
        structure.join(activity, on="campaign_id", how="left")
        .join(sync, on="campaign_id", how="left")
        .with_columns(
            synchrony=(
                (pl.col("synced_posts").fill_null(0) / pl.col("n_posts")).cast(pl.Float64)
                if has_matches
                else pl.lit(None, dtype=pl.Float64)
            )
        )
        .with_columns(score=(pl.col("density") * pl.col("synchrony")) if has_matches else pl.col("density"))
        .select(list(schema))
        .sort(["score", "size", "campaign_id"], descending=[True, True, False])
    )


@dataclass(frozen=True)
class CampaignConfig:
    """Every knob from posts to campaigns; defaults as documented in this module."""

    coaction: CoActionConfig = field(default_factory=CoActionConfig)
    networks: tuple[str, ...] = NETWORK_TYPES
    min_co_actions: int = DEFAULT_MIN_CO_ACTIONS
    min_strength: float = DEFAULT_MIN_STRENGTH
    quantile: float | None = None
    resolution: float = 1.0
    seed: int = 0
    min_size: int = DEFAULT_MIN_CAMPAIGN_SIZE
    min_id_jaccard: float = DEFAULT_MIN_ID_JACCARD
    probability_column: str = "machine_probability"


@dataclass(frozen=True)
class CampaignResult:
    """Everything the batch stage found, from edges to scored campaigns."""

    networks: dict[str, pl.DataFrame]
    #: Post-level matches of all types (``network`` column added): the evidence base.
    matches: pl.DataFrame
    graph: nx.Graph
    campaigns: pl.DataFrame
    #: ``{campaign_id: members}`` to pass as ``previous`` to the next window.
    members: dict[str, frozenset[str]]


def detect_campaigns(
    posts: pl.DataFrame,
    config: CampaignConfig | None = None,
    previous: Mapping[str, frozenset[str]] | None = None,
) -> CampaignResult:
    """Posts in, scored campaigns out: co-actions, account graph, pruning, Louvain, ids, scores."""
    config = config or CampaignConfig()
    matches_by_type = {n: co_action_matches(posts, n, config.coaction) for n in config.networks}
    networks = {
        n: edges_from_matches(
            m, min_weight=config.coaction.min_weight, evidence_per_edge=config.coaction.evidence_per_edge
        )
        for n, m in matches_by_type.items()
    }
    matches = pl.concat([m.with_columns(network=pl.lit(n)) for n, m in matches_by_type.items()])
    graph = prune_graph(
        account_graph(networks, account_activity(posts, config.networks)),
        min_co_actions=config.min_co_actions,
        min_strength=config.min_strength,
        quantile=config.quantile,
    )
    communities = find_communities(graph, resolution=config.resolution, seed=config.seed, min_size=config.min_size)
    members = assign_campaign_ids(communities, previous, min_jaccard=config.min_id_jaccard)
    campaigns = score_campaigns(members, graph, posts, matches, probability_column=config.probability_column)
    return CampaignResult(networks=networks, matches=matches, graph=graph, campaigns=campaigns, members=members)
