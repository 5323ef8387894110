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

**What a reviewer reads** is one entry per pair of accounts (:func:`account_pairs`), whatever the
co-action types: the stage stores one link per type and, in each, the matched posts of *both*
directions (A's post matching B's, then B's matching A's), so the same two posts come up as (a, b)
and (b, a), and again under every type they share. Each pair of posts is shown once
(:class:`MatchedPosts`: the post of the account whose id sorts first on the left, the types that
matched it, the seconds between the two). :func:`link_coverage` says how much of the campaign's
graph the links are: the stage stores only its ``summary_edges`` strongest links (50 by default,
one per type), so a dense campaign's graph is cut, and the page must say so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
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


# ---------------------------------------------------------------------------------------------
# What the reviewer reads: one entry per pair of accounts, each pair of matched posts once


@dataclass(frozen=True)
class MatchedPosts:
    """Two posts, one by each account of a link, that co-occurred: the evidence behind the link, once.

    ``post_1`` is the post of the account whose id sorts first (the link's ``source``) when the
    posts' accounts are known, else the post listed first. ``networks``: every co-action type that
    matched these two posts.
    """

    post_1: str
    time_1: datetime | None
    post_2: str
    time_2: datetime | None
    networks: tuple[str, ...]

    @property
    def seconds_apart(self) -> float | None:
        """How far apart the two posts were posted, in seconds (None when a time is missing)."""
        if self.time_1 is None or self.time_2 is None:
            return None
        return abs((self.time_2 - self.time_1).total_seconds())


@dataclass(frozen=True)
class AccountPair:
    """Two member accounts and everything linking them: the co-action types, the strongest weight, the posts."""

    source: str
    target: str
    weight: float
    networks: tuple[str, ...]
    matched: tuple[MatchedPosts, ...]
    inferred: bool = False


def instant(value: Any) -> datetime | None:
    """An evidence time (a datetime or ISO 8601 text, as the stage writes it) as an aware UTC datetime.

    None when missing or unreadable (evidence formats grow: never fatal); a naive time is taken as UTC.
    """
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value.strip():
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def evidence_post_ids(edges: Sequence[Edge]) -> list[str]:
    """Every post id the links' evidence names, once, in order (to look up their accounts and texts)."""
    seen: dict[str, None] = {}
    for edge in edges:
        for entry in edge.evidence:
            for key in ("post_1", "post_2"):
                if entry.get(key) is not None:
                    seen.setdefault(str(entry[key]), None)
    return list(seen)


def account_pairs(edges: Sequence[Edge], post_accounts: Mapping[str, str] | None = None) -> list[AccountPair]:
    """The links merged per pair of accounts, each pair of matched posts once (see the module docstring).

    ``post_accounts`` (post id -> account id) orients every pair of posts so that ``post_1`` is by
    the pair's ``source`` (the account id that sorts first); two posts are the same evidence
    whichever order and under whichever co-action type the stage listed them. Pairs come strongest
    first (then by ids), their matched posts earliest first.
    """
    post_accounts = post_accounts or {}
    grouped: dict[tuple[str, str], list[Edge]] = {}
    for edge in edges:
        a, b = sorted((edge.source, edge.target))
        grouped.setdefault((a, b), []).append(edge)
    pairs = []
    for (source, target), links in grouped.items():
        matched: dict[frozenset[str], dict[str, Any]] = {}
        for link in links:
            for entry in link.evidence:
                post_1, post_2 = entry.get("post_1"), entry.get("post_2")
                if post_1 is None or post_2 is None or str(post_1) == str(post_2):
                    continue
                one = (str(post_1), instant(entry.get("time_1")))
                two = (str(post_2), instant(entry.get("time_2")))
                if post_accounts.get(one[0]) == target or post_accounts.get(two[0]) == source:
                    one, two = two, one
                key = frozenset((one[0], two[0]))
                found = matched.setdefault(key, {"one": one, "two": two, "networks": set()})
                found["networks"].add(link.network)
        evidence = sorted(
            (
                MatchedPosts(m["one"][0], m["one"][1], m["two"][0], m["two"][1], tuple(sorted(m["networks"])))
                for m in matched.values()
            ),
            key=lambda m: (m.time_1 is None, m.time_1 or datetime.min.replace(tzinfo=UTC), m.post_1, m.post_2),
        )
        pairs.append(
            AccountPair(
                source,
                target,
                max(link.weight for link in links),
                tuple(sorted({link.network for link in links})),
                tuple(evidence),
                inferred=all(link.inferred for link in links),
            )
        )
    return sorted(pairs, key=lambda p: (-p.weight, p.source, p.target))


