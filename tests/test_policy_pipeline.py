"""The policy stage in the real pipeline (Apache Kafka 4.x and Tansu): actions reach the actions
topic keyed by post id, shadow records never do, and a replay sends the same action ids again."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from brokers import new_topic
from pipeline_helpers import decode, expected_flags, pipeline_config, read_topic

from detectors.boilerplate import LlmBoilerplateDetector
from stream.kafka.producer import produce_posts
from stream.pipeline.worker import PostWorker
from stream.policy.actions import REVERSAL_SCHEMA, pending_reversals, reverse_actions
from stream.simulation import SimulationConfig, simulate_posts
from stream.store.database import Store
from stream.store.reviewers import Reviewer

pytestmark = pytest.mark.kafka

ACTIVE = """
[policy]
id = "pipeline"
version = "1"

[[rules]]
id = "boilerplate-label"
action = "label"
label = "likely machine-written"
when = [ { detector = "llm_boilerplate", threshold = "default" } ]

[[rules]]
id = "boilerplate-replies-review"
action = "queue_review"
priority = 3
when = [ { detector = "llm_boilerplate", measure = "flagged", equals = true }, { field = "reply_to", is_null = false } ]
"""
#: The candidate labels every post with a hashtag: recorded, never sent.
SHADOW = """
[policy]
id = "pipeline"
version = "2-candidate"

[[rules]]
id = "hashtag-label"
action = "label"
label = "has hashtags"
when = [ { field = "hashtags", matches = "." } ]
"""


def policy_pipeline_config(broker, tmp_path: Path):
    """A pipeline with the ACTIVE and SHADOW policies pinned from files and its own actions topic."""
    (tmp_path / "active.toml").write_text(ACTIVE)
    (tmp_path / "shadow.toml").write_text(SHADOW)
    return pipeline_config(broker, tmp_path, partitions=2).with_overrides(policy={
        "active_file": str(tmp_path / "active.toml"),
        "shadow_file": str(tmp_path / "shadow.toml"),
        "actions_topic": new_topic(broker, 2, prefix="actions"),
    })


def test_actions_reach_the_topic_and_a_replay_repeats_their_ids(broker, tmp_path: Path) -> None:
    config = policy_pipeline_config(broker, tmp_path)
    posts = simulate_posts(SimulationConfig(seed=41, posts=600))
    produce_posts(config, posts)
    flagged = {f.split(":", 1)[1] for f in expected_flags(posts, [LlmBoilerplateDetector()])}

    with Store.open(config.store.url) as store:
        assert PostWorker(config, store, [LlmBoilerplateDetector()], worker_id="w1").run(idle_exit_s=4).valid == 600
        stored = store.frame("policy_actions")
        active = stored.filter(stored["mode"] == "active")
        shadow = stored.filter(stored["mode"] == "shadow")
        assert set(active.filter(active["rule_id"] == "boilerplate-label")["post_id"]) == flagged
        assert shadow.height > 50 and set(shadow["status"]) == {"shadow"}

        first = read_topic(broker, config.policy.actions_topic)
        messages = [decode(r) for r in first]
        assert {m["action_id"] for m in messages} == set(active["action_id"])
        assert len(messages) == active.height, "each action once"
        assert all(r.key.decode() == m["post_id"] for r, m in zip(first, messages, strict=True))
        assert {m["policy_version"] for m in messages} == {"1"}, "the shadow policy sends nothing"
        label = next(m for m in messages if m["rule_id"] == "boilerplate-label")
        assert label["schema"] == "chorus.action/1" and label["params"] == {"label": "likely machine-written"}
        assert label["scores"]["llm_boilerplate"]["flagged"] is True
        assert label["evidence"]["detectors"]["llm_boilerplate"]["phrases"]

        # Replay: another group reads the same posts into the same store.
        replay = config.with_overrides(worker={"group_id": config.worker.group_id + "-replay"})
        PostWorker(replay, store, [LlmBoilerplateDetector()], worker_id="w2").run(idle_exit_s=4)
        assert store.frame("policy_actions").drop("worker_id").equals(stored.drop("worker_id"))

    again = [decode(r) for r in read_topic(broker, config.policy.actions_topic)]
    assert len(again) == 2 * len(messages)
    assert {m["action_id"] for m in again} == {m["action_id"] for m in messages}, "no new action ids"


def test_a_reversal_in_the_console_reaches_the_actions_topic_once(broker, tmp_path: Path) -> None:
    """The console writes a reversal to the store; the next worker relays it to the actions topic,
    keyed like its action, marks it sent, and does not send it again."""
    config = policy_pipeline_config(broker, tmp_path)
    produce_posts(config, simulate_posts(SimulationConfig(seed=43, posts=300)))
    with Store.open(config.store.url) as store:
        PostWorker(config, store, [LlmBoilerplateDetector()], worker_id="w1").run(idle_exit_s=3)
        stored = store.frame("policy_actions").sort("action_id")
        emitted = stored.filter(stored["status"] == "emitted")["action_id"].to_list()[:3]
        shadow = stored.filter(stored["mode"] == "shadow")["action_id"].to_list()[:1]
        assert len(emitted) == 3 and shadow
        lead = Reviewer("lead@example.org", "lead")
        outcome = reverse_actions(store, lead, emitted + shadow, "model regression on replies, see incident 42")
        assert outcome.applied == emitted and set(outcome.conflicts) == set(shadow)
        assert [r.action_id for r in pending_reversals(store)] == sorted(emitted)

        # A worker with nothing to read still relays the reversal (and only once, across two runs).
        PostWorker(config, store, [LlmBoilerplateDetector()], worker_id="w2").run(idle_exit_s=2)
        PostWorker(config, store, [LlmBoilerplateDetector()], worker_id="w3").run(idle_exit_s=2)
        assert pending_reversals(store) == []
        marked = store.frame("policy_actions").filter(pl.col("reversal_emitted_at").is_not_null())
        assert sorted(marked["action_id"]) == sorted(emitted)

    records = read_topic(broker, config.policy.actions_topic)
    reversals = [(r, decode(r)) for r in records if decode(r)["schema"] == REVERSAL_SCHEMA]
    assert sorted(m["action_id"] for _, m in reversals) == sorted(emitted), "each reversal sent exactly once"
    by_id = {row["action_id"]: row for row in stored.iter_rows(named=True)}
    for record, message in reversals:
        assert record.key.decode() == message["post_id"] == by_id[message["action_id"]]["post_id"]
        assert message["reversal_id"] == f"{message['action_id']}:reversal"
        assert message["reversed_by"] == "lead@example.org" and "incident 42" in message["reason"]
        assert message["rule_id"] == by_id[message["action_id"]]["rule_id"]
