"""The graph stage runs in the background: consumption goes on, the result is the blocking one's.

A slowed graph stage (the first run waits until the test lets it go) shows that the coordinator
keeps consuming while a run is in flight, writes and commits nothing for it until it is done, and
then commits only the offsets its snapshot covered (older than the live state's); at the end the
campaigns in the store and the committed offsets are those of the blocking coordinator, and a
restart from the background coordinator's commit changes nothing.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from brokers import RunningBroker
from pipeline_helpers import pipeline_config, read_topic, wait_until

from detectors.coordination.graph import CampaignConfig, CampaignResult, detect_campaigns
from detectors.coordination.incremental import campaigns_from_state
from stream.config import ChorusConfig
from stream.coordination.coordinator import Coordinator, CoordinatorSettings
from stream.kafka.producer import produce_posts
from stream.kafka.topics import committed_offsets
from stream.simulation import generate_stream
from stream.store.database import Store

pytestmark = pytest.mark.kafka


class SlowGraphStage:
    """``campaigns_from_state`` whose first call waits for :attr:`release` (at most a minute)."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.snapshot_posts: list[int] = []

    def __call__(self, state: Any, config: CampaignConfig, previous: Mapping[str, frozenset[str]] | None = None
                 ) -> CampaignResult:  # fmt: skip
        self.snapshot_posts.append(state.stats.posts)
        if not self.started.is_set():
            self.started.set()
            assert self.release.wait(60), "the test never released the graph stage"
        return campaigns_from_state(state, config, previous)


def stored(store: Store) -> dict[frozenset[str], float]:
    """Members -> score of every stored campaign."""
    members = store.frame("campaign_members").group_by("campaign_id").agg("account_id")
    by_id = {cid: frozenset(accounts) for cid, accounts in members.iter_rows()}
    return {by_id[cid]: score for cid, score in store.frame("campaigns").select("campaign_id", "score").iter_rows()}


def run_in_thread(coordinator: Coordinator, idle_exit_s: float = 3) -> threading.Thread:
    runner = threading.Thread(target=coordinator.run, kwargs={"idle_exit_s": idle_exit_s})
    runner.start()
    return runner


def recording_commits(coordinator: Coordinator) -> list[dict[int, int]]:
    """Every commit the coordinator makes, as {partition: offset}."""
    commits: list[dict[int, int]] = []
    commit = coordinator._commit

    def record(offsets: Mapping[Any, Any]) -> None:
        if offsets:
            commits.append({tp.partition: meta.offset for tp, meta in offsets.items()})
        commit(offsets)

    coordinator._commit = record  # type: ignore[method-assign]
    return commits


def test_consumption_goes_on_while_the_graph_runs_and_the_result_is_the_blocking_one(
    tansu: RunningBroker, tmp_path: Path
) -> None:
    config: ChorusConfig = pipeline_config(tansu, tmp_path, partitions=2)
    settings = CoordinatorSettings(group_id=f"{config.worker.group_id}-bg", horizon_s=30 * 86_400,
                                   graph_interval_s=0.5, batch_max_posts=300)  # fmt: skip
    stream = generate_stream(n_organic=150, n_campaigns=3, campaign_size=7, duration_s=4 * 3600, seed=3)
    posts = stream.posts.drop("machine_probability")
    middle = posts["created_at"].min() + (posts["created_at"].max() - posts["created_at"].min()) / 2
    first, second = posts.filter(pl.col("created_at") < middle), posts.filter(pl.col("created_at") >= middle)
    expected = detect_campaigns(posts, settings.campaign_config())
    store = Store.open(config.store.url)
    slow = SlowGraphStage()
    produce_posts(config, first.to_dicts())
    coordinator = Coordinator(config, store, settings, find_campaigns=slow)
    runner = run_in_thread(coordinator)
    try:
        assert slow.started.wait(60), "no graph run started"
        # The executor may start the run before the loop has recorded it: wait for the record.
        wait_until(lambda: coordinator.graph_running, 10, "the run recorded as in flight")
        at_start = coordinator.stats.messages
        produce_posts(config, second.to_dicts())
        # The run is in flight, and the coordinator reads the whole second half meanwhile.
        wait_until(lambda: coordinator.stats.messages == posts.height, 60, "the second half consumed")
        assert coordinator.stats.messages > at_start and coordinator.graph_running
        assert coordinator.state.stats.posts == posts.height
        assert store.count("campaigns") == 0  # nothing written for a run in flight
        assert committed_offsets(config, settings.group_id, config.topics.posts) == {}  # nor committed
    finally:
        slow.release.set()
        runner.join(timeout=120)
    assert not runner.is_alive()
    assert slow.snapshot_posts[0] == first.height  # the first run saw its snapshot, not the live state
    assert slow.snapshot_posts[-1] == posts.height
    background = stored(store)
    background_commit = committed_offsets(config, settings.group_id, config.topics.posts)
    background_flags = {json.loads(r.value)["flag_id"] for r in read_topic(tansu, config.topics.flags)}
    store.close()

    # The blocking coordinator (graph stage in the loop) over the same topic, into its own store.
    blocking_settings = dataclasses.replace(
        settings, group_id=f"{settings.group_id}-blocking", graph_in_background=False
    )
    blocking_config = config.with_overrides(store={"url": f"sqlite:///{tmp_path / 'blocking.db'}"})
    blocking_store = Store.open(blocking_config.store.url)
    blocking = Coordinator(blocking_config, blocking_store, blocking_settings)
    run_in_thread(blocking).join(timeout=120)
    assert background == stored(blocking_store)
    assert set(background) == set(expected.members.values())
    batch_scores = {frozenset(r["members"]): r["score"] for r in expected.campaigns.iter_rows(named=True)}
    assert background == pytest.approx(batch_scores)
    assert background_commit == committed_offsets(config, blocking_settings.group_id, config.topics.posts)
    assert background_flags  # and each campaign version was flagged
    blocking_store.close()


