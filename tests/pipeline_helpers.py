"""Helpers for tests that run the real pipeline: worker processes over a real broker into a store."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from brokers import CONSUMER_GROUP_TIMEOUTS, RunningBroker, new_topic
from kafka import KafkaConsumer

from stream.config import ChorusConfig
from stream.kafka.messages import PostValidator, RawMessage, encode_post
from stream.kafka.topics import committed_offsets
from stream.pipeline.processes import spawn_worker_process, write_private_config


def pipeline_config(broker: RunningBroker, tmp_path: Path, *, partitions: int = 4, **worker: Any) -> ChorusConfig:
    """A configuration with fresh topics and group on ``broker`` and a SQLite store in ``tmp_path``."""
    prefix = f"t{uuid.uuid4().hex[:6]}"
    return ChorusConfig().with_overrides(
        kafka={"bootstrap_servers": broker.bootstrap},
        topics={
            "posts": new_topic(broker, partitions, prefix=f"{prefix}-posts"),
            "flags": new_topic(broker, partitions, prefix=f"{prefix}-flags"),
            "dead_letter": new_topic(broker, 1, prefix=f"{prefix}-dlq"),
            "partitions": partitions,
        },
        worker={"group_id": f"{prefix}-workers", **CONSUMER_GROUP_TIMEOUTS, "log_interval_s": 2.0, **worker},
        store={"url": f"sqlite:///{tmp_path / 'chorus.db'}"},
    )


class WorkerPool:
    """Worker processes started like ``chorus worker`` would start them, each with a log file."""

    def __init__(self, config: ChorusConfig, directory: Path) -> None:
        self.directory = directory
        self.config_path = write_private_config(config, directory)
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, worker_id: str) -> subprocess.Popen:
        process = spawn_worker_process(self.config_path, worker_id, log_file=self.log_path(worker_id))
        self.processes[worker_id] = process
        return process

    def log_path(self, worker_id: str) -> Path:
        return self.directory / f"{worker_id}.log"

    def logs(self) -> str:
        return "\n".join(
            f"--- {wid} ---\n" + self.log_path(wid).read_text(errors="replace")[-4000:] for wid in self.processes
        )

    def stop_all(self, timeout_s: float = 60.0) -> dict[str, int]:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = {}
        for wid, process in self.processes.items():
            try:
                codes[wid] = process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[wid] = process.wait()
        return codes


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, on_timeout: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}\n{on_timeout()}")
        time.sleep(0.3)


def all_committed(config: ChorusConfig, ends: dict[int, int]) -> bool:
    committed = committed_offsets(config, config.worker.group_id, config.topics.posts)
    return all(committed.get(p, 0) >= end for p, end in ends.items())


def read_topic(broker: RunningBroker, topic: str, timeout_s: float = 30.0, idle_s: float = 3.0) -> list[Any]:
    """Every record on ``topic`` (no group: assigned partitions from the beginning)."""
    consumer = KafkaConsumer(
        topic, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
        group_id=None, consumer_timeout_ms=int(idle_s * 1000),
    )
    records: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=int(idle_s * 1000))
            if not batch and records:
                break
            for rs in batch.values():
                records.extend(rs)
    finally:
        consumer.close()
    return records


def expected_flags(posts: list[dict[str, Any]], detectors: list[Any]) -> set[str]:
    """Flag ids the detectors must raise on these posts, computed without Kafka or the store."""
    validated = PostValidator().validate(
        [RawMessage("t", 0, i, None, encode_post(p)) for i, p in enumerate(posts)]
    )
    flag_ids: set[str] = set()
    for detector in detectors:
        detections = detector.detect(validated.posts)
        flag_ids |= {f"{detections.detector}:{pid}" for pid, f in zip(detections.post_ids, detections.flagged,
                                                                       strict=True) if f}
    return flag_ids


def header(record: Any, name: str) -> str:
    return dict(record.headers or [])[name].decode()


def decode(record: Any) -> dict[str, Any]:
    return json.loads(record.value)
