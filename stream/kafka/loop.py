"""The consume -> process -> produce -> flush -> commit loop that every stage of the stream runs.

The posts worker, the coordinator and rekey are each one member of a consumer group that turns
micro-batches of records into messages on other topics (and, for some, rows in the store). What
keeps that at-least-once without losing or double-counting a post is the same for all of them, so
it lives here once, and the stages plug in only what is theirs (:class:`BatchStage`):

1. poll a micro-batch: until it is full, or its latency bound has passed since its first record;
2. hand it to the stage's :meth:`~BatchStage.process_batch`, which does the stage's own effects
   (the worker's store writes, the coordinator's horizon) and returns the messages to produce;
3. send those messages, flush the producer and confirm every delivery (:meth:`StreamLoop.deliver`);
4. only then commit the batch's offsets (:meth:`StreamLoop.commit` always delivers first, so
   nothing is committed ahead of the messages it depends on, whoever calls it).

A crash anywhere before step 4 means the batch is read again by whoever owns the partition next;
the stages make their effects idempotent for that. A commit refused after a rebalance means the
same: the new owner re-reads the batch, so the stage is told (:attr:`BatchReport.committed`) and
counts nothing for it, or the post would be counted twice across the group. Records buffered from
partitions a rebalance takes away are dropped for the same reason (uncommitted: the new owner
reads them; processing them here too could race it). When the rebalance gives a partition
straight back to the same member, that member is its "new owner": it goes back to the partition's
committed offset (:meth:`StreamLoop._return_to_committed`), as every stage assumes after a rebalance.

Transient broker failures of the poll, the delivery and the commit are waited out with back-off
through the stage's :class:`~stream.kafka.retry.Retrier` (so they count in the stage's
``retries``); a failed delivery re-sends only the messages that failed, not the whole set. A stop
request is honoured between batches: the batch in hand is finished and committed first; one that
arrives while a retry waits ends the loop with the batch uncommitted (it is re-read). Not every
consumer-group stage commits per batch: the coordinator commits its horizon at checkpoints
(:attr:`BatchResult.commit` False, then :meth:`StreamLoop.commit` from its own hook).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata

from stream.kafka.retry import Retrier, StopRequested

log = logging.getLogger("chorus.loop")

#: What a stage remembers about a batch between processing it and hearing it was committed.
S = TypeVar("S")

#: A consumed record (kafka-python's ``ConsumerRecord``: topic, partition, offset, key, value, ...).
Record = Any


@dataclass(frozen=True)
class OutMessage:
    """One message a stage wants on a topic once its batch is processed."""

    topic: str
    value: bytes
    key: bytes | None = None
    headers: Sequence[tuple[str, bytes]] | None = None


@dataclass
class BatchResult(Generic[S]):
    """What :meth:`BatchStage.process_batch` hands back to the loop."""

    messages: Sequence[OutMessage] = ()
    #: Commit the batch's offsets once its messages are delivered. False: the messages are sent
    #: (and delivered before any later commit) but the stage commits on its own schedule.
    commit: bool = True
    #: The stage's own account of the batch, handed back to :meth:`BatchStage.batch_done`.
    summary: S | None = None


@dataclass(frozen=True)
class BatchReport:
    """How the loop's part of one batch went."""

    #: False: a rebalance refused the commit; the partitions' new owner processes the batch again.
    committed: bool
    #: Seconds spent polling the batch, delivering its messages, committing its offsets.
    seconds: dict[str, float] = field(default_factory=dict)


class BatchStage(Generic[S]):
    """What a stage plugs into :class:`StreamLoop`; every hook but :meth:`process_batch` is optional."""

    def process_batch(self, records: list[Record]) -> BatchResult[S]:
        """The stage's work on one micro-batch; its effects must be idempotent (a batch may be re-read)."""
        raise NotImplementedError

    def batch_done(self, records: list[Record], result: BatchResult[S], report: BatchReport) -> None:
        """After the commit of a batch that asked for one (committed or refused by a rebalance)."""

    def between_batches(self, *, idle: bool) -> None:
        """Once per turn of the loop, after the batch if any (``idle``: the poll brought nothing)."""

    def may_exit_idle(self) -> bool:
        """Whether an idle exit may happen now (the coordinator waits for its last checkpoint)."""
        return True

    def finish(self) -> None:
        """A stop was requested: the last chance to write and commit what the stage holds."""

    def partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        """Called inside ``poll`` after a rebalance gave this member ``assigned``."""

    def partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        """Called inside ``poll`` (or ``close``) before ``revoked`` go to another member."""


@dataclass(frozen=True)
class BatchLimits:
    """A micro-batch is complete at ``max_records`` or ``max_latency_ms`` after its first record."""

    max_records: int
    max_latency_ms: int


def batch_offsets(records: Iterable[Record]) -> dict[TopicPartition, OffsetAndMetadata]:
    """Per partition, the offset after the newest record: what committing the batch means."""
    offsets: dict[TopicPartition, OffsetAndMetadata] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        if tp not in offsets or offsets[tp].offset <= r.offset:
            offsets[tp] = OffsetAndMetadata(r.offset + 1, "", -1)
    return offsets


