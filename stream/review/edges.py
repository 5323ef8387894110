"""The links of a campaign's account graph: read from the stored evidence, or computed from the members' posts.

**Stored links** (:func:`campaign_edges`) are what the coordination stage wrote:
``campaigns.summary`` is a JSON object of campaign-level scores (any numeric keys: ``density``,
``synchrony``, ``machine_share``, ...) and may hold ``"edges"``; each ``campaign_members.evidence``
may hold ``"edges"``. An edge is
``{"source", "target", "weight", "network", "evidence": [{"post_1", "time_1", "post_2", "time_2"}]}``
(``user_1``/``user_2`` and, in member evidence, a missing source meaning the member, also work).

**Inferred links** (:func:`inferred_edges`), for a campaign stored without link evidence, are
computed by the coordination library itself (:mod:`detectors.coordination`) rather than by rules
of the console's own, so a reviewer sees the links the coordination stage would have drawn and
reads their weights on the same scale as stored ones.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from detectors.coordination.coaction import co_action_networks
from detectors.coordination.formats import coerce_posts
from detectors.coordination.graph import account_activity, pair_strengths
from stream.config import CoordinatorSettings
from stream.store.reading import json_object, json_strings

#: Matched post pairs shown per direction of an inferred link (the stage keeps as many per direction).
EVIDENCE_PER_DIRECTION = 3


@dataclass(frozen=True)
class Edge:
    """A link between two member accounts and the co-actions behind it."""

    source: str
    target: str
    weight: float
    network: str
    evidence: tuple[dict[str, Any], ...] = ()
    inferred: bool = False


def _ordered(edges: Sequence[Edge]) -> list[Edge]:
    return sorted(edges, key=lambda e: (-e.weight, e.source, e.target, e.network))


def campaign_edges(summary: Any, members: Sequence[Mapping[str, Any]]) -> list[Edge]:
    """The account graph's links from the stored evidence (format in the module docstring).

    Tolerant by design: the coordination stage's format may grow; unknown keys are ignored and
    malformed entries skipped, never fatal. Undirected: a-b and b-a of one network merge.
    """
    raw: list[tuple[str | None, Mapping[str, Any]]] = []
    summary = json_object(summary) if not isinstance(summary, Mapping) else summary
    for entry in summary.get("edges") or []:
        if isinstance(entry, Mapping):
            raw.append((None, entry))
    for member in members:
        evidence = member.get("evidence")
        evidence = json_object(evidence) if not isinstance(evidence, Mapping) else evidence
        for entry in evidence.get("edges") or evidence.get("links") or []:
            if isinstance(entry, Mapping):
                raw.append((member.get("account_id"), entry))
    merged: dict[tuple[str, str, str], Edge] = {}
    for default_source, entry in raw:
        source = entry.get("source") or entry.get("user_1") or default_source
        target = entry.get("target") or entry.get("user_2") or entry.get("account_id")
        if not source or not target or source == target:
            continue
        a, b = sorted((str(source), str(target)))
        network = str(entry.get("network") or entry.get("type") or "co_action")
        try:
            weight = float(entry.get("weight") if entry.get("weight") is not None else 1.0)
        except (TypeError, ValueError):
            weight = 1.0
        evidence = tuple(e for e in (entry.get("evidence") or []) if isinstance(e, Mapping))
        key = (a, b, network)
        if key in merged:
            old = merged[key]
            seen = {json.dumps(e, sort_keys=True, default=str) for e in old.evidence}
            extra = tuple(e for e in evidence if json.dumps(e, sort_keys=True, default=str) not in seen)
            merged[key] = Edge(a, b, max(old.weight, weight), network, old.evidence + extra)
        else:
            merged[key] = Edge(a, b, weight, network, evidence)
    return _ordered(list(merged.values()))


def _library_posts(member_posts: pl.DataFrame) -> pl.DataFrame:
    """Store rows (``urls``/``hashtags`` as JSON text) in the post schema the library reads."""
    lists = {
        name: pl.col(name).map_elements(json_strings, return_dtype=pl.List(pl.String))
        for name in ("urls", "hashtags", "mentions")
        if name in member_posts.columns and member_posts.schema[name] == pl.String
    }
    return coerce_posts(member_posts.with_columns(**lists))


def _evidence(pairs: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """The library's matched pairs as the stored evidence format (ISO times), as the stage writes them."""
    return [
        {
            "post_1": pair["post_1"],
            "time_1": pair["time_1"].isoformat() if pair["time_1"] is not None else None,
            "post_2": pair["post_2"],
            "time_2": pair["time_2"].isoformat() if pair["time_2"] is not None else None,
        }
        for pair in (pairs or [])[:EVIDENCE_PER_DIRECTION]
    ]


def inferred_edges(member_posts: pl.DataFrame, settings: CoordinatorSettings | None = None) -> list[Edge]:
    """Links between a campaign's members computed from their posts, for a campaign stored without any.

    The coordination stage's own computation on these posts, with its configured networks and
    windows (``settings``, the ``[coordinator]`` section; its defaults when None):
    :func:`~detectors.coordination.coaction.co_action_networks` gives QUT-compatible *directed*
    edges per type (A -> B counts A's posts matching some post of B within ``±window``, inclusive),
    and :func:`~detectors.coordination.graph.pair_strengths` turns each pair's two directions into
    one undirected strength ``min(w_ab / n_a, w_ba / n_b)`` (``n``: the account's posts that can
    take part in the type). That strength is the ``weight`` the stage stores with each link, so
    inferred and stored links read on one scale. Links are not pruned (the stage's
    ``min_co_actions`` applies to whole pairs before community detection, which has already
    happened): a reviewer sees every co-action, a single coincidence included. Each link carries
    the earliest matched post pairs of both directions. Marked ``inferred`` so the console says
    where they came from.
    """
    if member_posts.is_empty():
        return []
    settings = settings or CoordinatorSettings()
    networks = tuple(settings.networks)
    posts = _library_posts(member_posts)
    directed = co_action_networks(posts, settings.incremental_config().coaction, networks)
    strengths = pair_strengths(directed, account_activity(posts, networks))
    evidence = {
        (network, user_1, user_2): pairs
        for network, edges in directed.items()
        for user_1, user_2, pairs in edges.select("user_1", "user_2", "evidence").iter_rows()
    }
    edges = [
        Edge(
            a,
            b,
            float(strength),
            network,
            tuple(_evidence(evidence.get((network, a, b))) + _evidence(evidence.get((network, b, a)))),
            inferred=True,
        )
        for a, b, network, strength in strengths.select("account_a", "account_b", "network", "strength").iter_rows()
    ]
    return _ordered(edges)
