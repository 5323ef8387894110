"""``chorus coordinator``: campaigns found as posts arrive, written to the store and the flags topic.

The coordinator is its own consumer group on the posts topic. It keeps the co-action state of a
sliding horizon of posts (:class:`detectors.coordination.incremental.CoActionState`) and, every
``graph_interval_s`` (or as soon as it has caught up and the stream is idle), runs the graph stage
over it: the account graph, Louvain, campaigns with stable ids, scores. A *checkpoint* is that
graph run followed by these steps, in this order (quixstreams' checkpoint, as the worker's):

1. upsert the campaigns, their members and evidence in ONE store transaction
   (:func:`stream.store.campaigns.write_campaigns`; a replay changes nothing);
2. produce a flag for each campaign version not announced yet (key = campaign id, a stable
   ``flag_id`` per version) and flush;
3. record in the store which versions were announced (so a restart does not announce them again);
4. only then commit the consumer offsets.

**The graph run does not stop consumption** (``graph_in_background``, the default): it runs in a
thread over a *snapshot* of the state (:meth:`CoActionState.copy`: the slices are immutable frames,
so the copy costs a few dict copies), while the loop goes on polling, validating and adding posts
to the live state. When the run is done, the loop does steps 1-4 for it, and commits the offsets
*taken with the snapshot*: the low-water marks of the horizon the snapshot held (and its ``end``),
never the live state's, which has moved on to posts no written campaign reflects yet. Those
offsets are older than or equal to the live ones, so a restart from them re-reads at least the
horizon the live state needs. One run at a time; a rebalance while a run is in flight discards its
result (the state starts over; the next run writes). The graph run shares the GIL with the loop
(Louvain is Python), so consumption slows during a run but never stops, and the poll loop keeps
the consumer within ``max_poll_interval_ms`` whatever the run's length (kafka-python heartbeats in
its own thread).

**Restart safety: the horizon is rebuilt from the posts topic, and the committed offset is where
that rebuild starts.** The offset a coordinator commits for a partition is not "everything below is
done" but "nothing below is still needed": the first offset of the oldest micro-batch whose posts
may still be in the horizon (the state's low-water mark). A restarted coordinator therefore resumes
from there, re-reads exactly the last horizon of posts into a fresh state, and runs no graph stage
until it has caught up with where the previous one stopped, so it never writes campaigns computed
on half a horizon: it finds the same communities again, and they keep their ids because the ids of
recent campaigns are loaded from the store as the ``previous`` of :func:`assign_campaign_ids`.
Where it stopped comes with the commit as metadata (``{"end": offset}``) on Apache Kafka; Tansu
drops commit metadata, so there the coordinator catches up to the high watermark of its first fetch
instead (later than necessary, never earlier). Why not seek back by time: ``offsets_for_times`` is
a ListOffsets request, which Tansu answers wrongly (``stream/kafka/broker.py``; measured: offset 0 for any
time), and posts carry event times the broker's record timestamps need not follow. Why not keep the
horizon in the store: it would double the store's writes for data the topic already holds. The
price: the posts topic must retain at least the horizon, and a replay re-reads one horizon of posts
at start (measured: 40,000 posts/s validated and matched, ``bench/bench_coordination_stream.py``).

Invalid messages are the workers' business (they dead-letter them): the coordinator skips them and
counts them. One coordinator owns all partitions of the posts topic (posts are keyed by account, so
two coordinators would each miss the co-actions across their partitions); to scale out, re-key the
posts by object (``chorus rekey``, ``stream/coordination/rekey.py``) and run M coordination workers
(``input = "actions"``, ``emit_edges``: no graph stage; they send their per-object match rows to
the edges topic, flush, and commit as above) and ONE graph stage (``chorus graph-stage``, ``input
= "edges"``: the same class, whose horizon is an
:class:`~detectors.coordination.incremental.ObjectMatchLedger` fed from the edges topic, with the
same checkpoint and restart scheme); see ``stream/coordination/graph_stage.py``.

Polling, delivering and committing are the consume loop every stage shares
(:mod:`stream.kafka.loop`); the coordinator's micro-batches ask it for no commit, and a checkpoint
commits through the same loop, which delivers everything sent (flags, edges) first.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import msgspec
import networkx as nx
import polars as pl
from kafka import TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from detectors.coordination.graph import CampaignConfig, CampaignResult
from detectors.coordination.incremental import (
    CoActionDelta,
    CoActionState,
    ObjectMatchLedger,
    campaigns_from_state,
)
from stream.config import ChorusConfig, CoordinatorSettings
from stream.coordination.graph_stage import decode_edges, encode_edges
from stream.coordination.rekey import decode_actions
from stream.kafka.clients import make_consumer, make_producer
from stream.kafka.loop import BatchLimits, BatchResult, BatchStage, OutMessage, Record, StreamLoop
from stream.kafka.messages import PostValidator, RawMessage
from stream.kafka.retry import Retrier
from stream.store.campaigns import (
    COORDINATION_DETECTOR,
    CampaignRecord,
    load_campaigns,
    machine_shares,
    write_campaigns,
)
from stream.store.database import Store

__all__ = ["CAMPAIGN_FLAG_SCHEMA", "MODEL_VERSION", "Coordinator", "CoordinatorSettings", "CoordinatorStats",
           "campaign_flag", "campaign_records"]  # fmt: skip

log = logging.getLogger("chorus.coordinator")

CAMPAIGN_FLAG_SCHEMA = "chorus.campaign_flag/1"
#: Bumped when what the coordinator computes changes meaning (it is in every flag and summary).
MODEL_VERSION = "coaction-stream/1"

#: The graph stage: (horizon, campaign config, previous ids) -> result. Tests slow it down.
FindCampaigns = Callable[..., CampaignResult]
Horizon = CoActionState | ObjectMatchLedger


@dataclass
class CoordinatorStats:
    """Running totals, for the log line and tests."""

    messages: int = 0
    invalid: int = 0
    accepted: int = 0
    duplicates: int = 0
    late: int = 0
    checkpoints: int = 0
    graph_runs: int = 0
    graph_runs_discarded: int = 0
    campaigns: int = 0
    campaigns_written: int = 0
    flags: int = 0
    edge_messages: int = 0
    #: Posts read from the embedded-posts topic without an embedding (not scored, or workers that
    #: do not publish them): they take part in every type but co_paraphrase.
    unembedded: int = 0
    retries: int = 0
    rebuilt_at_messages: int | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def add_stage(self, stage: str, seconds: float) -> None:
        self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds


@dataclass
class _GraphRun:
    """A graph run over a snapshot of the horizon, and what its checkpoint may commit once it is written."""

    generation: int
    #: The snapshot's low-water marks (and ends): committed only after its campaigns are written.
    offsets: dict[TopicPartition, OffsetAndMetadata]
    watermark_us: int | None
    future: Future[list[CampaignRecord]]
    started: float


class Coordinator(BatchStage[None]):
    """The coordination stage of the stream: one process, one member of its own consumer group.

    ``settings`` default to the configuration's ``[coordinator]`` section. The same class is a
    coordination worker of the scale-out path (``emit_edges``: no store, no graph stage) and its
    central graph stage (``input = "edges"``). ``find_campaigns`` is the graph stage
    (:func:`campaigns_from_state`; a test may slow it down).
    """

    def __init__(
        self,
        config: ChorusConfig,
        store: Store | None,
        settings: CoordinatorSettings | None = None,
        *,
        coordinator_id: str | None = None,
        find_campaigns: FindCampaigns = campaigns_from_state,
    ) -> None:
        self.config = config
        self.settings = settings or config.coordinator
        if store is None and not self.settings.emit_edges:
            raise ValueError("a coordinator that writes campaigns needs a store (only emit_edges runs without)")
        self.store = store
        self.coordinator_id = coordinator_id or f"{socket.gethostname()}-{os.getpid()}-coordinator"
        self.topic = self.settings.input_topic(config.topics)
        self.find_campaigns = find_campaigns
        self.validator = PostValidator(
            max_text_bytes=config.validation.max_text_bytes,
            max_message_bytes=config.validation.max_message_bytes,
            future_skew_s=config.validation.future_skew_s,
            embeddings=self.settings.input == "embedded",
        )
        self._incremental = self.settings.incremental_config()
        self._campaign_config: CampaignConfig = self.settings.campaign_config()
        self.state: Horizon = self._new_state()
        self.stats = CoordinatorStats()
        self._stop = threading.Event()
        self._retry = Retrier(
            self._stop, config.worker.retry_backoff_initial_s, config.worker.retry_backoff_max_s,
            self.coordinator_id, on_retry=self._count_retry,
        )
        self._loop: StreamLoop[None] | None = None
        self._consumer: Any = None
        self._assignment_changed = False
        self._caught_up_now = False
        # Bumped at every (re)assignment: a graph run of an older generation is not written.
        self._generation = 0
        self._graph_run: _GraphRun | None = None
        self._executor: ThreadPoolExecutor | None = None
        # Per partition: (first offset, newest post time) of each micro-batch still possibly in the horizon.
        self._segments: dict[TopicPartition, deque[tuple[int, int]]] = {}
        self._next_offset: dict[TopicPartition, int] = {}
        self._resume_at: dict[TopicPartition, int | None] = {}
        self._rebuilt = False
        self._dirty = False
        self._last_checkpoint = time.monotonic()
        self._last_log = time.monotonic()
        # Campaign ids the graph stage carries on, and the versions already announced.
        self._known: dict[str, frozenset[str]] = {}
        self._known_seen: dict[str, dt.datetime | None] = {}
        self._announced: dict[str, str | None] = {}

    def _new_state(self) -> Horizon:
        if self.settings.input == "edges":
            return ObjectMatchLedger(self._incremental)
        return CoActionState(self._incremental)

    # -- lifecycle -------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Finish the batch in hand, checkpoint if caught up, commit, and leave the group."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def rebuilt(self) -> bool:
        """Whether the horizon is rebuilt (graph runs and commits happen only then)."""
        return self._rebuilt

    @property
    def graph_running(self) -> bool:
        """Whether a graph run is in flight (in the background)."""
        return self._graph_run is not None

    def run(self, *, idle_exit_s: float | None = None) -> CoordinatorStats:
        """Consume until stopped (or, with ``idle_exit_s``, until caught up and idle that long)."""
        cfg, s = self.config, self.settings
        if not s.emit_edges:
            self._load_known()
        self._consumer = make_consumer(
            cfg,
            client_id=f"{cfg.kafka.client_id_prefix}-{self.coordinator_id}",
            group_id=s.group_id,
            max_poll_records=s.batch_max_posts,
        )
        producer = make_producer(cfg, client_id=f"{cfg.kafka.client_id_prefix}-{self.coordinator_id}-out")
        self._loop = StreamLoop(
            self._consumer, producer, retry=self._retry, name=self.coordinator_id,
            limits=BatchLimits(s.batch_max_posts, s.batch_max_latency_ms),
            delivery_timeout_s=cfg.kafka.request_timeout_ms / 1000,
        )
        if s.graph_in_background and not s.emit_edges:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.coordinator_id}-graph")
        log.info(
            "%s: joining group %r on %r (input %s, horizon %.0f s, networks %s, %s every %.0f s)",
            self.coordinator_id, s.group_id, self.topic, s.input, s.horizon_s, ",".join(s.networks),
            f"edges to {s.edges_topic!r}" if s.emit_edges else
            "graph stage in the background" if s.graph_in_background else "graph stage", s.graph_interval_s,
        )  # fmt: skip
        try:
            self._loop.run(self, [self.topic], idle_exit_s=idle_exit_s)
        finally:
            self._shutdown()
        return self.stats

    # -- the loop's hooks (stream.kafka.loop) ------------------------------------------------------
    def partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        """Any rebalance starts the state over from the committed offsets (the horizon's start); done
        by the next hook, outside the consumer's callback."""
        self._assignment_changed = True

    def process_batch(self, records: list[Record]) -> BatchResult[None]:
        """Feed the horizon; nothing is committed per batch (checkpoints do, in ``between_batches``)."""
        if self._assignment_changed:
            self._start_over()
        return BatchResult(self._process(records), commit=False)

    def between_batches(self, *, idle: bool) -> None:
        """Collect a finished graph run, and checkpoint when caught up and idle or due."""
        if self._assignment_changed:
            self._start_over()
        caught_up = self._caught_up_now = self._caught_up()
        due = time.monotonic() - self._last_checkpoint >= self.settings.graph_interval_s
        self._finish_graph_run(wait=False)
        if caught_up and self._dirty and (idle or due) and self._graph_run is None:
            self._checkpoint(wait=not self.settings.graph_in_background)
        self._maybe_log()

    def may_exit_idle(self) -> bool:
        """Only once caught up with everything written and committed."""
        return self._caught_up_now and not self._dirty and self._graph_run is None

    def finish(self) -> None:
        """A stop request: wait for the graph run in flight, write what is left, commit."""
        if self._rebuilt:
            self._finish_graph_run(wait=True)
            if self._dirty:
                self._checkpoint(wait=True)

    def _count_retry(self) -> None:
        self.stats.retries += 1

    def _shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        if self._loop is not None:
            self._loop.close()
        self._maybe_log(force=True)

    def _load_known(self) -> None:
        """Campaigns of the last ``id_memory_s`` keep their ids; their announced versions are not re-sent."""
        store = self._need_store()
        stored = self._retry("load campaigns", lambda: load_campaigns(store))
        newest = max((c.last_seen for c in stored.values() if c.last_seen is not None), default=None)
        since = newest - dt.timedelta(seconds=self.settings.id_memory_s) if newest is not None else None
        for campaign in stored.values():
            if since is not None and campaign.last_seen is not None and campaign.last_seen < since:
                continue
            self._known[campaign.campaign_id] = campaign.members
            self._known_seen[campaign.campaign_id] = campaign.last_seen
            self._announced[campaign.campaign_id] = campaign.flagged_version
        if stored:
            log.info("%s: %d campaigns in the store, %d carried on", self.coordinator_id, len(stored), len(self._known))

    def _need_store(self) -> Store:
        if self.store is None:
            raise RuntimeError("this coordinator has no store (emit_edges)")
        return self.store

    def _start_over(self) -> None:
        """A (re)assignment: empty state, rebuilt from the committed offsets (each partition's horizon start)."""
        self._assignment_changed = False
        self._generation += 1
        self.state = self._new_state()
        self._segments.clear()
        self._next_offset.clear()
        self._rebuilt = False
        self._resume_at = {}
        for tp in self._consumer.assignment():
            committed = self._retry("read committed offsets", lambda tp=tp: self._consumer.committed(tp, metadata=True))
            self._resume_at[tp] = _end_from_metadata(committed)
        log.info("%s: rebuilding the horizon from the committed offsets (catch-up targets: %s)",
                 self.coordinator_id,
                 " ".join(f"p{tp.partition}={v if v is not None else 'high-watermark'}"
                          for tp, v in sorted(self._resume_at.items())) or "none")

    # -- consuming -----------------------------------------------------------------------------
    def _process(self, records: list[Record]) -> list[OutMessage]:
        """Validate (skipping what is not a post) and feed the state; remember where each batch began.
        Returns the edges a coordination worker sends (delivered before its next commit)."""
        started = time.perf_counter()
        delta: CoActionDelta | None = None
        edges: list[OutMessage] = []
        if self.settings.input == "edges":
            assert isinstance(self.state, ObjectMatchLedger)
            rows, actions, newest, bad = decode_edges([r.value for r in records])
            invalid = len(bad)
            rejected = set(bad)
            partition = [r.partition for i, r in enumerate(records) if i not in rejected]
            timed = pl.DataFrame({"source_partition": partition, "t_us": newest},
                                 schema={"source_partition": pl.Int64(), "t_us": pl.Int64()})  # fmt: skip
            validated_at = time.perf_counter()
            late = self.state.apply(rows, actions)
            self.stats.accepted += actions.height
            self.stats.late += late
            self._dirty = self._dirty or rows.height + actions.height > late
        elif self.settings.input == "actions":
            assert isinstance(self.state, CoActionState)
            actions, bad = decode_actions([r.value for r in records])
            invalid = len(bad)
            rejected = set(bad)
            partition = [r.partition for i, r in enumerate(records) if i not in rejected]
            timed = actions.select(source_partition=pl.Series(partition, dtype=pl.Int64), t_us="t_us")
            validated_at = time.perf_counter()
            delta = self.state.add_actions(actions) if actions.height else None
        else:
            assert isinstance(self.state, CoActionState)
            raws = [
                RawMessage(r.topic, r.partition, r.offset, r.key, r.value, getattr(r, "timestamp", None))
                for r in records
            ]
            validated = self.validator.validate(raws)
            invalid = len(validated.rejected)
            posts = validated.posts
            if self.settings.input == "embedded" and posts.height:
                self.stats.unembedded += posts.get_column("embedding").null_count()
            timed = posts.select("source_partition", t_us=pl.col("created_at").dt.epoch("us"))
            validated_at = time.perf_counter()
            delta = self.state.add(posts) if posts.height else None
        if delta is not None and self.settings.emit_edges:
            edges = self._edges(delta)
        added_at = time.perf_counter()
        newest_by_partition = dict(timed.group_by("source_partition").agg(pl.col("t_us").max()).rows())
        first: dict[TopicPartition, int] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            first[tp] = min(first.get(tp, r.offset), r.offset)
            self._next_offset[tp] = max(self._next_offset.get(tp, 0), r.offset + 1)
        for tp, offset in first.items():
            newest_t = newest_by_partition.get(tp.partition)
            self._segments.setdefault(tp, deque()).append((offset, -(2**62) if newest_t is None else int(newest_t)))
        self._drop_old_segments()
        self.stats.messages += len(records)
        self.stats.invalid += invalid
        if delta is not None:
            self.stats.accepted += delta.accepted
            self.stats.duplicates += delta.duplicates
            self.stats.late += delta.late
            self._dirty = self._dirty or delta.accepted > 0
        self.stats.add_stage("validate", validated_at - started)
        self.stats.add_stage("coaction", added_at - validated_at)
        return edges

    def _edges(self, delta: CoActionDelta) -> list[OutMessage]:
        """A coordination worker's output: the micro-batch's new per-object rows and actions (sent
        asynchronously by the loop; delivered before the next commit)."""
        key = self.coordinator_id.encode()
        edges = [
            OutMessage(self.settings.edges_topic, value, key=key)
            for value in encode_edges(delta.object_matches, delta.actions, source=self.coordinator_id)
        ]
        self.stats.edge_messages += len(edges)
        return edges

    def _drop_old_segments(self) -> None:
        """Forget the micro-batches whose posts are all older than anything the state still holds."""
        cutoff = self.state.retained_since_us
        if cutoff is None:
            return
        for segments in self._segments.values():
            while segments and segments[0][1] < cutoff:
                segments.popleft()

    def _horizon_start(self, tp: TopicPartition) -> int | None:
        """The offset a rebuild must start from on ``tp``: the oldest batch that may still matter."""
        segments = self._segments.get(tp)
        if segments:
            return segments[0][0]
        return self._next_offset.get(tp)

    def _caught_up(self) -> bool:
        """Whether every assigned partition is past where the previous coordinator stopped."""
        if self._rebuilt:
            return True
        assignment = self._consumer.assignment()
        if not assignment or self._assignment_changed:
            return False
        for tp in assignment:
            target = self._resume_at.get(tp)
            if target is None:
                highwater = self._consumer.highwater(tp)
                if highwater is None:
                    return False  # no fetch answered yet: the end of the log is unknown
                self._resume_at[tp] = target = highwater
            try:
                position = self._consumer.position(tp, timeout_ms=1000)
            except KafkaError:
                return False
            if position is None or position < target:
                return False
        self._rebuilt = True
        self.stats.rebuilt_at_messages = self.stats.messages
        log.info("%s: horizon rebuilt from %d messages (%d actions held); %s resume",
                 self.coordinator_id, self.stats.messages, self.state.held_rows()["actions"],
                 "commits" if self.settings.emit_edges else "graph runs")  # fmt: skip
        return True

    # -- the checkpoint --------------------------------------------------------------------------
    def _checkpoint(self, *, wait: bool = True) -> None:
        """A worker that emits edges: flush them and commit. Otherwise: start a graph run over a
        snapshot of the horizon (and, with ``wait``, write it and commit: see the module docstring)."""
        if self.settings.emit_edges:
            self._checkpoint_edges()
            return
        self._start_graph_run()
        if wait:
            self._finish_graph_run(wait=True)

    def _checkpoint_edges(self) -> None:
        started = time.perf_counter()
        self._need_loop().deliver()  # the edges, even where there is nothing to commit yet
        self._commit(self._commit_offsets())
        self.stats.checkpoints += 1
        self._dirty = False
        self._last_checkpoint = time.monotonic()
        self.stats.add_stage("edges+commit", time.perf_counter() - started)

    def _start_graph_run(self) -> None:
        """Snapshot the horizon and what committing it would mean; run the graph stage over it."""
        snapshot = self.state.copy()
        offsets = self._commit_offsets()
        known, announced = dict(self._known), dict(self._announced)
        future: Future[list[CampaignRecord]]
        if self._executor is not None:
            future = self._executor.submit(self._graph, snapshot, known, announced)
        else:
            future = Future()
            try:
                future.set_result(self._graph(snapshot, known, announced))
            except BaseException as exc:  # surfaces in _finish_graph_run, as from the thread
                future.set_exception(exc)
        self._graph_run = _GraphRun(self._generation, offsets, snapshot.watermark_us, future, time.perf_counter())
        self._dirty = False
        self._last_checkpoint = time.monotonic()
        self.stats.graph_runs += 1

    def _graph(self, state: Horizon, known: Mapping[str, frozenset[str]],
               announced: Mapping[str, str | None]) -> list[CampaignRecord]:  # fmt: skip
        """The graph stage over a snapshot (in the background thread): campaigns as store records."""
        clock = time.perf_counter()
        result = self.find_campaigns(state, self._campaign_config, previous=known)
        if self.settings.machine_detector and result.members:
            result = self._with_machine_shares(result, state)
        records = campaign_records(result, self.settings, announced)
        self.stats.add_stage("graph", time.perf_counter() - clock)
        return records

    def _finish_graph_run(self, *, wait: bool) -> None:
        """If the graph run is done (or, with ``wait``, once it is): store, flags, announced, commit."""
        run = self._graph_run
        if run is None or (not wait and not run.future.done()):
            return
        self._graph_run = None
        try:
            records = run.future.result()
        except BaseException:
            self._dirty = True  # nothing was written for it: the next checkpoint must run
            raise
        if run.generation != self._generation:
            self.stats.graph_runs_discarded += 1
            self._dirty = True
            log.info("%s: a graph run started before a rebalance is discarded", self.coordinator_id)
            return
        self._write(records, run)

    def _write(self, records: list[CampaignRecord], run: _GraphRun) -> None:
        clock = time.perf_counter()
        store = self._need_store()
        outcome = self._retry("store write", lambda: write_campaigns(store, records))
        to_announce = [r for r in records if self._announced.get(r.campaign_id) != r.version]
        if to_announce:
            self._produce(to_announce)
            announced = [r.flagged(r.version) for r in to_announce]
            self._retry("store write", lambda: write_campaigns(store, announced))
            for r in to_announce:
                self._announced[r.campaign_id] = r.version
        store_at = time.perf_counter()
        self.stats.add_stage("store+flags", store_at - clock)

        self._commit(run.offsets)
        self.stats.add_stage("commit", time.perf_counter() - store_at)
        for r in records:
            self._known[r.campaign_id] = frozenset(r.members)
            self._known_seen[r.campaign_id] = r.last_seen
        self._forget_old_campaigns(run.watermark_us)
        self.stats.checkpoints += 1
        self.stats.campaigns = len(records)
        self.stats.campaigns_written += outcome.campaigns_changed
        self.stats.flags += len(to_announce)
        log.info("%s: checkpoint: %d campaigns (%d changed, %d flagged) in %.2f s after the snapshot",
                 self.coordinator_id, len(records), outcome.campaigns_changed, len(to_announce),
                 time.perf_counter() - run.started)

    def _with_machine_shares(self, result: CampaignResult, state: Horizon | None = None) -> CampaignResult:
        """Fill ``machine_share`` from the workers' detector results for the members' posts in the horizon."""
        since_us = (state or self.state).retained_since_us
        store = self._need_store()
        shares = self._retry(
            "read machine shares",
            lambda: machine_shares(
                store, result.members, detector=self.settings.machine_detector or "",
                since=_utc(since_us) if since_us is not None else None,
            ),
        )  # fmt: skip
        share = pl.col("campaign_id").replace_strict(shares, default=None, return_dtype=pl.Float64)
        return dataclasses.replace(result, campaigns=result.campaigns.with_columns(machine_share=share))

    def _forget_old_campaigns(self, newest: int | None) -> None:
        if newest is None:
            return
        since = _utc(newest) - dt.timedelta(seconds=self.settings.id_memory_s)
        for campaign_id in [c for c, seen in self._known_seen.items() if seen is not None and seen < since]:
            self._known.pop(campaign_id, None)
            self._known_seen.pop(campaign_id, None)

    def _produce(self, records: Sequence[CampaignRecord]) -> None:
        """The campaigns' flags, on the broker before the store records them as announced."""
        now = dt.datetime.now(dt.UTC)
        loop = self._need_loop()
        loop.send(
            OutMessage(self.config.topics.flags, campaign_flag(r, now), key=r.campaign_id.encode()) for r in records
        )
        loop.deliver()

    def _commit_offsets(self) -> dict[TopicPartition, OffsetAndMetadata]:
        """Per assigned partition: where the horizon starts now, with where consumption is (``end``)."""
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp in self._consumer.assignment():
            start = self._horizon_start(tp)
            end = self._next_offset.get(tp)
            if start is None or end is None:
                continue
            metadata = msgspec.json.encode({"end": end, "watermark_us": self.state.watermark_us}).decode()
            offsets[tp] = OffsetAndMetadata(start, metadata, -1)
        return offsets

    def _commit(self, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> None:
        """Deliver what was sent, then commit; a rebalance that refuses the commit starts the state
        over from the last commit (the store writes were idempotent)."""
        self._need_loop().commit(offsets)

    def _need_loop(self) -> StreamLoop[None]:
        if self._loop is None:
            raise RuntimeError("the coordinator is not running")
        return self._loop

    def _maybe_log(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_log < self.settings.log_interval_s:
            return
        self._last_log = now
        held = self.state.held_rows()
        st = self.stats
        log.info(
            "%s: %d messages (%d invalid skipped), %d accepted, %d replays, %d late, %d capped; "
            "held %d actions / %d matches; %s%s",
            self.coordinator_id, st.messages, st.invalid, st.accepted, st.duplicates, st.late,
            self.state.stats.capped, held["actions"], held["matches"],
            f"{st.edge_messages} edge messages, {st.checkpoints} commits" if self.settings.emit_edges else
            f"{st.campaigns} campaigns, {st.flags} flags, {st.checkpoints} checkpoints"
            + (" (graph run in flight)" if self._graph_run is not None else ""),
            "" if self._rebuilt else " (rebuilding the horizon)",
        )  # fmt: skip
        if st.unembedded and st.unembedded == st.messages - st.invalid:
            log.warning("%s: none of the %d posts read from %s carries an embedding, so co_paraphrase finds "
                        "nothing: do the workers run the aitext detector?", self.coordinator_id, st.unembedded,
                        self.topic)  # fmt: skip


def _end_from_metadata(committed: OffsetAndMetadata | int | None) -> int | None:
    """The ``end`` a previous coordinator stored with its commit (None: unknown, e.g. on Tansu)."""
    metadata = getattr(committed, "metadata", None)
    if not metadata:
        return None
    try:
        end = msgspec.json.decode(metadata.encode() if isinstance(metadata, str) else metadata).get("end")
    except (msgspec.DecodeError, AttributeError):
        return None
    return int(end) if isinstance(end, int) else None


def _utc(us: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(us / 1_000_000, tz=dt.UTC)


# --------------------------------------------------------------------------------------------
# From a graph run to store records and flags (pure functions: tested without Kafka)
# --------------------------------------------------------------------------------------------


def _evidence_dicts(evidence: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    out = []
    for pair in evidence or []:
        out.append(
            {
                "post_1": pair["post_1"],
                "time_1": pair["time_1"].isoformat() if pair["time_1"] is not None else None,
                "post_2": pair["post_2"],
                "time_2": pair["time_2"].isoformat() if pair["time_2"] is not None else None,
            }
        )
    return out


def _round(value: Any) -> float | None:
    """Scores rounded for storage: a replay must give the same JSON text, byte for byte."""
    if value is None:
        return None
    value = float(value)
    return None if value != value else round(value, 6)


def campaign_records(
    result: CampaignResult,
    settings: CoordinatorSettings,
    announced: Mapping[str, str | None] | None = None,
) -> list[CampaignRecord]:
    """Store records for every campaign of a graph run: scores, first/last co-action, member links.

    ``first_seen`` / ``last_seen`` are the event times of the campaign's earliest and newest
    co-action between members (deterministic, so a replay writes the same). The summary's ``edges``
    are the ``summary_edges`` strongest member links, one per type, each with the matched post
    pairs of both directions; each member's evidence holds its own links.
    """
    announced = announced or {}
    if result.campaigns.height == 0:
        return []
    membership = result.campaigns.select("campaign_id", pl.col("members").alias("account_id")).explode("account_id")
    inside = (
        result.matches.join(membership, on="account_id")
        .join(membership.rename({"account_id": "match_account_id"}), on=["campaign_id", "match_account_id"])
        .group_by("campaign_id")
        .agg(
            first=pl.min_horizontal("t_us", "match_t_us").min(),
            last=pl.max_horizontal("t_us", "match_t_us").max(),
            co_actions=pl.len(),
        )
    )
    times = {cid: (first, last, n) for cid, first, last, n in inside.iter_rows()}
    evidence = _campaign_evidence(result, membership)
    records = []
    for row in result.campaigns.iter_rows(named=True):
        cid, members = row["campaign_id"], tuple(sorted(row["members"]))
        first, last, co_actions = times.get(cid, (None, None, 0))
        links = _member_links(result.graph, members, evidence, settings.summary_edges)
        summary: dict[str, Any] = {
            "density": _round(row["density"]),
            "synchrony": _round(row["synchrony"]),
            "mean_weight": _round(row["mean_weight"]),
            "median_gap_s": _round(row["median_gap_s"]),
            "burstiness": _round(row["burstiness"]),
            "machine_share": _round(row["machine_share"]),
            "co_actions": int(co_actions),
            "detector": COORDINATION_DETECTOR,
            "model_version": MODEL_VERSION,
            "version": None,
            "flagged_version": announced.get(cid),
            "networks": sorted({n for link in links for n in [link["network"]]}),
            "edges": links,
        }
        weights = {
            m: _round(
                sum(result.graph.edges[m, o]["weight"] for o in members if o != m and result.graph.has_edge(m, o))
                / max(len(members) - 1, 1)
            )
            or 0.0
            for m in members
        }
        member_evidence = {
            m: {"edges": [link for link in links if m in (link["source"], link["target"])][:10]} for m in members
        }
        record = CampaignRecord(
            campaign_id=cid,
            members=members,
            first_seen=_utc(first) if first is not None else None,
            last_seen=_utc(last) if last is not None else None,
            score=_round(row["score"]),
            summary=summary,
            member_weights=weights,
            member_evidence=member_evidence,
        )
        record.summary["version"] = record.version
        records.append(record)
    return records


def _campaign_evidence(
    result: CampaignResult, membership: pl.DataFrame
) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """(network, user_1, user_2) -> matched post pairs, for directed edges inside a campaign."""
    out: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for network, edges in result.networks.items():
        if edges.height == 0:
            continue
        inside = edges.join(membership.rename({"account_id": "user_1"}), on="user_1").join(
            membership.rename({"account_id": "user_2"}), on=["campaign_id", "user_2"]
        )
        for user_1, user_2, pairs in inside.select("user_1", "user_2", "evidence").iter_rows():
            out[(network, user_1, user_2)] = _evidence_dicts(pairs)
    return out


def _member_links(
    graph: nx.Graph,
    members: Sequence[str],
    evidence: Mapping[tuple[str, str, str], list[dict[str, Any]]],
    limit: int,
) -> list[dict[str, Any]]:
    """The strongest links between members, one entry per co-action type (the console's edge format)."""
    links = []
    member_set = set(members)
    for a, b, data in graph.subgraph(members).edges(data=True):
        if a not in member_set or b not in member_set:
            continue
        source, target = sorted((a, b))
        for network, strength in sorted(data.get("types", {}).items()):
            pairs = evidence.get((network, source, target), [])[:3] + evidence.get((network, target, source), [])[:3]
            links.append(
                {
                    "source": source,
                    "target": target,
                    "network": network,
                    "weight": _round(strength),
                    "pair_weight": _round(data["weight"]),
                    "co_actions": int(data.get("co_actions", 0)),
                    "evidence": pairs,
                }
            )
    links.sort(key=lambda link: (-(link["pair_weight"] or 0.0), link["source"], link["target"], link["network"]))
    return links[:limit]


def campaign_flag(record: CampaignRecord, flagged_at: dt.datetime) -> bytes:
    """The flag for one campaign version (``chorus.campaign_flag/1``), as JSON bytes."""
    scores = {k: v for k, v in record.summary.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    return msgspec.json.encode(
        {
            "schema": CAMPAIGN_FLAG_SCHEMA,
            "flag_id": record.flag_id,
            "campaign_id": record.campaign_id,
            "campaign_version": record.version,
            "detector": COORDINATION_DETECTOR,
            "model_version": MODEL_VERSION,
            "score": record.score,
            "size": len(record.members),
            "members": list(record.members),
            "first_seen": record.first_seen.isoformat() if record.first_seen else None,
            "last_seen": record.last_seen.isoformat() if record.last_seen else None,
            "scores": scores,
            "evidence": record.summary.get("edges", [])[:10],
            "flagged_at": flagged_at.isoformat(),
        }
    )
