"""Coordinated-campaign detection: co-action networks, the account graph, campaigns.

Pure functions over polars frames and networkx graphs (no I/O): see :mod:`.coaction` for the
co-action semantics (QUT ``coordination_network_toolkit``-compatible; :mod:`.minhash` and
:mod:`.paraphrase` for the near-duplicate and paraphrase indexes), :mod:`.graph` for the
account graph, communities and campaign scores, and :mod:`.formats` for input layouts.
"""

from detectors.coordination.coaction import (
    DEFAULT_WINDOWS_S,
    KNOWN_NETWORK_TYPES,
    NETWORK_TYPES,
    OPTIONAL_NETWORK_TYPES,
    QUT_NETWORK_NAMES,
    CoActionConfig,
    co_action_edges,
    co_action_matches,
    co_action_networks,
    co_hashtag,
    co_link,
    co_paraphrase,
    co_reply,
    co_repost,
    co_similar,
    co_text,
    edges_from_matches,
    match_actions,
    post_actions,
)
from detectors.coordination.formats import coerce_posts, posts_from_qut, posts_to_qut
from detectors.coordination.graph import (
    CampaignConfig,
    CampaignResult,
    account_activity,
    account_graph,
    assign_campaign_ids,
    detect_campaigns,
    find_communities,
    prune_graph,
    score_campaigns,
)
from detectors.coordination.text import hashtag_set, normalised_text, token_set

__all__ = [
    "DEFAULT_WINDOWS_S",
    "KNOWN_NETWORK_TYPES",
    "NETWORK_TYPES",
    "OPTIONAL_NETWORK_TYPES",
    "QUT_NETWORK_NAMES",
    "CampaignConfig",
    "CampaignResult",
    "CoActionConfig",
    "account_activity",
    "account_graph",
    "assign_campaign_ids",
    "co_action_edges",
    "co_action_matches",
    "co_action_networks",
    "co_hashtag",
    "co_link",
    "co_paraphrase",
    "co_reply",
    "co_repost",
    "co_similar",
    "co_text",
    "coerce_posts",
    "detect_campaigns",
    "edges_from_matches",
    "find_communities",
    "hashtag_set",
    "match_actions",
    "normalised_text",
    "post_actions",
    "posts_from_qut",
    "posts_to_qut",
    "prune_graph",
    "score_campaigns",
    "token_set",
]
