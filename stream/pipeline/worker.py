"""The stream worker: posts topic -> validation -> detectors -> store -> flags topic -> commit.

At-least-once, written down as one ordered list of steps, as quixstreams' checkpoint does it. The
worker does steps 1-4 and hands step 5's messages back (``process_batch``); the consume loop every
stage shares (:mod:`stream.kafka.loop`) polls the batch, sends and flushes them, and commits:

1. validate the micro-batch; bad messages become dead letters with their reason;
2. run every registered detector on the valid posts (one call per detector per batch);
3. evaluate the active and the shadow policy on the detections (``stream.policy``): actions,
   actions held back by a rule's circuit breaker, shadow records, breaker alerts;
4. write posts, detector results, flags, dead letters, policy actions and alerts and the previous
   batch's metrics to the store in ONE transaction, as upserts keyed by post id / action id (so a
   replay changes nothing);
5. produce flags (key = post id), the active policy's actions (key = post id), dead letters
   (original bytes) and, with ``worker.publish_embeddings``, every valid post with its sentence
   embedding to ``topics.embedded`` (key = account id, as the posts; what the coordination stage's
   paraphrase network reads), and flush the producer;
6. only then commit the consumer offsets of the batch.

A crash anywhere before step 6 means the batch is read again by whoever owns the partition next,
and steps 4-5 are idempotent (store upserts; flags carry a stable ``flag_id``, actions a stable
``action_id`` derived from policy version, rule and post). Transient failures
of the store or the broker are retried with exponential back-off instead of crashing the worker
(each one counts in ``WorkerStats.retries``). A batch whose commit a rebalance refused is counted
by its new owner only, not here. SIGTERM (``request_stop``) lets the batch in hand finish, commits
it and leaves the group.

Between batches, every ``policy.reload_interval_s``, a worker with the policy stage on also relays
the console's reversals of policy actions to the actions topic (the outbox described in
:mod:`stream.policy.actions`).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
from kafka import TopicPartition
from kafka.errors import KafkaError
from sqlalchemy.exc import SQLAlchemyError, StatementError

from detectors.base import Detections, Detector
from stream.config import ChorusConfig, ConfigError
from stream.kafka.clients import make_consumer, make_producer
from stream.kafka.loop import BatchLimits, BatchReport, BatchResult, BatchStage, OutMessage, Record, StreamLoop
from stream.kafka.messages import EmbeddedPostV1, PostValidator, RawMessage, Rejection, ValidatedBatch, encode_embedding
from stream.kafka.retry import Retrier
from stream.policy.actions import relay_reversals
from stream.policy.engine import PolicyEngine, PolicyOutcome, action_message
from stream.store.database import Store

log = logging.getLogger("chorus.worker")

FLAG_SCHEMA = "chorus.flag/1"

#: A dead letter carries the original bytes plus headers; past this the value is cut on the topic
#: (the store keeps it whole) so the producer never loops on a message the broker cannot take.
DEAD_LETTER_MAX_VALUE_BYTES = 1_000_000


@dataclass
class WorkerStats:
    """Running totals, for the periodic log line, the metrics table and tests."""

    batches: int = 0
    messages: int = 0
    valid: int = 0
    rejected: int = 0
    flagged: int = 0
    retries: int = 0
    commit_failures: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def add_stage(self, stage: str, seconds: float) -> None:
        self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds


@dataclass(frozen=True)
class _Processed:
    """What ``process_batch`` did, counted only once the loop has committed the batch."""

    messages: int
    valid: int
    rejected: int
    flagged: int
    timings: dict[str, float]


class PostWorker(BatchStage[_Processed]):
    """One member of the workers' consumer group."""

    def __init__(
        self,
        config: ChorusConfig,
        store: Store,
        detectors: Sequence[Detector],
        *,
        worker_id: str | None = None,
        policy: PolicyEngine | None = None,
    ) -> None:
        """``policy``: the policy stage; None builds it from ``config.policy`` (none when disabled)."""
        self.config = config
        self.store = store
        self.detectors = list(detectors)
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.policy = (
            policy if policy is not None
            else PolicyEngine.from_config(config, store, self.detectors, worker_id=self.worker_id)
        )
        self.validator = PostValidator(
            max_text_bytes=config.validation.max_text_bytes,
            max_message_bytes=config.validation.max_message_bytes,
            future_skew_s=config.validation.future_skew_s,
        )
        if config.worker.publish_embeddings and not any(
            getattr(d, "provides_embeddings", False) for d in self.detectors
        ):
            raise ConfigError(
                "worker.publish_embeddings: no detector of this worker computes embeddings "
                f"({', '.join(d.name for d in self.detectors) or 'none'}); add 'aitext' to worker.detectors"
            )
        self.stats = WorkerStats()
        self._stop = threading.Event()
        self._retry = Retrier(
            self._stop, config.worker.retry_backoff_initial_s, config.worker.retry_backoff_max_s, self.worker_id,
            on_retry=self._count_retry,
        )
        self._pending_metrics: dict[str, Any] | None = None
        self._loop: StreamLoop[_Processed] | None = None
        self._consumer: Any = None
        self._producer: Any = None
        self._last_log = time.monotonic()
        self._last_log_valid = 0
        self._last_relay = float("-inf")

    # -- lifecycle -------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Ask the worker to finish the batch in hand, commit, and leave the group."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, *, idle_exit_s: float | None = None) -> WorkerStats:
        """Consume until stopped (or, with ``idle_exit_s``, until no post arrived for that long)."""
        cfg = self.config
        self._consumer = make_consumer(cfg, client_id=f"{cfg.kafka.client_id_prefix}-{self.worker_id}")
        self._producer = make_producer(cfg, client_id=f"{cfg.kafka.client_id_prefix}-{self.worker_id}-out")
        self._loop = StreamLoop(
            self._consumer, self._producer, retry=self._retry, name=self.worker_id,
            limits=BatchLimits(cfg.worker.batch_max_posts, cfg.worker.batch_max_latency_ms),
            delivery_timeout_s=cfg.kafka.request_timeout_ms / 1000,
        )
        log.info(
            "%s: joining group %r on topic %r (batches of <= %d posts / %d ms; detectors: %s)",
            self.worker_id, cfg.worker.group_id, cfg.topics.posts, cfg.worker.batch_max_posts,
            cfg.worker.batch_max_latency_ms, ", ".join(d.name for d in self.detectors) or "none",
        )
        try:
            self._loop.run(self, [cfg.topics.posts], idle_exit_s=idle_exit_s)
        finally:
            self._shutdown()
        return self.stats

    def _count_retry(self) -> None:
        self.stats.retries += 1

    def between_batches(self, *, idle: bool) -> None:
        self._maybe_relay_reversals()
        self._maybe_log()

    def _maybe_relay_reversals(self, *, force: bool = False) -> None:
        """Send the console's reversals of policy actions to the actions topic (see
        :mod:`stream.policy.actions`), at most every ``policy.reload_interval_s``. A failure is
        logged and retried next time: it must not stop the stream."""
        if self.policy is None:
            return
        now = time.monotonic()
        if not force and now - self._last_relay < self.config.policy.reload_interval_s:
            return
        self._last_relay = now
        try:
            sent = relay_reversals(self.store, self._producer, self.config.policy.actions_topic,
                                   timeout_s=self.config.kafka.request_timeout_ms / 1000)
        except (KafkaError, SQLAlchemyError) as exc:
            log.warning("%s: reversals not relayed to the actions topic yet (%s); trying again in %.0f s",
                        self.worker_id, exc, self.config.policy.reload_interval_s)
            return
        if sent:
            log.info("%s: relayed %d reversed action(s) to %s", self.worker_id, sent,
                     self.config.policy.actions_topic)

    def _shutdown(self) -> None:
        if self._pending_metrics is not None:
            try:
                self.store.write_batch(posts=[], results=[], flags=[], dead_letters=[],
                                       metrics=self._pending_metrics)
            except (KafkaError, StatementError) as exc:
                log.warning("%s: last metrics row not written: %s", self.worker_id, exc)
            self._pending_metrics = None
        if self._loop is not None:
            self._maybe_relay_reversals(force=True)
            self._loop.close()
        self._maybe_log(force=True)
        log.info("%s: left the group after %d batches, %d posts", self.worker_id, self.stats.batches,
                 self.stats.valid)

    # -- one micro-batch -------------------------------------------------------------------
    def process_batch(self, records: list[Record]) -> BatchResult[_Processed]:
        """Steps 1-4 of the module docstring; the loop then delivers the messages and commits."""
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[stage] = now - clock
            self.stats.add_stage(stage, now - clock)
            clock = now

        raws = [
            RawMessage(r.topic, r.partition, r.offset, r.key, r.value, getattr(r, "timestamp", None))
            for r in records
        ]
        validated = self.validator.validate(raws)
        lap("validate")

        detections = [d.detect(validated.posts) for d in self.detectors] if validated.posts.height else []
        lap("detect")

        now = dt.datetime.now(dt.UTC)
        policy = self.policy
        outcome = (
            self._retry("policy", lambda: policy.evaluate(validated.posts, detections, now))
            if policy is not None and validated.posts.height else PolicyOutcome()
        )
        lap("policy")

        post_rows = _post_rows(validated, now)
        result_rows, flag_rows = _result_and_flag_rows(validated, detections, now)
        dead_rows = self._dead_rows(validated.rejected, now)
        metrics, self._pending_metrics = self._pending_metrics, None
        refused: list[Rejection] = []
        try:
            self._retry(
                "store write",
                lambda: self.store.write_batch(
                    posts=post_rows, results=result_rows, flags=flag_rows, dead_letters=dead_rows,
                    metrics=metrics, actions=outcome.actions, alerts=outcome.alerts,
                ),
            )
        except StatementError as exc:
            log.error("%s: the store refused the batch (%s); writing its posts one by one to find the bad ones",
                      self.worker_id, exc.orig if exc.orig is not None else exc)
            flag_rows, refused = self._write_one_by_one(post_rows, result_rows, flag_rows, raws, now)
            validated.rejected.extend(refused)
            # A refused post is a dead letter now: its actions go neither to the store nor out.
            refused_at = {(r.message.partition, r.message.offset) for r in refused}
            refused_ids = {p["post_id"] for p in post_rows
                           if (p["source_partition"], p["source_offset"]) in refused_at}
            outcome.actions = [a for a in outcome.actions if a["post_id"] not in refused_ids]
            self._retry("store write", lambda: self.store.write_batch(
                posts=[], results=[], flags=[], dead_letters=dead_rows + self._dead_rows(refused, now),
                metrics=metrics, actions=outcome.actions, alerts=outcome.alerts,
            ))
        lap("store")

        embedded = (
            _embedded_posts(validated, detections, refused)
            if self.config.worker.publish_embeddings and validated.posts.height else []
        )
        messages = self._messages(flag_rows, validated, outcome.emit, embedded)
        valid = validated.posts.height - len(refused)
        done = _Processed(len(records), valid, len(validated.rejected), len(flag_rows), timings)
        return BatchResult(messages, summary=done)

    def batch_done(self, records: list[Record], result: BatchResult[_Processed], report: BatchReport) -> None:
        """Count a committed batch and keep its metrics row for the next store write."""
        for stage, seconds in report.seconds.items():
            self.stats.add_stage(stage, seconds)
        if not report.committed:
            self.stats.commit_failures += 1  # its new owner counts it
            return
        done = result.summary
        assert done is not None
        timings = {**done.timings, "produce": report.seconds["produce"], "commit": report.seconds["commit"]}
        self.stats.batches += 1
        self.stats.messages += done.messages
        self.stats.valid += done.valid
        self.stats.rejected += done.rejected
        self.stats.flagged += done.flagged
        lag = self._lag()
        total = sum(timings.values())
        self._pending_metrics = {
            "at": dt.datetime.now(dt.UTC),
            "worker_id": self.worker_id,
            "batch_size": done.messages,
            "valid": done.valid,
            "rejected": done.rejected,
            "flagged": done.flagged,
            "lag_total": sum(lag.values()) if lag else None,
            "lag": {str(k): v for k, v in lag.items()},
            "timings": {k: round(v * 1000, 3) for k, v in timings.items()},
            "posts_per_s": done.messages / total if total > 0 else None,
        }

    def _dead_rows(self, rejected: list[Rejection], now: dt.datetime) -> list[dict[str, Any]]:
        return [
            {
                "source_topic": r.message.topic,
                "source_partition": r.message.partition,
                "source_offset": r.message.offset,
                "reason": r.reason,
                "error": r.error,
                "key": r.message.key,
                "value": r.message.value or b"",
                "received_at": now,
                "worker_id": self.worker_id,
            }
            for r in rejected
        ]

    def _write_one_by_one(
        self,
        post_rows: list[dict[str, Any]],
        result_rows: list[dict[str, Any]],
        flag_rows: list[dict[str, Any]],
        raws: list[RawMessage],
        now: dt.datetime,
    ) -> tuple[list[dict[str, Any]], list[Rejection]]:
        """Isolate posts the store refuses (a constraint, a value it cannot hold) as dead letters,
        so one bad post neither blocks its partition nor takes the batch's good posts with it."""
        by_source = {(m.partition, m.offset): m for m in raws}
        refused: list[Rejection] = []
        refused_ids: set[str] = set()
        for row in post_rows:
            pid = row["post_id"]
            try:
                self._retry("store write", lambda row=row, pid=pid: self.store.write_batch(
                    posts=[row],
                    results=[r for r in result_rows if r["post_id"] == pid],
                    flags=[f for f in flag_rows if f["post_id"] == pid],
                    dead_letters=[],
                ))
            except StatementError as exc:
                message = by_source[(row["source_partition"], row["source_offset"])]
                refused.append(Rejection(message, "store_rejected", f"the store refused this post: {exc.orig or exc}"))
                refused_ids.add(pid)
        return [f for f in flag_rows if f["post_id"] not in refused_ids], refused

    def _messages(
        self,
        flag_rows: list[dict[str, Any]],
        validated: ValidatedBatch,
        actions: Sequence[dict[str, Any]] = (),
        embedded: Sequence[tuple[bytes, bytes]] = (),
    ) -> list[OutMessage]:
        topics = self.config.topics
        out = [OutMessage(topics.embedded, value, key=key) for key, value in embedded]
        out += [
            OutMessage(topics.flags, msgspec.json.encode({"schema": FLAG_SCHEMA, **flag}), key=flag["post_id"].encode())
            for flag in flag_rows
        ]
        out += [
            OutMessage(self.config.policy.actions_topic, action_message(action), key=action["post_id"].encode())
            for action in actions
        ]
        out += [self._dead_letter(rejection) for rejection in validated.rejected]
        return out

    def _dead_letter(self, rejection: Rejection) -> OutMessage:
        """The original bytes with the reason in headers (cut past the broker's limit, so the
        producer never loops on a message the broker cannot take; the store keeps it whole)."""
        m = rejection.message
        headers = [
            ("chorus.reason", rejection.reason.encode()),
            ("chorus.error", rejection.error.encode("utf-8", "replace")[:4000]),
            ("chorus.source", f"{m.topic}/{m.partition}/{m.offset}".encode()),
            ("chorus.worker", self.worker_id.encode()),
        ]
        value = m.value or b""
        if len(value) > DEAD_LETTER_MAX_VALUE_BYTES:
            headers.append(("chorus.truncated_from", str(len(value)).encode()))
            value = value[:DEAD_LETTER_MAX_VALUE_BYTES]
        return OutMessage(self.config.topics.dead_letter, value, key=m.key, headers=headers)

    # -- observability ----------------------------------------------------------------------
    def _lag(self) -> dict[TopicPartition, int]:
        """Per-partition lag from the high-water mark of the last fetch (brokers such as Tansu
        report wrong end offsets through ListOffsets, so fetch responses are the source)."""
        lag: dict[TopicPartition, int] = {}
        for tp in self._consumer.assignment():
            highwater = self._consumer.highwater(tp)
            if highwater is None:
                continue
            try:
                position = self._consumer.position(tp, timeout_ms=1000)
            except KafkaError:
                continue
            if position is not None:
                lag[tp] = max(0, highwater - position)
        return lag

    def _maybe_log(self, force: bool = False) -> None:
        now = time.monotonic()
        elapsed = now - self._last_log
        if not force and elapsed < self.config.worker.log_interval_s:
            return
        rate = (self.stats.valid - self._last_log_valid) / elapsed if elapsed > 0 else 0.0
        lag = self._lag() if self._consumer is not None and not force else {}
        stages = " ".join(f"{k}={v * 1000 / max(1, self.stats.batches):.1f}ms"
                          for k, v in self.stats.stage_seconds.items())
        log.info(
            "%s: %d posts (%.0f/s), %d rejected, %d flagged, %d retries; lag %s; per batch %s",
            self.worker_id, self.stats.valid, rate, self.stats.rejected, self.stats.flagged,
            self.stats.retries,
            f"{sum(lag.values())} ({_fmt_lag(lag)})" if lag else "n/a", stages or "-",
        )
        self._last_log = now
        self._last_log_valid = self.stats.valid


