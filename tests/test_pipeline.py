"""The pipeline end to end on real brokers (Apache Kafka 4.x and Tansu): nothing lost, nothing doubled."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from pipeline_helpers import (
    WorkerPool,
    all_committed,
    decode,
    expected_flags,
    header,
    pipeline_config,
    read_topic,
    wait_until,
)

from detectors.base import Detections, ScoringDetector
from detectors.boilerplate import LlmBoilerplateDetector
from stream.kafka.producer import produce_posts
from stream.kafka.topics import committed_offsets
from stream.pipeline.detectors import build_detectors
from stream.pipeline.worker import PostWorker
from stream.simulation import SimulationConfig, malformed_messages, simulate_posts
from stream.store.database import Store

pytestmark = pytest.mark.kafka


def test_posts_land_exactly_once_when_a_worker_is_killed(broker, tmp_path: Path) -> None:
    """10,000 posts, two workers on four partitions, one SIGKILLed midway and replaced."""
    config = pipeline_config(broker, tmp_path, partitions=4, batch_max_posts=200)
    posts = simulate_posts(SimulationConfig(seed=11, posts=10_000))
    broken = list(malformed_messages())
    ends = produce_posts(config, posts, extra=[(None, raw) for _reason, raw in broken])
    assert sum(ends.values()) == 10_000 + len(broken)
    assert len(ends) == 4, "the simulated accounts should spread over every partition"

    pool = WorkerPool(config, tmp_path)
    victim = pool.start("worker-a")
    pool.start("worker-b")
    store = Store.open(config.store.url)
    try:
        wait_until(lambda: store.count("posts") >= 3_000, 180, "3,000 posts in the store", pool.logs)
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=30) == -signal.SIGKILL
        pool.start("worker-c")
        # the replacement takes part: it is in the group before the stream is drained and stopped
        wait_until(lambda: "partitions assigned" in pool.log_path("worker-c").read_text(), 180,
                   "worker-c in the group", pool.logs)  # fmt: skip
        wait_until(lambda: all_committed(config, ends), 300, "every offset committed", pool.logs)
        codes = pool.stop_all()
        assert codes["worker-b"] == 0 and codes["worker-c"] == 0, pool.logs()

        stored = store.frame("posts")
        assert stored.height == 10_000
        assert set(stored["post_id"]) == {p["post_id"] for p in posts}
        assert store.count("detector_results") == 10_000
        want_flags = expected_flags(posts, [LlmBoilerplateDetector()])
        assert len(want_flags) > 100, "the simulated stream should trip the boilerplate detector"
        assert set(store.frame("flags")["flag_id"]) == want_flags
        dead = store.frame("dead_letters")
        assert sorted(dead["reason"]) == sorted(reason for reason, _raw in broken)
    finally:
        store.close()

    flag_records = read_topic(broker, config.topics.flags)
    assert {decode(r)["flag_id"] for r in flag_records} == want_flags
    assert all(r.key.decode() == decode(r)["post_id"] for r in flag_records)
    dead_records = read_topic(broker, config.topics.dead_letter)
    assert {header(r, "chorus.reason") for r in dead_records} == {reason for reason, _ in broken}
    assert {bytes(r.value) for r in dead_records} == {raw for _, raw in broken}


def test_malformed_messages_go_to_dead_letters_and_the_worker_keeps_going(broker, tmp_path: Path) -> None:
    config = pipeline_config(broker, tmp_path, partitions=1)
    before = simulate_posts(SimulationConfig(seed=3, posts=50))
    after = simulate_posts(SimulationConfig(seed=4, posts=50))
    for post in after:
        post["post_id"] = "after-" + post["post_id"]
    broken = list(malformed_messages())
    produce_posts(config, before, extra=[(b"k-" + reason.encode(), raw) for reason, raw in broken])
    produce_posts(config, after)

    store = Store.open(config.store.url)
    try:
        worker = PostWorker(config, store, build_detectors(("llm_boilerplate",), config), worker_id="w")
        stats = worker.run(idle_exit_s=4)
        assert stats.valid == 100 and stats.rejected == len(broken)
        assert store.count("posts") == 100
        dead = store.frame("dead_letters").sort("source_offset")
        assert dead["reason"].to_list() == [reason for reason, _ in broken]
        assert all(dead["error"].str.len_chars() > 10), "every rejection explains itself"
        assert dead["source_offset"].to_list() == list(range(50, 50 + len(broken)))
    finally:
        store.close()

    records = read_topic(broker, config.topics.dead_letter)
    assert len(records) == len(broken)
    for record, (reason, raw) in zip(sorted(records, key=lambda r: r.offset), broken, strict=True):
        assert header(record, "chorus.reason") == reason
        assert bytes(record.value) == raw, "the original bytes are kept for replay"
        assert record.key == b"k-" + reason.encode()
        topic, _partition, offset = header(record, "chorus.source").rsplit("/", 2)
        assert topic == config.topics.posts and int(offset) >= 50
        assert header(record, "chorus.error")


def test_a_restarted_group_resumes_from_committed_offsets(broker, tmp_path: Path) -> None:
    config = pipeline_config(broker, tmp_path, partitions=2)
    first = simulate_posts(SimulationConfig(seed=5, posts=300))
    second = [dict(p, post_id="second-" + p["post_id"]) for p in simulate_posts(SimulationConfig(seed=6, posts=200))]
    produce_posts(config, first)
    store = Store.open(config.store.url)
    try:
        detectors = build_detectors(("llm_boilerplate",), config)
        assert PostWorker(config, store, detectors, worker_id="w1").run(idle_exit_s=4).valid == 300
        produce_posts(config, second)
        stats = PostWorker(config, store, detectors, worker_id="w2").run(idle_exit_s=4)
        assert stats.messages == 200, "the new member must start at the committed offsets, not re-read"
        assert store.count("posts") == 500
    finally:
        store.close()


class _HeldDetector(LlmBoilerplateDetector):
    """The boilerplate detector, holding the first batch that holds a post whose id starts with
    ``prefix`` until the test releases it: the batch is in hand (read, not yet produced or
    committed) when the test takes the broker away."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix
        self.holding = threading.Event()
        self.release = threading.Event()

    def detect(self, posts: pl.DataFrame, threshold: str = "default") -> Detections:
        if not self.holding.is_set() and posts["post_id"].str.starts_with(self.prefix).any():
            self.holding.set()
            assert self.release.wait(120), "the test never released the batch"
        return super().detect(posts, threshold)


