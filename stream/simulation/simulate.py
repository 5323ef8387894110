"""The one entry point: a stream from a :class:`SimulationConfig`, and the two presets' shapes of it.

:func:`simulate` builds the network in a fixed order (campaigns, machine accounts, then organic
accounts, which fill whatever share of ``posts`` the others leave); :func:`simulate_posts` (the demo,
Kafka-ready messages) and :func:`generate_stream` (the co-action test stream, a frame) are thin calls
into it.
"""

from __future__ import annotations

from typing import Any

from stream.simulation.campaigns import campaign_group
from stream.simulation.config import SimulationConfig, coaction_config
from stream.simulation.machines import machine_accounts
from stream.simulation.network import Network
from stream.simulation.organic import organic_accounts, reply_and_repost_earlier_posts
from stream.simulation.outputs import GeneratedStream, as_frame, as_messages


def simulate(config: SimulationConfig | None = None) -> Network:
    """The whole simulated network for ``config`` (default: the demo); the same config gives the same posts."""
    config = config or SimulationConfig()
    net = Network(config)
    total = config.posts
    ordinary, llm = config.campaign_groups()
    campaign_group(net, ordinary, int(total * config.campaign_share) if total is not None else None)
    campaign_group(net, llm, None)
    if total is not None:
        n_machine = int(total * config.machine_share) if config.machine_accounts else 0
    else:
        n_machine = round(config.machine_accounts * config.posts_per_account)
    machine_accounts(net, n_machine)
    left = None if total is None else total - len(net.posts)
    if left is not None and left < 0:
        raise ValueError(f"posts={total} is fewer than the campaigns and machine accounts write ({len(net.posts)}); "
                         "ask for more posts or fewer campaign accounts")  # fmt: skip
    organic_accounts(net, left)
    if config.organic_voice == "templates":
        reply_and_repost_earlier_posts(net)
    return net


def simulate_posts(config: SimulationConfig | None = None) -> list[dict[str, Any]]:
    """The demo's stream as JSON-ready messages in time order (ground truth in ``meta["sim"]``).

    Post ids are unique and stable for a given seed and size; there are exactly ``config.posts``.
    """
    return as_messages(simulate(config))


def generate_stream(**preset: Any) -> GeneratedStream:
    """The co-action test stream (keywords of :func:`coaction_config`) as a frame plus account truth."""
    return as_frame(simulate(coaction_config(**preset)))
