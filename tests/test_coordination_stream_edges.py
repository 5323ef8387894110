"""The scale-out path end to end: rekey, M coordination workers, the edges topic, ONE graph stage.

Without a broker: workers that each hold some objects report their new per-object match rows
and accepted actions; an :class:`ObjectMatchLedger` fed with them (in any order, some twice)
gives the batch's edges and campaigns. On Tansu: posts -> ``chorus rekey`` -> by-object topic ->
two coordination workers in one group (``--input actions --emit-edges``) -> edges topic -> the
graph stage -> the batch's campaigns in the store, each flagged once; a restarted graph stage
changes nothing.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import polars as pl
import pytest
from brokers import RunningBroker, new_topic
from pipeline_helpers import pipeline_config, read_topic

from detectors.coordination.coaction import CoActionConfig, co_action_networks
from detectors.coordination.graph import CampaignConfig, detect_campaigns
from detectors.coordination.incremental import (
    STREAM_NETWORK_TYPES,
    CoActionState,
    IncrementalConfig,
    ObjectMatchLedger,
    campaigns_from_state,
)
from stream.coordination.coordinator import Coordinator, CoordinatorSettings
from stream.coordination.graph_stage import decode_edges, encode_edges
from stream.coordination.rekey import Rekeyer, RekeySettings, object_actions
from stream.kafka.producer import produce_posts
from stream.simulation import generate_stream
from stream.store.database import Store

LONG = 30 * 86_400.0


def test_a_ledger_fed_by_workers_holding_some_objects_each_is_the_batch() -> None:
    posts = generate_stream(n_organic=200, n_campaigns=3, campaign_size=7, seed=3).posts.drop("machine_probability")
    actions = object_actions(posts).with_columns(worker=pl.col("route").hash(1) % 2).sample(fraction=1.0, seed=1)
    config = IncrementalConfig(horizon_s=LONG, max_posts_per_object=None)
    ledger = ObjectMatchLedger(config)
    for worker in (0, 1):
        state = CoActionState(config)
        mine = actions.filter(pl.col("worker") == worker).drop("worker", "route")
        for start in range(0, mine.height, 97):
            delta = state.add_actions(mine[start : start + 97])
            # Through the wire format, and some messages twice (at-least-once).
            values = encode_edges(delta.object_matches, delta.actions, source=f"w{worker}", rows_per_message=50)
            for value in values + values[: len(values) // 2]:
                rows, acts, _, bad = decode_edges([value])
                assert not bad
                ledger.apply(rows, acts)
    expected = co_action_networks(posts, CoActionConfig(), STREAM_NETWORK_TYPES)
    for network, edges in ledger.edges().items():
        assert edges.equals(expected[network]), network
    campaign_config = CampaignConfig(networks=STREAM_NETWORK_TYPES)
    batch = detect_campaigns(posts, campaign_config)
    result = campaigns_from_state(ledger, campaign_config)
    assert result.members == batch.members and len(batch.members) == 3
    assert result.campaigns.equals(batch.campaigns)
    copy = ledger.copy()
    ledger.apply(*decode_edges([b"not an edge message"])[:2])
    assert copy.held_rows() == ledger.held_rows()


def test_ledger_eviction_forgets_rows_older_than_the_horizon() -> None:
    posts = generate_stream(n_organic=100, n_campaigns=1, duration_s=6 * 3600, seed=2).posts
    state = CoActionState(IncrementalConfig(horizon_s=LONG))
    ledger = ObjectMatchLedger(IncrementalConfig(horizon_s=3600))
    deltas = [state.add(posts.sort("created_at")[start : start + 200]) for start in range(0, posts.height, 200)]
    for delta in deltas:
        ledger.apply(delta.object_matches, delta.actions)
    assert ledger.stats.evicted_slices > 0
    oldest = ledger.posts()["created_at"].min()
    assert oldest is not None and (posts["created_at"].max() - oldest).total_seconds() <= 3600 + 300
    assert ledger.activity()["n_posts"].sum() < state.activity()["n_posts"].sum()
    # The first micro-batch again, hours behind the newest post: late, counted, ignored.
    held = ledger.held_rows()
    assert ledger.apply(deltas[0].object_matches, deltas[0].actions) == (
        deltas[0].object_matches.height + deltas[0].actions.height
    )
    assert ledger.held_rows() == held


@pytest.mark.kafka
def test_two_workers_and_the_graph_stage_find_the_batch_campaigns(tansu: RunningBroker, tmp_path: Path) -> None:
    config = pipeline_config(tansu, tmp_path, partitions=2)
    by_object, edges = new_topic(tansu, 4, prefix="by-object"), new_topic(tansu, 2, prefix="edges")
    stream = generate_stream(n_organic=120, n_campaigns=2, campaign_size=6, seed=8)
    posts = stream.posts.drop("machine_probability")
    produce_posts(config, posts.to_dicts())
    Rekeyer(config, RekeySettings(group_id=f"{config.worker.group_id}-rekey", topic=by_object)).run(idle_exit_s=3)

    worker_settings = CoordinatorSettings(
        group_id=f"{config.worker.group_id}-coordination", topic=by_object, input="actions", emit_edges=True,
        edges_topic=edges, horizon_s=LONG, graph_interval_s=1.0, batch_max_posts=500,
    )  # fmt: skip
    workers = [Coordinator(config, None, worker_settings, coordinator_id=f"worker-{i}") for i in (1, 2)]
    runners = [threading.Thread(target=w.run, kwargs={"idle_exit_s": 4}) for w in workers]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join(timeout=120)
    assert not any(r.is_alive() for r in runners)
    assert all(w.stats.edge_messages > 0 for w in workers), [w.stats for w in workers]  # both did a share

    stage_settings = CoordinatorSettings(
        group_id=f"{config.worker.group_id}-graph", input="edges", edges_topic=edges, horizon_s=LONG,
        graph_interval_s=1.0,
    )  # fmt: skip
    store = Store.open(config.store.url)
    try:
        stage = Coordinator(config, store, stage_settings)
        stage.run(idle_exit_s=2)
        assert stage.stats.invalid == 0 and stage.stats.checkpoints >= 1
        batch = detect_campaigns(posts, stage_settings.campaign_config())
        members = store.frame("campaign_members").group_by("campaign_id").agg("account_id")
        found = {cid: frozenset(m) for cid, m in members.iter_rows()}
        assert set(found.values()) == set(batch.members.values()) and len(found) == 2
        scores = dict(store.frame("campaigns").select("campaign_id", "score").iter_rows())
        batch_scores = {frozenset(r["members"]): r["score"] for r in batch.campaigns.iter_rows(named=True)}
        assert {found[c]: s for c, s in scores.items()} == pytest.approx(batch_scores)
        flags = [json.loads(r.value) for r in read_topic(tansu, config.topics.flags)]
        assert sorted(f["campaign_id"] for f in flags) == sorted(found)  # each campaign flagged once

        # A restarted graph stage rebuilds its horizon from the edges topic and changes nothing.
        campaigns = store.frame("campaigns")
        again = Coordinator(config, store, stage_settings)
        again.run(idle_exit_s=2)
        assert again.stats.rebuilt_at_messages is not None
        assert store.frame("campaigns").equals(campaigns)
        assert len(read_topic(tansu, config.topics.flags)) == len(flags)
    finally:
        store.close()