def test_the_worker_survives_the_broker_going_away(fresh_apache_kafka, tmp_path: Path) -> None:
    """Broker down with a batch in hand: its delivery and commit wait the outage out (counted as
    retries), no crash, every post lands, and none is counted twice."""
    broker = fresh_apache_kafka
    config = pipeline_config(broker, tmp_path, partitions=2, retry_backoff_max_s=2.0)
    # Short client timeouts, so the delivery (or the commit) gives up on the dead broker and the
    # worker's retry loop is what waits, well before the broker is back.
    config = config.with_overrides(kafka={"request_timeout_ms": 4_000})
    first = simulate_posts(SimulationConfig(seed=8, posts=400))
    second = [dict(p, post_id="late-" + p["post_id"]) for p in simulate_posts(SimulationConfig(seed=9, posts=400))]
    produce_posts(config, first)

    store = Store.open(config.store.url)
    detector = _HeldDetector("late-")
    worker = PostWorker(config, store, [detector], worker_id="survivor")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:  # the assertion below reports it
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: store.count("posts") == 400, 120, "the first 400 posts")
        ends = produce_posts(config, second)  # end offsets: every post of both halves
        assert detector.holding.wait(60), "the worker never read the posts produced second"
        broker.kill()
        detector.release.set()
        # The batch in hand now meets the dead broker when it delivers its flags or commits.
        wait_until(lambda: worker.stats.retries > 0 or bool(errors), 120, "a retry against the dead broker")
        assert thread.is_alive() and not errors, errors
        broker.start()
        wait_until(lambda: store.count("posts") == 800 and all_committed(config, ends), 180,
                   "the 400 posts read before the outage, stored and committed after it")
        assert thread.is_alive() and not errors, errors
    finally:
        detector.release.set()
        worker.request_stop()
        thread.join(timeout=60)
        store.close()
    assert not thread.is_alive(), "request_stop must end the worker"
    assert not errors, errors
    assert worker.stats.retries > 0
    # Counted once each, although the batch in hand may have been read twice (a rebalance after
    # the restart refuses its commit, and the new owner, this worker again, re-reads it).
    assert worker.stats.valid == 800