def _embedded_posts(
    validated: ValidatedBatch, detections: Sequence[Detections], refused: Sequence[Rejection]
) -> list[tuple[bytes, bytes]]:
    """(key, value) per valid post for the embedded-posts topic: the post with the first detector's
    embedding of it (null where that detector embedded nothing). Posts the store refused are left
    out, as everywhere downstream."""
    source = next((d for d in detections if d.embeddings is not None), None)
    refused_at = {(r.message.partition, r.message.offset) for r in refused}
    where = validated.posts.select("source_partition", "source_offset").rows()
    out = []
    for i, post in enumerate(validated.records):
        if where[i] in refused_at:
            continue
        vector = encode_embedding(source.embeddings[i]) if source is not None else None  # type: ignore[index]
        message = EmbeddedPostV1(
            **msgspec.structs.asdict(post),
            embedding=vector,
            embedding_model=source.embedding_model if source is not None and vector is not None else None,
        )
        out.append((post.account_id.encode(), msgspec.json.encode(message)))
    return out


def _post_rows(validated: ValidatedBatch, now: dt.datetime) -> list[dict[str, Any]]:
    frame = validated.posts
    if frame.height == 0:
        return []
    rows = frame.to_dicts()
    for row, record in zip(rows, validated.records, strict=True):
        row["meta"] = record.meta
        row["ingested_at"] = now
    return rows


