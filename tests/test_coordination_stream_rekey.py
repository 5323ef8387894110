"""The scale-out path on Tansu: posts re-keyed by object, split over workers, merged back = batch.

``chorus rekey`` turns posts into one action per shared object on a by-object topic. What must
hold: every action of an object lands on one partition, so two coordination workers that each own
half of the partitions, each with its own :class:`CoActionState`, together find exactly the
batch's matches (their per-object rows merged); and a coordinator reading the by-object topic
(``--input actions``) finds the batch's campaigns. And the rekey stage waits out a broker that goes
away with a batch in hand (Apache Kafka, killed and restarted) instead of crashing.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from pathlib import Path

import polars as pl
import pytest
from brokers import RunningBroker, new_topic
from pipeline_helpers import pipeline_config, read_topic, wait_until

from detectors.coordination.coaction import CoActionConfig, co_action_networks, edges_from_matches
from detectors.coordination.graph import detect_campaigns
from detectors.coordination.incremental import (
    STREAM_NETWORK_TYPES,
    CoActionState,
    IncrementalConfig,
    matches_from_object_rows,
)
from stream.config import ChorusConfig
from stream.coordination.coordinator import Coordinator, CoordinatorSettings
from stream.coordination.rekey import Rekeyer, RekeySettings, decode_actions, encode_actions, object_actions
from stream.kafka.loop import BatchResult, Record
from stream.kafka.producer import produce_posts
from stream.kafka.topics import committed_offsets
from stream.simulation import generate_stream
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
    stream = generate_stream(n_organic=120, n_campaigns=2, campaign_size=6, seed=11)
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


class HeldRekeyer(Rekeyer):
    """Holds its second micro-batch until the test releases it (the first one has taught the
    producer the output topic's partitions, so sends do not block on metadata while the broker is
    away): the batch is in hand, not yet produced or committed, when the broker dies."""

    def __init__(self, config: ChorusConfig, settings: RekeySettings) -> None:
        super().__init__(config, settings)
        self.batches_seen = 0
        self.holding = threading.Event()
        self.release = threading.Event()

    def process_batch(self, records: list[Record]) -> BatchResult:
        self.batches_seen += 1
        if self.batches_seen == 2:
            self.holding.set()
            assert self.release.wait(120), "the test never released the batch"
        return super().process_batch(records)


@pytest.mark.timeout(300)
def test_rekey_waits_out_a_broker_outage_and_every_action_lands(fresh_apache_kafka, tmp_path: Path) -> None:
    broker = fresh_apache_kafka
    config = pipeline_config(broker, tmp_path, partitions=2, retry_backoff_max_s=2.0)
    # Short client timeouts: the flush (or the commit) gives up on the dead broker and the stage's
    # retry loop is what waits.
    config = config.with_overrides(kafka={"request_timeout_ms": 4_000})
    by_object = new_topic(broker, 2, prefix="by-object")
    posts = generate_stream(n_organic=40, n_campaigns=1, seed=2).posts.drop("machine_probability")
    ends = produce_posts(config, posts.to_dicts())
    group = f"{config.worker.group_id}-rekey"
    rekeyer = HeldRekeyer(config, RekeySettings(group_id=group, topic=by_object, batch_max_posts=100))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            rekeyer.run()
        except BaseException as exc:  # the assertions below report it
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        assert rekeyer.holding.wait(60), "the rekeyer never reached its second batch"
        broker.kill()
        rekeyer.release.set()
        wait_until(lambda: rekeyer.retries > 0 or bool(errors), 120, "a retry against the dead broker")
        assert thread.is_alive() and not errors, errors
        broker.start()
        wait_until(lambda: committed_offsets(config, group, config.topics.posts) == ends, 180,
                   "every post committed after the outage")
        assert thread.is_alive() and not errors, errors
    finally:
        rekeyer.release.set()
        rekeyer.request_stop()
        thread.join(timeout=60)
    assert not thread.is_alive(), "request_stop must end the rekeyer"
    assert not errors, errors
    assert rekeyer.retries > 0
    assert rekeyer.posts == posts.height  # a batch re-read after a refused commit counts once
    landed = {(bytes(r.key), bytes(r.value)) for r in read_topic(broker, by_object)}
    assert landed == set(encode_actions(object_actions(posts)))  # replays re-send identical actions