def test_sigterm_finishes_the_batch_commits_and_leaves(broker, tmp_path: Path) -> None:
    # Small batches, so SIGTERM very likely arrives with a batch in hand and work left over.
    config = pipeline_config(broker, tmp_path, partitions=2, batch_max_posts=50)
    posts = simulate_posts(SimulationConfig(seed=12, posts=2_000))
    ends = produce_posts(config, posts)
    pool = WorkerPool(config, tmp_path)
    pool.start("worker")
    store = Store.open(config.store.url)
    try:
        wait_until(lambda: store.count("posts") >= 300, 120, "the worker to get going", pool.logs)
        assert pool.stop_all()["worker"] == 0, pool.logs()
        log = pool.log_path("worker").read_text()
        assert "SIGTERM received" in log and "left the group" in log
        # Every stored post is committed and nothing uncommitted was stored: the batch in hand
        # was finished and committed before the worker left.
        stored = store.count("posts")
        committed = committed_offsets(config, config.worker.group_id, config.topics.posts)
        assert sum(committed.values()) == stored

        pool.start("worker-2")
        wait_until(lambda: all_committed(config, ends), 180, "the rest of the stream", pool.logs)
        pool.stop_all()
        assert store.count("posts") == 2_000
        metrics = store.frame("worker_metrics")
        processed = dict(metrics.group_by("worker_id").agg(pl.col("batch_size").sum()).iter_rows())
        expected = {"worker": stored, "worker-2": 2_000 - stored}
        assert processed == {w: n for w, n in expected.items() if n}, "no message was read twice"
    finally:
        store.close()


class _PoisonedDetector(ScoringDetector):
    """Puts an object JSON cannot hold into the evidence of posts that say 'poison' (a detector bug
    the store refuses), and NaN scores on others (not scored: stored as NULL, never refused)."""

    name = "poisoned"

    def decision_function(self, posts: pl.DataFrame) -> np.ndarray:
        return np.where(posts["text"].str.contains("nan-me").to_numpy(), np.nan, 0.0)

    def explain(self, posts: pl.DataFrame, scores: np.ndarray) -> list[dict]:
        return [{"bad": object()} if "poison" in text else {} for text in posts["text"]]


def test_posts_the_store_refuses_become_dead_letters_and_the_rest_land(tansu, tmp_path: Path) -> None:
    config = pipeline_config(tansu, tmp_path, partitions=1)
    posts = simulate_posts(SimulationConfig(seed=21, posts=60))
    posts[10]["text"] = "poison " + posts[10]["text"]
    posts[40]["text"] = "poison " + posts[40]["text"]
    posts[50]["text"] = "nan-me " + posts[50]["text"]
    produce_posts(config, posts)
    store = Store.open(config.store.url)
    try:
        stats = PostWorker(config, store, [_PoisonedDetector()], worker_id="w").run(idle_exit_s=4)
        assert stats.valid == 58 and stats.rejected == 2
        assert store.count("posts") == 58
        dead = store.frame("dead_letters")
        assert dead["reason"].to_list() == ["store_rejected", "store_rejected"]
        assert all("refused" in e for e in dead["error"])
        unscored = store.frame("detector_results", where="score IS NULL")
        assert unscored["post_id"].to_list() == [posts[50]["post_id"]]
    finally:
        store.close()


@pytest.mark.postgres
@pytest.mark.skipif(not os.environ.get("CHORUS_TEST_PG_URL"), reason="CHORUS_TEST_PG_URL is not set (.ci/postgres.sh)")
@pytest.mark.parametrize("review_db_url", ["postgresql"], indirect=True)
def test_workers_share_a_postgresql_store(tansu, tmp_path: Path, review_db_url: str) -> None:
    """The multi-host set-up: several workers, one PostgreSQL store, every post exactly once."""
    config = pipeline_config(tansu, tmp_path, partitions=4).with_overrides(store={"url": review_db_url})
    posts = simulate_posts(SimulationConfig(seed=23, posts=3_000))
    ends = produce_posts(config, posts)
    pool = WorkerPool(config, tmp_path)
    pool.start("host-a")
    pool.start("host-b")
    try:
        wait_until(lambda: all_committed(config, ends), 240, "every offset committed", pool.logs)
    finally:
        codes = pool.stop_all()
    assert set(codes.values()) == {0}, pool.logs()
    with Store.open(review_db_url) as store:
        assert store.dialect == "postgresql"
        assert set(store.frame("posts")["post_id"]) == {p["post_id"] for p in posts}
        assert store.count("detector_results") == 3_000
        assert set(store.frame("flags")["flag_id"]) == expected_flags(posts, [LlmBoilerplateDetector()])