class _Delivery:
    """A sent message and its delivery future (None: not sent yet, or sending it raised)."""

    __slots__ = ("future", "message")

    def __init__(self, message: OutMessage) -> None:
        self.message = message
        self.future: Any = None


class StreamLoop(Generic[S]):
    """One consumer-group member's loop; the stage supplies the processing (see the module docstring).

    The loop owns the batching, the delivery of what the stage sends and the commits; the stage
    keeps the clients' references if it needs them for more (lag, committed offsets). ``retry``
    carries the stop event the loop honours and the back-off of every broker call it makes.
    """

    def __init__(
        self,
        consumer: KafkaConsumer,
        producer: KafkaProducer,
        *,
        limits: BatchLimits,
        retry: Retrier,
        delivery_timeout_s: float,
        name: str,
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.limits = limits
        self.retry = retry
        self.delivery_timeout_s = delivery_timeout_s
        self.name = name
        self._buffer: list[Record] = []
        self._pending: list[_Delivery] = []
        #: Partitions a rebalance revoked and gave straight back: to be read again from their commit.
        self._reposition: set[TopicPartition] = set()

    @property
    def stop_requested(self) -> bool:
        return self.retry.stop.is_set()

    # -- the loop ------------------------------------------------------------------------------
    def run(self, stage: BatchStage[S], topics: Sequence[str], *, idle_exit_s: float | None = None) -> None:
        """Consume ``topics`` until a stop request (or, with ``idle_exit_s``, until nothing arrived
        for that long and the stage agrees); the caller closes the clients (:meth:`close`)."""
        self.consumer.subscribe(list(topics), listener=_Rebalance(self, stage))
        # Fetch the topics' metadata after subscribing and before the first poll joins the group.
        # Otherwise kafka-python (3.0.12) joins with an empty metadata snapshot, gets a first
        # assignment, finds it stale at once and rebalances again; that second join sometimes never
        # completes after a previous member's leave, and the member sits unassigned (seen in
        # tests/test_stream_loop.py about one run in three). One join per member avoids it.
        for topic in topics:
            self.retry("metadata", lambda topic=topic: self.consumer.partitions_for_topic(topic))
        last_data = time.monotonic()
        try:
            while not self.stop_requested:
                started = time.perf_counter()
                records = self._collect()
                if records:
                    self._handle(stage, records, poll_s=time.perf_counter() - started)
                    # Idle counts from the end of the last batch: one that took long (a broker
                    # outage waited out) must not look like an idle stream.
                    last_data = time.monotonic()
                stage.between_batches(idle=not records)
                if not self.consumer.assignment():
                    last_data = time.monotonic()  # still joining the group: not idle yet
                elif idle_exit_s is not None and time.monotonic() - last_data > idle_exit_s and stage.may_exit_idle():
                    log.info("%s: idle for %.0f s, stopping", self.name, idle_exit_s)
                    return
        except StopRequested:
            log.warning("%s: stopped while retrying; what was not committed will be re-read", self.name)
        if self.stop_requested:
            with contextlib.suppress(StopRequested):
                stage.finish()

    def _handle(self, stage: BatchStage[S], records: list[Record], *, poll_s: float) -> None:
        result = stage.process_batch(records)
        clock = time.perf_counter()
        self.send(result.messages)
        if not result.commit:
            return
        self.deliver()
        delivered = time.perf_counter()
        committed = self.commit(batch_offsets(records))
        seconds = {"poll": poll_s, "produce": delivered - clock, "commit": time.perf_counter() - delivered}
        stage.batch_done(records, result, BatchReport(committed, seconds))

    def _collect(self) -> list[Record]:
        """Poll until the batch is full or its latency bound has passed since its first record."""
        limits = self.limits
        deadline: float | None = None
        while len(self._buffer) < limits.max_records and not self.stop_requested:
            if deadline is None:
                timeout_ms = limits.max_latency_ms
            else:
                timeout_ms = int((deadline - time.monotonic()) * 1000)
                if timeout_ms <= 0:
                    break
            for records in self._poll(timeout_ms, limits.max_records - len(self._buffer)).values():
                self._buffer.extend(records)
            if self._buffer and deadline is None:
                deadline = time.monotonic() + limits.max_latency_ms / 1000
            if not self._buffer:
                break
        batch, self._buffer = self._buffer, []
        return batch

    def _poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Record]]:
        if self._reposition:
            self._return_to_committed()
        polled = self.retry("poll", lambda: self.consumer.poll(timeout_ms=timeout_ms, max_records=max_records))
        if self._reposition:  # a rebalance inside this poll gave partitions straight back
            moved = self._return_to_committed()
            polled = {tp: records for tp, records in polled.items() if tp not in moved}
        return polled

    def _return_to_committed(self) -> set[TopicPartition]:
        """Seek every partition that came straight back to its committed offset; the ones moved.

        kafka-python (3.x) keeps the fetch position of a partition that a rebalance revokes and
        assigns to the same member again. Between the last commit and that position lie records the
        stages have given up at the revocation: the loop's buffer (dropped), a batch whose commit
        the rebalance refused (counted nowhere), the coordinator's uncommitted horizon (its state
        starts over from the commit). Reading on from the kept position would skip them for good.
        Done here, after ``poll`` returns, because reading a committed offset is a broker call,
        which kafka-python's rebalance callback (run inside its event loop) cannot make.
        """
        moved: set[TopicPartition] = set()
        assignment = self.consumer.assignment()
        for tp in sorted(self._reposition):
            if tp in assignment:
                committed = self.retry("read committed offsets", lambda tp=tp: self.consumer.committed(tp))
                if committed is not None:
                    self.consumer.seek(tp, committed)
                elif self.consumer.config.get("auto_offset_reset") == "latest":
                    self.consumer.seek_to_end(tp)
                else:
                    self.consumer.seek_to_beginning(tp)
                log.info("%s: %s/%d came straight back; reading again from %s", self.name, tp.topic,
                         tp.partition, committed if committed is not None else "the reset policy's end")  # fmt: skip
                moved.add(tp)
            self._reposition.discard(tp)
        return moved

    def _drop_buffered(self, revoked: Sequence[TopicPartition]) -> int:
        """Drop the buffered records of ``revoked``; how many partitions had some."""
        lost = set(revoked)
        dropped = {(r.topic, r.partition) for r in self._buffer if TopicPartition(r.topic, r.partition) in lost}
        self._buffer = [r for r in self._buffer if (r.topic, r.partition) not in dropped]
        return len(dropped)

    # -- producing and committing (also for a stage's own checkpoints) --------------------------
    def send(self, messages: Iterable[OutMessage]) -> None:
        """Start sending ``messages``; :meth:`deliver` (or the next :meth:`commit`) confirms them.

        Never raises a broker error: a message whose send fails is sent again by :meth:`deliver`,
        which waits out transient failures and raises permanent ones. After one failure the rest
        are left to it too: a send can block for ``max_block_ms`` (a topic without metadata), and
        paying that once per message would stall the stage for as many times over.
        """
        failed = False
        for message in messages:
            delivery = _Delivery(message)
            if not failed:
                try:
                    delivery.future = self._send(message)
                except KafkaError:
                    failed = True
            self._pending.append(delivery)

    def deliver(self) -> None:
        """Flush the producer and confirm every message sent since the last delivery."""
        if self._pending:
            self.retry("deliver", self._deliver_once)

    def _deliver_once(self) -> None:
        for delivery in self._pending:
            future = delivery.future
            if future is None or (future.is_done and future.failed()):
                delivery.future = self._send(delivery.message)
        self.producer.flush(timeout=self.delivery_timeout_s)
        for delivery in self._pending:
            # Raises the delivery error, if any: the retry sends the failed ones again.
            delivery.future.get(timeout=self.delivery_timeout_s)
        self._pending.clear()

    def _send(self, message: OutMessage) -> Any:
        headers = list(message.headers) if message.headers is not None else None
        return self.producer.send(message.topic, key=message.key, value=message.value, headers=headers)

    def commit(self, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> bool:
        """Deliver what was sent, then commit ``offsets``; False when a rebalance refused the commit."""
        self.deliver()
        if not offsets:
            return True
        try:
            self.retry("commit", lambda: self.consumer.commit(dict(offsets)), give_up_on=(CommitFailedError,))
        except CommitFailedError as exc:
            # Another member owns these partitions now and re-reads from the last commit; the
            # stage's effects were idempotent, so this costs time only.
            log.warning(
                "%s: commit refused after a rebalance (%s); the new owner re-reads what was not committed",
                self.name,
                exc,
            )
            return False
        return True

    def close(self) -> None:
        """Close the producer (flushing what is left) and leave the group at once, so the partitions
        move to another member without waiting for the session timeout; offsets were committed
        explicitly, so closing commits nothing."""
        self.producer.close(timeout=10)
        self.consumer.close(autocommit=False)


class _Rebalance(ConsumerRebalanceListener):
    """Drops what a rebalance takes away, and marks what it gives straight back for re-reading.

    The seek itself waits for the end of ``poll`` (:meth:`StreamLoop._return_to_committed`).
    """

    def __init__(self, loop: StreamLoop[Any], stage: BatchStage[Any]) -> None:
        self.loop = loop
        self.stage = stage
        self.revoked: set[TopicPartition] = set()

    def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        dropped = self.loop._drop_buffered(revoked)
        self.revoked |= set(revoked)
        if revoked:
            log.info(
                "%s: partitions revoked %s (dropped buffered records of %d partitions for their new owner)",
                self.loop.name,
                _fmt_partitions(revoked),
                dropped,
            )
        self.stage.partitions_revoked(revoked)

    def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        log.info("%s: partitions assigned %s", self.loop.name, _fmt_partitions(assigned))
        self.loop._reposition |= self.revoked & set(assigned)
        self.revoked.clear()  # partitions that went elsewhere are re-read by their new owner
        self.stage.partitions_assigned(assigned)


def _fmt_partitions(partitions: Iterable[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}/{tp.partition}" for tp in sorted(partitions)) or "none"