def test_a_run_commits_only_what_its_snapshot_covered_and_a_restart_changes_nothing(
    tansu: RunningBroker, tmp_path: Path
) -> None:
    """Twelve hours of posts, a two-hour horizon: while the first (slow) run is in flight the live
    horizon moves on by hours; the run then commits its snapshot's horizon start, which is older."""
    config: ChorusConfig = pipeline_config(tansu, tmp_path, partitions=2)
    settings = CoordinatorSettings(group_id=f"{config.worker.group_id}-bg", horizon_s=2 * 3600,
                                   graph_interval_s=0.5, batch_max_posts=300)  # fmt: skip
    stream = generate_stream(n_organic=120, n_campaigns=2, campaign_size=6, duration_s=12 * 3600,
                             bursts_per_campaign=48, seed=5)  # fmt: skip
    posts = stream.posts.drop("machine_probability")
    cut = posts["created_at"].min() + (posts["created_at"].max() - posts["created_at"].min()) / 3
    first, rest = posts.filter(pl.col("created_at") < cut), posts.filter(pl.col("created_at") >= cut)
    store = Store.open(config.store.url)
    try:
        slow = SlowGraphStage()
        produce_posts(config, first.to_dicts())
        coordinator = Coordinator(config, store, settings, find_campaigns=slow)
        commits = recording_commits(coordinator)
        runner = run_in_thread(coordinator)
        try:
            assert slow.started.wait(60), "no graph run started"
            produce_posts(config, rest.to_dicts())
            wait_until(lambda: coordinator.stats.messages == posts.height, 60, "the rest consumed")
            assert coordinator.graph_running and not commits
        finally:
            slow.release.set()
            runner.join(timeout=120)
        assert not runner.is_alive()
        assert len(commits) >= 2
        snapshot_commit, last_commit = commits[0], commits[-1]
        # The slow run's commit is its snapshot's horizon start: older than where the live horizon
        # started by then (eight more hours of posts had moved it on).
        assert all(snapshot_commit[p] <= last_commit[p] for p in last_commit)
        assert sum(snapshot_commit.values()) < sum(last_commit.values())
        assert sum(snapshot_commit.values()) <= first.height
        assert committed_offsets(config, settings.group_id, config.topics.posts) == last_commit
        campaigns, flags = store.frame("campaigns"), len(read_topic(tansu, config.topics.flags))
        assert campaigns.height >= 2

        again = Coordinator(config, store, settings)
        run_in_thread(again).join(timeout=120)
        assert again.stats.messages == posts.height - sum(last_commit.values())  # only the horizon re-read
        assert store.frame("campaigns").equals(campaigns)
        assert len(read_topic(tansu, config.topics.flags)) == flags
    finally:
        store.close()
