"""The consume loop every stage shares (stream/kafka/loop.py), on Apache Kafka, with a real
transient failure: the output topic does not exist yet, so the broker has no metadata for it and
every send gives up after ``max_block_ms`` (a retriable ``KafkaTimeoutError``) until it is created.

What must hold: the failure is retried and counted, every output message lands exactly once, and
offsets are committed only after the messages are on the broker; a stop request while retrying ends
the loop with nothing committed, and the next member then processes the batch, once.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from brokers import RunningBroker, unique_topic_name
from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata
from pipeline_helpers import pipeline_config, read_topic

from stream.config import ChorusConfig
from stream.kafka.broker import create_topics
from stream.kafka.clients import make_consumer, make_producer
from stream.kafka.loop import (
    BatchLimits,
    BatchReport,
    BatchResult,
    BatchStage,
    OutMessage,
    Record,
    StreamLoop,
    _Rebalance,
)
from stream.kafka.producer import send_messages
from stream.kafka.retry import Retrier
from stream.kafka.topics import committed_offsets

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

MESSAGES = [(f"k{i}".encode(), f"message {i}".encode()) for i in range(40)]


class Echo(BatchStage[int]):
    """Each record to ``out`` as it came; counts the records of committed batches."""

    def __init__(self, out: str) -> None:
        self.out = out
        self.counted = 0
        self.reports: list[BatchReport] = []

    def process_batch(self, records: list[Record]) -> BatchResult[int]:
        messages = [OutMessage(self.out, r.value, key=r.key) for r in records]
        return BatchResult(messages, summary=len(records))

    def batch_done(self, records: list[Record], result: BatchResult[int], report: BatchReport) -> None:
        self.reports.append(report)
        if report.committed:
            self.counted += result.summary or 0


def run_loop(config: ChorusConfig, stage: Echo, retry: Retrier) -> None:
    consumer = make_consumer(config, client_id="loop-test")
    # A send to a topic without metadata blocks this long before it fails (60 s by default).
    producer = make_producer(config, client_id="loop-test-out", max_block_ms=1_500)
    loop: StreamLoop[int] = StreamLoop(
        consumer, producer, limits=BatchLimits(max_records=25, max_latency_ms=200), retry=retry,
        delivery_timeout_s=10, name="loop-test",
    )  # fmt: skip
    try:
        loop.run(stage, [config.topics.posts], idle_exit_s=2)
    finally:
        loop.close()


def sent(config: ChorusConfig) -> dict[int, int]:
    producer = make_producer(config, client_id="loop-test-input")
    try:
        return send_messages(producer, config.topics.posts, MESSAGES)
    finally:
        producer.close()


def landed(broker: RunningBroker, topic: str) -> list[tuple[bytes, bytes]]:
    return sorted((bytes(r.key), bytes(r.value)) for r in read_topic(broker, topic))


def test_a_transient_send_failure_is_retried_and_every_message_lands_once(
    apache_kafka: RunningBroker, tmp_path: Path
) -> None:
    config = pipeline_config(apache_kafka, tmp_path, partitions=2)
    ends = sent(config)
    out = unique_topic_name("loop-out")  # not created yet: the first sends fail
    retries = 0

    def on_retry() -> None:
        nonlocal retries
        retries += 1
        create_topics(apache_kafka.bootstrap, {out: 1})  # the broker "comes back" for this topic

    stage = Echo(out)
    run_loop(config, stage, Retrier(threading.Event(), 0.05, 0.2, "loop-test", on_retry=on_retry))

    assert retries >= 1
    assert landed(apache_kafka, out) == sorted(MESSAGES)  # none lost, none sent twice
    assert committed_offsets(config, config.worker.group_id, config.topics.posts) == ends
    assert stage.reports and all(r.committed for r in stage.reports)
    assert stage.counted == len(MESSAGES)


def test_a_stop_while_retrying_commits_nothing_and_the_next_member_processes_the_batch_once(
    apache_kafka: RunningBroker, tmp_path: Path
) -> None:
    config = pipeline_config(apache_kafka, tmp_path, partitions=2)
    ends = sent(config)
    out = unique_topic_name("loop-out")
    stop = threading.Event()
    stopped = Echo(out)
    run_loop(config, stopped, Retrier(stop, 0.05, 0.2, "loop-test", on_retry=stop.set))

    assert stop.is_set()
    assert stopped.reports == [] and stopped.counted == 0  # the batch in hand was never committed
    assert committed_offsets(config, config.worker.group_id, config.topics.posts) == {}

    create_topics(apache_kafka.bootstrap, {out: 1})
    successor = Echo(out)
    run_loop(config, successor, Retrier(threading.Event(), 0.05, 0.2, "loop-test"))
    assert landed(apache_kafka, out) == sorted(MESSAGES)
    assert committed_offsets(config, config.worker.group_id, config.topics.posts) == ends
    assert successor.counted == len(MESSAGES)


def test_a_partition_that_comes_straight_back_is_read_again_from_its_commit(
    apache_kafka: RunningBroker, tmp_path: Path
) -> None:
    """kafka-python keeps a partition's fetch position across a rebalance that gives it back to the
    same member. Everything after the partition's commit must be read again: a processed batch whose
    commit the rebalance refused and the records dropped from the buffer at the revocation (before
    the fix, 15 of 40 messages never landed after a rebalance in the test above)."""
    config = pipeline_config(apache_kafka, tmp_path, partitions=2)
    ends = {TopicPartition(config.topics.posts, p): end for p, end in sent(config).items()}
    consumer = make_consumer(config, client_id="loop-rewind")
    producer = make_producer(config, client_id="loop-rewind-out")
    back, elsewhere = (TopicPartition(config.topics.posts, p) for p in (0, 1))
    assert ends[back] > 8 and ends[elsewhere] > 8
    consumer.assign([back, elsewhere])
    loop: StreamLoop[int] = StreamLoop(
        consumer, producer, limits=BatchLimits(max_records=6, max_latency_ms=500),
        retry=Retrier(threading.Event(), 0.05, 0.2, "loop-test"), delivery_timeout_s=10, name="loop-test",
    )  # fmt: skip
    try:
        assert loop.commit({back: OffsetAndMetadata(2, "", -1)})  # the last commit before the rebalance
        processed = loop._collect()  # processed; its commit is then refused by the rebalance
        loop._buffer = loop._collect()  # polled, not processed yet
        assert loop._buffer and processed
        positions = {tp: consumer.position(tp) for tp in (back, elsewhere)}
        assert positions[back] > 2
        listener = _Rebalance(loop, Echo("unused"))

        listener.on_partitions_revoked([back, elsewhere])
        assert loop._buffer == []
        listener.on_partitions_assigned([back])  # `elsewhere` goes to another member

        loop.limits = BatchLimits(max_records=100, max_latency_ms=500)
        again: list[Record] = []
        while len([r for r in again if r.partition == back.partition]) < ends[back] - 2:
            polled = loop._collect()
            assert polled, "the partition that came back stopped short of its end"
            again += polled
        assert sorted(r.offset for r in again if r.partition == back.partition) == list(range(2, ends[back]))
        assert all(r.offset >= positions[elsewhere] for r in again if r.partition == elsewhere.partition)
    finally:
        loop.close()