def _result_and_flag_rows(
    validated: ValidatedBatch, detections: list[Detections], now: dt.datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    results: list[dict[str, Any]] = []
    flags: list[dict[str, Any]] = []
    if not detections:
        return results, flags
    accounts = validated.posts.get_column("account_id").to_list()
    created = validated.posts.get_column("created_at").to_list()
    for det in detections:
        probabilities = [None if np.isnan(p) else float(p) for p in det.probability]
        for i, post_id in enumerate(det.post_ids):
            flagged = bool(det.flagged[i])
            evidence = det.evidence_for(i)
            results.append(
                {
                    "post_id": post_id,
                    "detector": det.detector,
                    "model_version": det.model_version,
                    "score": float(det.score[i]),
                    "probability": probabilities[i],
                    "threshold_name": det.threshold_name,
                    "threshold": det.threshold,
                    "flagged": flagged,
                    "evidence": evidence,
                    "scored_at": now,
                }
            )
            if flagged:
                flags.append(
                    {
                        "flag_id": f"{det.detector}:{post_id}",
                        "post_id": post_id,
                        "account_id": accounts[i],
                        "detector": det.detector,
                        "model_version": det.model_version,
                        "score": float(det.score[i]),
                        "probability": probabilities[i],
                        "threshold_name": det.threshold_name,
                        "threshold": det.threshold,
                        "evidence": evidence,
                        "post_created_at": created[i],
                        "flagged_at": now,
                    }
                )
    return results, flags


def _fmt_lag(lag: dict[TopicPartition, int]) -> str:
    return " ".join(f"p{tp.partition}={n}" for tp, n in sorted(lag.items()))
