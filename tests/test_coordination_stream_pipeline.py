"""The coordinator end to end on the Tansu broker: posts topic -> campaigns in the store and on the flags topic.

A generated stream with injected campaigns goes onto a real posts topic (with a few malformed
messages, which the coordinator skips). The coordinator runs as ``chorus coordinator`` would, in a
child process; it is killed with SIGKILL half-way through the stream and started again, and once
more with nothing new to read. What must hold: the campaigns in the store are exactly the batch
stage's on the whole stream (same members, same scores: the restarted coordinator rebuilt its
horizon), each once (no campaign duplicated under a new id), with their evidence; each campaign's
current version was flagged on the flags topic exactly once; the last restart changes nothing.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from brokers import RunningBroker
from pipeline_helpers import pipeline_config, read_topic, wait_until

from detectors.coordination.graph import detect_campaigns
from stream.config import ChorusConfig
from stream.coordination.coordinator import CAMPAIGN_FLAG_SCHEMA, Coordinator, CoordinatorSettings
from stream.kafka.producer import produce_posts
from stream.kafka.topics import committed_offsets
from stream.pipeline.processes import write_private_config
from stream.simulation import generate_stream
from stream.store.database import Store

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[1]
SETTINGS = CoordinatorSettings(horizon_s=30 * 86_400, graph_interval_s=1.0)


def start_coordinator(config_path: Path, group: str, log_file: Path, *, idle_exit_s: float | None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "stream.cli.coordinator", "coordinator", "--config", str(config_path),
           "--group", group, "--horizon-s", str(SETTINGS.horizon_s), "--graph-interval-s", "1",
           "--batch-max-posts", "400"]  # fmt: skip
    if idle_exit_s is not None:
        cmd += ["--idle-exit", str(idle_exit_s)]
    with open(log_file, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)


def as_messages(posts: pl.DataFrame) -> list[dict[str, Any]]:
    return posts.drop("machine_probability").to_dicts()


def stored_campaigns(store: Store) -> dict[str, dict[str, Any]]:
    campaigns = store.frame("campaigns")
    members = store.frame("campaign_members")
    out = {}
    for row in campaigns.iter_rows(named=True):
        row["summary"] = json.loads(row["summary"])
        row["members"] = frozenset(members.filter(pl.col("campaign_id") == row["campaign_id"])["account_id"])
        out[row["campaign_id"]] = row
    return out


def test_coordinator_finds_the_campaigns_and_survives_a_crash(tansu: RunningBroker, tmp_path: Path) -> None:
    config: ChorusConfig = pipeline_config(tansu, tmp_path, partitions=3)
    group = f"{config.worker.group_id}-coordinator"
    config_path = write_private_config(config, tmp_path)
    log_file = tmp_path / "coordinator.log"
    stream = generate_stream(n_organic=150, n_campaigns=3, campaign_size=7, duration_s=4 * 3600, seed=3)
    posts = stream.posts
    middle = posts["created_at"].min() + (posts["created_at"].max() - posts["created_at"].min()) / 2
    first, second = posts.filter(pl.col("created_at") < middle), posts.filter(pl.col("created_at") >= middle)
    expected = detect_campaigns(posts.drop("machine_probability"), SETTINGS.campaign_config())
    store = Store.open(config.store.url)
    logs = lambda: log_file.read_text(errors="replace")[-6000:]  # noqa: E731

    # 1. The first half (and three messages that are not posts); campaigns appear; then a crash.
    produce_posts(config, as_messages(first), extra=[(None, b"not json"), (b"k", b"{}"), (None, b"")])
    process = start_coordinator(config_path, group, log_file, idle_exit_s=None)
    try:
        wait_until(lambda: store.count("campaigns") > 0, 90, "campaigns from the first half", logs)
        wait_until(lambda: bool(committed_offsets(config, group, config.topics.posts)), 30, "a commit", logs)
        after_first = set(stored_campaigns(store))
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    # 2. The second half; a fresh coordinator rebuilds the horizon from the topic and carries on.
    produce_posts(config, as_messages(second))
    process = start_coordinator(config_path, group, log_file, idle_exit_s=4)
    assert process.wait(timeout=120) == 0, logs()
    assert "3 invalid skipped" in logs() or "(3 invalid" in logs(), logs()

    campaigns = stored_campaigns(store)
    found = {row["members"]: cid for cid, row in campaigns.items()}
    assert len(found) == len(campaigns), "two stored campaigns with the same members"
    assert set(found) == set(expected.members.values()), logs()  # nothing lost, nothing duplicated
    assert after_first <= set(campaigns), "a campaign of the first half lost its id"
    for members in stream.campaign_members().values():
        assert any(members <= found_members for found_members in found), members
    # Same scores as the batch stage on the whole stream: the restarted state held all of it.
    batch_scores = {frozenset(r["members"]): r["score"] for r in expected.campaigns.iter_rows(named=True)}
    for row in campaigns.values():
        assert row["score"] == pytest.approx(batch_scores[row["members"]], abs=1e-6)
        assert row["summary"]["detector"] == "coordination"
        assert row["summary"]["edges"] and all(e["evidence"] for e in row["summary"]["edges"])
        assert row["first_seen"] <= row["last_seen"]
    members_table = store.frame("campaign_members")
    assert members_table.height == sum(len(r["members"]) for r in campaigns.values())
    assert members_table["evidence"].null_count() == 0

    # Every campaign's current version was announced, each flag once.
    flags = [json.loads(r.value) for r in read_topic(tansu, config.topics.flags)]
    assert flags and all(f["schema"] == CAMPAIGN_FLAG_SCHEMA for f in flags)
    flag_ids = [f["flag_id"] for f in flags]
    assert len(flag_ids) == len(set(flag_ids)), "a campaign version was flagged twice"
    for cid, row in campaigns.items():
        assert f"coordination:{cid}:{row['summary']['version']}" in flag_ids
        assert row["summary"]["flagged_version"] == row["summary"]["version"]
    assert {f["campaign_id"] for f in flags} <= set(campaigns)

    # 3. A restart with nothing new: the horizon is rebuilt, and nothing changes anywhere.
    before = store.frame("campaigns")
    process = start_coordinator(config_path, group, log_file, idle_exit_s=3)
    assert process.wait(timeout=120) == 0, logs()
    assert store.frame("campaigns").equals(before)
    assert len(read_topic(tansu, config.topics.flags)) == len(flags)
    store.close()


def test_the_committed_offset_is_the_horizon_start_so_a_restart_rereads_only_the_horizon(
    tansu: RunningBroker, tmp_path: Path
) -> None:
    """Twelve hours of posts, a two-hour horizon: the coordinator commits where its horizon starts,
    and a restart re-reads from there (not from the beginning) and rebuilds the same campaigns."""
    config: ChorusConfig = pipeline_config(tansu, tmp_path, partitions=2)
    settings = CoordinatorSettings(
        group_id=f"{config.worker.group_id}-coordinator", horizon_s=2 * 3600, graph_interval_s=0.5, batch_max_posts=300
    )
    stream = generate_stream(n_organic=120, n_campaigns=2, campaign_size=6, duration_s=12 * 3600,
                             bursts_per_campaign=48, seed=5)  # fmt: skip
    produce_posts(config, as_messages(stream.posts))
    store = Store.open(config.store.url)
    try:
        first = Coordinator(config, store, settings)
        _run(first)
        committed = committed_offsets(config, settings.group_id, config.topics.posts)
        assert sum(committed.values()) > 0.5 * stream.posts.height, committed  # most posts left the horizon
        assert first.stats.messages == stream.posts.height
        campaigns, flags = store.frame("campaigns"), len(read_topic(tansu, config.topics.flags))
        assert campaigns.height >= 2

        again = Coordinator(config, store, settings)
        _run(again)
        assert again.stats.messages == stream.posts.height - sum(committed.values())
        assert again.stats.rebuilt_at_messages == again.stats.messages
        assert store.frame("campaigns").equals(campaigns)  # same campaigns, same ids, nothing rewritten
        assert len(read_topic(tansu, config.topics.flags)) == flags  # and nothing announced twice
    finally:
        store.close()


def _run(coordinator: Coordinator) -> None:
    runner = threading.Thread(target=coordinator.run, kwargs={"idle_exit_s": 3})
    runner.start()
    runner.join(timeout=120)
    assert not runner.is_alive(), "the coordinator did not stop"