@dataclass(frozen=True)
class LinkCoverage:
    """How much of a campaign's account graph its links are, for the page to say so.

    ``shown_pairs``: pairs of accounts the links join (what the graph draws); ``possible_pairs``:
    every pair of members, ``n (n - 1) / 2``; ``linked_pairs``: how many pairs the coordination
    stage found linked, read back from its ``density`` (the share of member pairs linked, over
    the whole graph: ``round(density * possible_pairs)``), None when it stored none;
    ``stored_links``: link entries stored (one per co-action type); ``cap``: the most the stage
    stores per campaign (``[coordinator] summary_edges``), None when unknown or not relevant
    (links inferred by the console are never cut).
    """

    members: int
    possible_pairs: int
    shown_pairs: int
    linked_pairs: int | None
    stored_links: int
    cap: int | None
    #: The console computed the links from the members' posts (none were stored): never cut, and
    #: the stage's density is not read as their count (it measured a graph they need not reproduce).
    inferred: bool = False

    @property
    def truncated(self) -> bool:
        """Whether the store holds only some of the campaign's links."""
        if self.linked_pairs is not None and self.shown_pairs < self.linked_pairs:
            return True
        return self.cap is not None and self.stored_links >= self.cap and self.shown_pairs < self.possible_pairs

    @property
    def total_pairs(self) -> int:
        """The M of "the strongest N of M links": the true number when the stage's density gives it,
        else (when cut) every possible pair, the most there can be; else the links shown."""
        if self.linked_pairs is not None and self.linked_pairs >= self.shown_pairs:
            return self.linked_pairs
        return self.possible_pairs if self.truncated else self.shown_pairs

    @property
    def exact_total(self) -> bool:
        """Whether :attr:`total_pairs` is the true number of linked pairs (not only an upper bound)."""
        return not self.truncated or (self.linked_pairs is not None and self.linked_pairs >= self.shown_pairs)

    @property
    def shown_density(self) -> float | None:
        """Density of the graph as drawn: pairs of accounts shown linked over every pair of members."""
        return self.shown_pairs / self.possible_pairs if self.possible_pairs else None


def link_coverage(
    edges: Sequence[Edge],
    members: Sequence[str],
    summary: Any = None,
    *,
    cap: int | None = None,
    inferred: bool | None = None,
) -> LinkCoverage:
    """How many of a campaign's links ``edges`` are (see :class:`LinkCoverage`).

    ``summary`` is the campaign's stored summary (its ``density`` and ``edges`` are read);
    ``cap`` the coordination stage's ``summary_edges``, which applies to stored links only.
    ``inferred``: the edges were computed by the console because none were stored (None: when
    every edge says so), which holds also when that computation found none.
    """
    summary = json_object(summary) if not isinstance(summary, Mapping) else summary
    accounts = set(members) | {a for e in edges for a in (e.source, e.target)}
    n = len(accounts)
    possible = n * (n - 1) // 2
    shown = len({tuple(sorted((e.source, e.target))) for e in edges})
    density = summary.get("density")
    linked = None
    if isinstance(density, int | float) and not isinstance(density, bool) and math.isfinite(density):
        linked = min(max(round(float(density) * possible), 0), possible)
    stored = summary.get("edges")
    stored_links = len(stored) if isinstance(stored, list) else 0
    if inferred is None:
        inferred = bool(edges) and all(e.inferred for e in edges)
    if inferred:
        return LinkCoverage(n, possible, shown, None, stored_links, None, inferred=True)
    return LinkCoverage(n, possible, shown, linked, stored_links, cap)
