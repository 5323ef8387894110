"""``chorus rekey``: posts re-keyed by the objects they share, so coordination can scale out.

Posts arrive keyed by account, which keeps an account's posts in order but scatters a co-action
(fifty accounts sharing one link) over every partition: a coordinator must therefore own all of
them. The rekey stage turns each post into one *action* message per object it shares (its repost
target, normalised text, reply target, each url, its hashtag set: what
:func:`detectors.coordination.coaction.post_actions` derives) on ``chorus.posts.by-object``,
keyed by ``<type>:<object hash>`` (co_similar: one message per LSH *band code* of the post's
token set, keyed ``co_similar:band:<code>``, see below). Kafka's partitioner sends equal keys to one partition, so a
consumer group of coordination workers over that topic (``chorus coordinator --input actions
--emit-edges``) can split it: each worker sees *every* action on the objects routed to it, which is
all that matching needs (a match is two posts on the same object). ::

    posts topic ──► chorus rekey (group chorus-rekey, N processes) ──► chorus.posts.by-object
    (key: account)   validate, post -> actions, produce, commit         (key: type:object hash)
                                                                               │
                     ┌─────────────────────────────────────────────────────────┤
                     ▼                                                         ▼
          coordination worker 1  ...                              coordination worker M
          chorus coordinator --input actions --emit-edges (one group over by-object):
          CoActionState.add_actions on its partitions' objects; sends each micro-batch's
          new/better per-object rows + accepted actions; flush, commit its horizon start
                     │                                                         │
                     └──────────────► chorus.coordination.edges ◄──────────────┘
                                          │  (stream/coordination/graph_stage.py)
                                          ▼
                         chorus graph-stage (one process): ObjectMatchLedger over the
                         horizon -> account graph -> campaigns -> store + flags, commit

co_similar relates *different* objects (near-duplicate token sets), so routing by the set would
split a pair over two workers. Its actions are routed by band instead: a post's token set has
``bands`` MinHash band codes (the batch's:
:func:`~detectors.coordination.incremental_similar.set_band_codes`) and goes to the owner of each.
Two sets the batch can relate share a code, so one worker sees both; and a worker holding a post
of a set holds all posts of that set (each is sent to every owner of each of its codes), so its
per-object rows are exact, and the graph stage's best-row merge makes the repeats harmless. The
price is one message per band code for each post with text (19 at the default threshold 0.8 and
96 permutations). Posts whose set is too short to match are routed by the set, once, for the
activity counts. The rekey stage must use the coordinator's co-action settings (threshold,
``num_perm``, seed, ``min_tokens``): it takes them from ``[coordinator]``.

Per-object rows merge exactly: :func:`~detectors.coordination.incremental.matches_from_object_rows`
of the rows of all workers equals the batch's matches (``tests/test_coordination_stream_rekey.py``
proves it through Tansu with two workers), and so does an
:class:`~detectors.coordination.incremental.ObjectMatchLedger` fed through the edges topic
(``tests/test_coordination_stream_edges.py``: two workers in one group and the graph stage find
the batch's campaigns). Without the workers, one ``chorus coordinator --input actions`` runs the
whole stage over the by-object topic.

At-least-once, like the worker, through the consume loop every stage shares
(:mod:`stream.kafka.loop`): produce every action of a micro-batch, flush, then commit; a broker
that is briefly away is waited for (counted in ``retries``), not crashed on. A replay re-sends
identical actions, which the coordination state recognises by (type, post, object); a batch whose
commit a rebalance refused is counted by its new owner only. Invalid messages are skipped and
counted (the posts workers dead-letter them).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
import polars as pl

from detectors.coordination.coaction import CoActionConfig, post_actions
from detectors.coordination.incremental import STREAM_NETWORK_TYPES
from detectors.coordination.incremental_similar import eligible_sets, set_band_codes
from stream.config import BY_OBJECT_TOPIC, ChorusConfig
from stream.kafka.clients import make_consumer, make_producer
from stream.kafka.loop import BatchLimits, BatchReport, BatchResult, BatchStage, OutMessage, Record, StreamLoop
from stream.kafka.messages import PostValidator, RawMessage
from stream.kafka.retry import Retrier

log = logging.getLogger("chorus.rekey")

ACTION_SCHEMA = "chorus.action/1"
#: Seed of the object hash in the routing key (any fixed value: it only has to be the same everywhere).
ROUTING_SEED = 0x0B1EC7


class ActionV1(msgspec.Struct, forbid_unknown_fields=False):
    """One (post, object) on the by-object topic."""

    network: str
    post_id: str
    account_id: str
    t_us: int
    key: str
    schema: str = ACTION_SCHEMA


ACTION_FRAME_SCHEMA: dict[str, pl.DataType] = {
    "network": pl.String(),
    "post_id": pl.String(),
    "account_id": pl.String(),
    "t_us": pl.Int64(),
    "key": pl.String(),
}

_DECODER = msgspec.json.Decoder(ActionV1)


def object_actions(
    posts: pl.DataFrame, networks: Sequence[str] = STREAM_NETWORK_TYPES, coaction: CoActionConfig | None = None
) -> pl.DataFrame:
    """``network, post_id, account_id, t_us, key, route``: one row per post and shared object.

    co_similar: one row per post and band code of its token set (``route`` = ``co_similar:band:<code>``),
    with the band codes of ``coaction`` (the coordinator's co-action settings; default ones when None).
    """
    by_object = [post_actions(posts, n).with_columns(network=pl.lit(n)) for n in networks if n != "co_similar"]
    frames = [
        f.select(
            *ACTION_FRAME_SCHEMA,
            route=pl.format("{}:{}", "network", pl.col("key").hash(ROUTING_SEED).cast(pl.String)),
        )
        for f in by_object
    ]
    if "co_similar" in networks:
        frames.append(_similar_actions(posts, coaction or CoActionConfig()))
    if not frames:
        return pl.DataFrame(schema={**ACTION_FRAME_SCHEMA, "route": pl.String()})
    return pl.concat(frames)


def _similar_actions(posts: pl.DataFrame, coaction: CoActionConfig) -> pl.DataFrame:
    """co_similar actions routed by band code; sets too short to match, once, by the set."""
    actions = post_actions(posts, "co_similar").with_columns(network=pl.lit("co_similar"))
    can_match = eligible_sets(pl.col("key"), coaction.min_tokens)
    banded = actions.filter(can_match).join(
        set_band_codes(actions.filter(can_match).get_column("key"), coaction), on="key", maintain_order="left"
    )
    return pl.concat(
        [
            banded.select(*ACTION_FRAME_SCHEMA, route=pl.format("co_similar:band:{}", pl.col("code").cast(pl.String)))
            .unique(["post_id", "route"], keep="first", maintain_order=True),
            actions.filter(~can_match).select(
                *ACTION_FRAME_SCHEMA,
                route=pl.format("{}:{}", "network", pl.col("key").hash(ROUTING_SEED).cast(pl.String)),
            ),
        ]
    )


def encode_actions(actions: pl.DataFrame) -> list[tuple[bytes, bytes]]:
    """(Kafka key, value) per action: key = ``<type>:<object hash>``, value = :class:`ActionV1` JSON."""
    encoder = msgspec.json.Encoder()
    return [
        (route.encode(), encoder.encode(ActionV1(network, post_id, account_id, t_us, key)))
        for network, post_id, account_id, t_us, key, route in actions.select(*ACTION_FRAME_SCHEMA, "route").iter_rows()
    ]


def decode_actions(values: Sequence[bytes | None]) -> tuple[pl.DataFrame, list[int]]:
    """Actions from message values; returns the frame and the indexes of values that are not actions."""
    rows: list[ActionV1] = []
    bad: list[int] = []
    for i, value in enumerate(values):
        try:
            action = _DECODER.decode(value or b"")
        except (msgspec.DecodeError, msgspec.ValidationError):
            bad.append(i)
            continue
        if action.schema != ACTION_SCHEMA:
            bad.append(i)
            continue
        rows.append(action)
    frame = pl.DataFrame(
        {
            "network": [a.network for a in rows],
            "post_id": [a.post_id for a in rows],
            "account_id": [a.account_id for a in rows],
            "t_us": [a.t_us for a in rows],
            "key": [a.key for a in rows],
        },
        schema=ACTION_FRAME_SCHEMA,
    )
    return frame, bad


@dataclass(frozen=True)
class RekeySettings:
    """Knobs of the rekey stage (flat, simply typed: a TOML table can hold it)."""

    group_id: str = "chorus-rekey"
    topic: str = BY_OBJECT_TOPIC
    networks: tuple[str, ...] = STREAM_NETWORK_TYPES
    batch_max_posts: int = 2_000
    batch_max_latency_ms: int = 250
    log_interval_s: float = 10.0


@dataclass(frozen=True)
class _Rekeyed:
    """A micro-batch's counts, added to the totals once it is committed."""

    posts: int
    invalid: int
    actions: int


class Rekeyer(BatchStage[_Rekeyed]):
    """One member of the rekey stage's consumer group: posts in, actions by object out."""

    def __init__(self, config: ChorusConfig, settings: RekeySettings | None = None, *, rekeyer_id: str | None = None):
        self.config = config
        self.settings = settings or RekeySettings()
        self.rekeyer_id = rekeyer_id or f"{socket.gethostname()}-{os.getpid()}-rekey"
        self.validator = PostValidator(
            max_text_bytes=config.validation.max_text_bytes,
            max_message_bytes=config.validation.max_message_bytes,
            future_skew_s=config.validation.future_skew_s,
        )
        #: Totals of committed batches; ``retries``: transient broker failures waited out.
        self.posts = self.invalid = self.actions = self.retries = 0
        self._stop = threading.Event()
        self._retry = Retrier(
            self._stop, config.worker.retry_backoff_initial_s, config.worker.retry_backoff_max_s, self.rekeyer_id,
            on_retry=self._count_retry,
        )
        self._last_log = time.monotonic()

    def request_stop(self) -> None:
        """Finish the batch in hand, commit it, and leave the group."""
        self._stop.set()

    def run(self, *, idle_exit_s: float | None = None) -> None:
        """Consume until stopped (or idle for ``idle_exit_s``): validate, split, produce, commit."""
        cfg, s = self.config, self.settings
        consumer = make_consumer(
            cfg, client_id=f"{cfg.kafka.client_id_prefix}-{self.rekeyer_id}", group_id=s.group_id,
            max_poll_records=s.batch_max_posts,
        )  # fmt: skip
        producer = make_producer(cfg, client_id=f"{cfg.kafka.client_id_prefix}-{self.rekeyer_id}-out")
        loop: StreamLoop[_Rekeyed] = StreamLoop(
            consumer, producer, retry=self._retry, name=self.rekeyer_id,
            limits=BatchLimits(s.batch_max_posts, s.batch_max_latency_ms),
            delivery_timeout_s=cfg.kafka.request_timeout_ms / 1000,
        )
        try:
            loop.run(self, [cfg.topics.posts], idle_exit_s=idle_exit_s)
        finally:
            loop.close()
            self._maybe_log(force=True)

    def process_batch(self, records: list[Record]) -> BatchResult[_Rekeyed]:
        """The batch's posts as actions routed by object (invalid messages skipped)."""
        raws = [RawMessage(r.topic, r.partition, r.offset, r.key, r.value) for r in records]
        validated = self.validator.validate(raws)
        actions = object_actions(
            validated.posts, self.settings.networks, self.config.coordinator.incremental_config().coaction
        )
        messages = [OutMessage(self.settings.topic, value, key=key) for key, value in encode_actions(actions)]
        return BatchResult(messages, summary=_Rekeyed(validated.posts.height, len(validated.rejected), actions.height))

    def batch_done(self, records: list[Record], result: BatchResult[_Rekeyed], report: BatchReport) -> None:
        done = result.summary
        if report.committed and done is not None:
            self.posts += done.posts
            self.invalid += done.invalid
            self.actions += done.actions

    def between_batches(self, *, idle: bool) -> None:
        self._maybe_log()

    def _count_retry(self) -> None:
        self.retries += 1

    def _maybe_log(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._last_log < self.settings.log_interval_s:
            return
        self._last_log = time.monotonic()
        log.info("%s: %d posts -> %d actions on %s (%d invalid skipped, %d retries)", self.rekeyer_id, self.posts,
                 self.actions, self.settings.topic, self.invalid, self.retries)
