"""The scale-out path on Tansu: posts re-keyed by object, split over workers, merged back = batch.

``chorus rekey`` turns posts into one action per shared object on a by-object topic. What must
hold: every action of an object lands on one partition, so two coordination workers that each own
half of the partitions, each with its own :class:`CoActionState`, together find exactly the
batch's matches (their per-object rows merged); and a coordinator reading the by-object topic
(``--input actions``) finds the batch's campaigns.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from pathlib import Path

import polars as pl
import pytest
from brokers import RunningBroker, new_topic
from pipeline_helpers import pipeline_config, read_topic

from detectors.coordination.coaction import CoActionConfig, co_action_networks, edges_from_matches
from detectors.coordination.generate import generate_stream
from detectors.coordination.graph import detect_campaigns
from detectors.coordination.incremental import (
    STREAM_NETWORK_TYPES,
    CoActionState,
    IncrementalConfig,
    matches_from_object_rows,
)
from stream.coordination.coordinator import Coordinator, CoordinatorSettings
from stream.coordination.rekey import Rekeyer, RekeySettings, decode_actions, encode_actions, object_actions
from stream.kafka.producer import produce_posts
from stream.store.database import Store

pytestmark = pytest.mark.kafka


def test_actions_round_trip_and_route_by_object() -> None:
    posts = generate_stream(n_organic=40, n_campaigns=1, seed=2).posts
    actions = object_actions(posts)
    messages = encode_actions(actions)
    assert len(messages) == actions.height
    decoded, bad = decode_actions([v for _, v in messages] + [b"not json", b'{"schema": "other"}'])
    assert bad == [len(messages), len(messages) + 1]
    assert decoded.equals(actions.drop("route"))
    routes = actions.group_by("network", "key").agg(pl.col("route").n_unique())
    assert (routes["route"] == 1).all()


def test_two_workers_over_the_by_object_topic_find_the_batch_matches(tansu: RunningBroker, tmp_path: Path) -> None:
    config = pipeline_config(tansu, tmp_path, partitions=2)
    by_object = new_topic(tansu, 4, prefix="by-object")
    stream = generate_stream(n_organic=120, n_campaigns=2, campaign_size=6, seed=8)
    posts = stream.posts.drop("machine_probability")
    produce_posts(config, posts.to_dicts(), extra=[(None, b"not a post")])
    rekeyer = Rekeyer(config, RekeySettings(group_id=f"{config.worker.group_id}-rekey", topic=by_object))
    rekeyer.run(idle_exit_s=3)
    assert (rekeyer.posts, rekeyer.invalid) == (posts.height, 1)

    records = read_topic(tansu, by_object)
    assert len(records) == rekeyer.actions == object_actions(posts).height
    partitions_of_key: dict[bytes, set[int]] = defaultdict(set)
    for r in records:
        partitions_of_key[r.key].add(r.partition)
    assert all(len(p) == 1 for p in partitions_of_key.values())  # an object never spans two partitions

    # Two workers, each owning two partitions, each with its own state, in micro-batches.
    coaction = CoActionConfig()
    workers = {w: CoActionState(IncrementalConfig(coaction=coaction)) for w in (0, 1)}
    owned = {p: p % 2 for p in range(4)}
    batches: dict[int, list[bytes]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        batches[owned[r.partition]].append(r.value)
    for worker, values in batches.items():
        for start in range(0, len(values), 150):
            frame, bad = decode_actions(values[start : start + 150])
            assert not bad
            workers[worker].add_actions(frame)
    assert all(state.stats.posts > 0 for state in workers.values())

    expected = co_action_networks(posts, coaction, STREAM_NETWORK_TYPES)
    for network in STREAM_NETWORK_TYPES:
        rows = pl.concat([state.object_matches(network) for state in workers.values()])
        merged = edges_from_matches(matches_from_object_rows(rows), evidence_per_edge=coaction.evidence_per_edge)
        assert merged.equals(expected[network]), network
        alone = workers[0].edges([network])[network]
        assert alone.height < expected[network].height or expected[network].height == 0  # one worker is not enough

    # One coordinator over the by-object topic: the batch's campaigns.
    settings = CoordinatorSettings(
        group_id=f"{config.worker.group_id}-coordinator", topic=by_object, input="actions",
        horizon_s=30 * 86_400, graph_interval_s=1.0,
    )  # fmt: skip
    store = Store.open(config.store.url)
    coordinator = Coordinator(config, store, settings)
    runner = threading.Thread(target=coordinator.run, kwargs={"idle_exit_s": 3})
    runner.start()
    runner.join(timeout=120)
    assert not runner.is_alive()
    batch = detect_campaigns(posts, settings.campaign_config())
    members = store.frame("campaign_members").group_by("campaign_id").agg("account_id")
    assert {frozenset(m) for _, m in members.iter_rows()} == set(batch.members.values())
    assert coordinator.stats.accepted == len(records)
    store.close()
