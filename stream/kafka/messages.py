"""The post format on the wire (schema version 1) and its validation, one call per micro-batch.

A post is one JSON object per Kafka message::

    {"post_id": "p1", "account_id": "a1", "created_at": "2026-11-22T10:00:00Z", "text": "...",
     "lang": "en", "reply_to": null, "repost_of": null, "quote_of": null,
     "urls": [], "hashtags": [], "mentions": [], "meta": {}, "schema_version": 1}

``created_at`` is RFC 3339 / ISO 8601 with a time (naive means UTC) or epoch seconds or
milliseconds (numbers above 10^11 are milliseconds: 10^11 s is the year 5138).

Validation is typed decoding in C (msgspec): the whole batch is decoded as one JSON array in a
single call; only when that fails is it decoded message by message to find and quarantine the bad
ones with a precise reason. Checks that need values (empty or oversized text, future timestamps)
are vectorised over the batch with polars. Every message ends up either in ``posts`` or in
``rejected``, never nowhere.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
import polars as pl
import pyarrow as pa

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = frozenset({1})

_EPOCH_MS_CUTOFF = 1e11


class PostV1(msgspec.Struct, forbid_unknown_fields=False):
    """Wire format v1. Unknown top-level fields are tolerated (forward compatibility)."""

    post_id: str
    account_id: str
    created_at: dt.datetime | float
    text: str
    lang: str | None = None
    reply_to: str | None = None
    repost_of: str | None = None
    quote_of: str | None = None
    urls: list[str] = []
    hashtags: list[str] = []
    mentions: list[str] = []
    meta: dict[str, Any] = {}
    schema_version: int = SCHEMA_VERSION


class EmbeddedPostV1(PostV1, forbid_unknown_fields=False):
    """A post as the workers republish it on the embedded-posts topic (``topics.embedded``): the post's
    fields plus its sentence embedding, for the coordination stage's paraphrase network.

    ``embedding`` is the vector as little-endian float32 bytes (base64 in JSON: 2 kB for MiniLM's 384
    floats, exact, and decoded without a Python float per value); null when the post was not
    embedded (not scored, or a repost). ``embedding_model`` names the encoder.
    """

    embedding: bytes | None = None
    embedding_model: str | None = None


@dataclass(frozen=True)
class RawMessage:
    """A Kafka record as it came off the wire, before any parsing."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None


@dataclass(frozen=True)
class Rejection:
    """A message that is not a valid post, with a short reason code and a human explanation."""

    message: RawMessage
    reason: str
    error: str


#: Reason codes a rejection can carry (the dead-letter topic's ``chorus.reason`` header).
REJECTION_REASONS = (
    "empty_message",
    "message_too_large",
    "invalid_utf8",
    "not_json",
    "not_an_object",
    "missing_field",
    "wrong_type",
    "invalid_timestamp",
    "unsupported_schema_version",
    "nul_character",
    "empty_text",
    "text_too_long",
    "future_timestamp",
    "store_rejected",  # valid on the wire, refused by the database (found by the worker)
)

POSTS_FRAME_SCHEMA: dict[str, pl.DataType] = {
    "post_id": pl.String(),
    "account_id": pl.String(),
    "created_at": pl.Datetime("us", "UTC"),
    "text": pl.String(),
    "lang": pl.String(),
    "reply_to": pl.String(),
    "repost_of": pl.String(),
    "quote_of": pl.String(),
    "urls": pl.List(pl.String()),
    "hashtags": pl.List(pl.String()),
    "mentions": pl.List(pl.String()),
    "schema_version": pl.Int32(),
    "source_topic": pl.String(),
    "source_partition": pl.Int32(),
    "source_offset": pl.Int64(),
}


@dataclass
class ValidatedBatch:
    """The outcome of one micro-batch: valid posts as a frame (+ their decoded records), and rejects."""

    posts: pl.DataFrame
    records: list[PostV1] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


class PostValidator:
    """Turns raw Kafka messages into a posts frame and a list of rejections."""

    def __init__(
        self,
        *,
        max_text_bytes: int = 32_768,
        max_message_bytes: int = 1_048_576,
        future_skew_s: float = 300.0,
        embeddings: bool = False,
    ) -> None:
        """``embeddings``: read :class:`EmbeddedPostV1` and add an ``embedding`` column (list of float32,
        null where none) to the frame: the coordination stage on the embedded-posts topic."""
        self.max_text_bytes = max_text_bytes
        self.max_message_bytes = max_message_bytes
        self.future_skew_s = future_skew_s
        self.embeddings = embeddings
        struct = EmbeddedPostV1 if embeddings else PostV1
        self._one = msgspec.json.Decoder(struct)
        self._many = msgspec.json.Decoder(list[struct])  # type: ignore[valid-type]

    def validate(self, messages: Sequence[RawMessage], now: dt.datetime | None = None) -> ValidatedBatch:
        now = now or dt.datetime.now(dt.UTC)
        rejected: list[Rejection] = []
        candidates: list[RawMessage] = []
        for message in messages:
            size_problem = self._size_problem(message)
            if size_problem:
                rejected.append(Rejection(message, *size_problem))
            else:
                candidates.append(message)

        decoded = self._decode_batch(candidates)
        if decoded is None:
            decoded = []
            kept: list[RawMessage] = []
            for message in candidates:
                outcome = self._decode_one(message)
                if isinstance(outcome, Rejection):
                    rejected.append(outcome)
                else:
                    decoded.append(outcome)
                    kept.append(message)
            candidates = kept

        if self.embeddings:
            decoded, candidates = _drop_bad_embeddings(decoded, candidates, rejected)
        frame = _to_frame(decoded, candidates)
        if self.embeddings:
            frame = frame.with_columns(embedding=_embedding_column(decoded))  # type: ignore[arg-type]
        frame, decoded, candidates, late = self._check_values(frame, decoded, candidates, now)
        rejected.extend(late)
        # A producer retry can put the same post twice in one batch; the last copy wins, as the
        # store's upsert would decide anyway.
        if frame.height and frame.get_column("post_id").is_duplicated().any():
            keep = frame.with_row_index("_row").unique("post_id", keep="last", maintain_order=True)
            rows = keep.get_column("_row").to_list()
            decoded = [decoded[i] for i in rows]
            frame = keep.drop("_row")
        return ValidatedBatch(posts=frame, records=decoded, rejected=rejected)

    def _size_problem(self, message: RawMessage) -> tuple[str, str] | None:
        if not message.value:
            return "empty_message", "the message has no value (null or zero bytes)"
        if len(message.value) > self.max_message_bytes:
            return (
                "message_too_large",
                f"the message is {len(message.value)} bytes; the limit is {self.max_message_bytes}",
            )
        return None

    def _decode_batch(self, messages: list[RawMessage]) -> list[PostV1] | None:
        """Fast path: one C call for the whole batch. None means 'some message is bad'."""
        if not messages:
            return []
        try:
            joined = b"[" + b",".join(m.value for m in messages if m.value) + b"]"
            posts = self._many.decode(joined)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
            return None
        # A value such as b'{...},{...}' would splice into two posts: the count gives it away.
        if len(posts) != len(messages) or not all(_is_finite_time(p) for p in posts):
            return None
        if any(p.schema_version not in SUPPORTED_SCHEMA_VERSIONS for p in posts):
            return None
        # NUL can only arrive escaped; a plain substring search is enough to send the batch the slow way.
        if b"\\u0000" in joined:
            return None
        return posts

    def _decode_one(self, message: RawMessage) -> PostV1 | Rejection:
        # Checked here, before the JSON decoder, so the reason never depends on how a library words or
        # classifies the error (msgspec 0.23 reports bad UTF-8 as a plain decode error). Only the slow
        # path pays for it: a batch with bad bytes always fails the one-call decode first.
        utf8_problem = _utf8_problem(message.value or b"")
        if utf8_problem is not None:
            return Rejection(message, "invalid_utf8", f"the message is not valid UTF-8: {utf8_problem}")
        try:
            post = self._one.decode(message.value or b"")
        except msgspec.ValidationError as exc:
            return Rejection(message, *_classify_validation_error(str(exc)))
        except msgspec.DecodeError as exc:
            return Rejection(message, "not_json", f"the message is not JSON: {exc}")
        if not _is_finite_time(post):
            return Rejection(
                message, "invalid_timestamp", f"created_at {post.created_at!r} is not a valid epoch time"
            )
        if b"\\u0000" in (message.value or b"") and b"\\u0000" in msgspec.json.encode(post):
            return Rejection(
                message,
                "nul_character",
                "a field contains the NUL character (U+0000), which databases cannot store; strip it at the source",
            )
        if post.schema_version not in SUPPORTED_SCHEMA_VERSIONS:
            return Rejection(
                message,
                "unsupported_schema_version",
                f"schema_version {post.schema_version} is not supported; "
                f"this worker reads {sorted(SUPPORTED_SCHEMA_VERSIONS)}",
            )
        return post

    def _check_values(
        self,
        frame: pl.DataFrame,
        decoded: list[PostV1],
        messages: list[RawMessage],
        now: dt.datetime,
    ) -> tuple[pl.DataFrame, list[PostV1], list[RawMessage], list[Rejection]]:
        if frame.height == 0:
            return frame, decoded, messages, []
        latest = now + dt.timedelta(seconds=self.future_skew_s)
        checks = frame.select(
            empty=pl.col("text").str.strip_chars().str.len_chars() == 0,
            too_long=pl.col("text").str.len_bytes() > self.max_text_bytes,
            future=pl.col("created_at") > pl.lit(latest, dtype=pl.Datetime("us", "UTC")),
        )
        bad = checks.select(pl.any_horizontal(pl.all())).to_series()
        if not bad.any():
            return frame, decoded, messages, []
        rejected: list[Rejection] = []
        for row in bad.arg_true().to_list():
            empty, too_long, future = checks.row(row)
            message, post = messages[row], decoded[row]
            if empty:
                rejected.append(Rejection(message, "empty_text", "text is empty or only white space"))
            elif too_long:
                size = len(post.text.encode("utf-8", "surrogatepass"))
                rejected.append(
                    Rejection(
                        message,
                        "text_too_long",
                        f"text is {size} bytes; the limit is {self.max_text_bytes}",
                    )
                )
            elif future:
                rejected.append(
                    Rejection(
                        message,
                        "future_timestamp",
                        f"created_at {frame['created_at'][row].isoformat()} is more than "
                        f"{self.future_skew_s:g} s ahead of the worker's clock ({now.isoformat()})",
                    )
                )
        keep = (~bad).to_list()
        return (
            frame.filter(~bad),
            [p for p, k in zip(decoded, keep, strict=True) if k],
            [m for m, k in zip(messages, keep, strict=True) if k],
            rejected,
        )


def _utf8_problem(value: bytes) -> str | None:
    """Where ``value`` stops being UTF-8 (Python's strict codec: no lone surrogates, no overlongs), or None."""
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"byte {exc.start}: {exc.reason}"
    return None


def _is_finite_time(post: PostV1) -> bool:
    value = post.created_at
    return isinstance(value, dt.datetime) or (math.isfinite(value) and 0 <= value < 1e14)


def epoch_microseconds(value: dt.datetime | float) -> int:
    """created_at as integer microseconds since the epoch, UTC (naive datetimes are UTC)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return round(value.timestamp() * 1_000_000)
    seconds = value / 1000.0 if value >= _EPOCH_MS_CUTOFF else value
    return round(seconds * 1_000_000)


def _to_frame(posts: list[PostV1], messages: list[RawMessage]) -> pl.DataFrame:
    columns: dict[str, list[Any]] = {
        "post_id": [p.post_id for p in posts],
        "account_id": [p.account_id for p in posts],
        "created_at": [epoch_microseconds(p.created_at) for p in posts],
        "text": [p.text for p in posts],
        "lang": [p.lang for p in posts],
        "reply_to": [p.reply_to for p in posts],
        "repost_of": [p.repost_of for p in posts],
        "quote_of": [p.quote_of for p in posts],
        "urls": _list_column([p.urls for p in posts]),
        "hashtags": _list_column([p.hashtags for p in posts]),
        "mentions": _list_column([p.mentions for p in posts]),
        "schema_version": [p.schema_version for p in posts],
        "source_topic": [m.topic for m in messages],
        "source_partition": [m.partition for m in messages],
        "source_offset": [m.offset for m in messages],
    }
    schema = dict(POSTS_FRAME_SCHEMA)
    schema["created_at"] = pl.Int64()
    frame = pl.DataFrame(columns, schema=schema)
    return frame.with_columns(pl.col("created_at").cast(pl.Datetime("us")).dt.replace_time_zone("UTC"))


def _drop_bad_embeddings(
    decoded: list[PostV1], messages: list[RawMessage], rejected: list[Rejection]
) -> tuple[list[PostV1], list[RawMessage]]:
    """Reject posts whose embedding bytes are not whole float32 values (a truncated or foreign value)."""
    kept_posts, kept_messages = [], []
    for post, message in zip(decoded, messages, strict=True):
        vector = getattr(post, "embedding", None)
        if vector is not None and len(vector) % 4:
            rejected.append(Rejection(message, "wrong_type", f"embedding must be little-endian float32 bytes "
                                      f"(a multiple of 4), got {len(vector)} bytes"))  # fmt: skip
        else:
            kept_posts.append(post)
            kept_messages.append(message)
    return kept_posts, kept_messages


def _embedding_column(posts: list[PostV1]) -> pl.Series:
    """The posts' embeddings as a list[float32] column (null where none), through Arrow offsets."""
    vectors = [getattr(p, "embedding", None) for p in posts]
    lengths = np.fromiter((len(v) // 4 if v is not None else 0 for v in vectors), dtype=np.int32, count=len(vectors))
    offsets = np.zeros(len(vectors) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = np.frombuffer(b"".join(v for v in vectors if v is not None), dtype="<f4")
    mask = pa.array([v is None for v in vectors])
    array = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.float32()), mask=mask)
    return pl.Series("embedding", array).cast(pl.List(pl.Float32()))


def encode_embedding(vector: np.ndarray) -> bytes | None:
    """One embedding as :class:`EmbeddedPostV1` carries it (None for a NaN row: not embedded)."""
    vector = np.asarray(vector, dtype="<f4")
    return None if not np.isfinite(vector).all() else vector.tobytes()


def _list_column(lists: list[list[str]]) -> pl.Series:
    """Build a list[str] column through Arrow offsets: 30x faster than polars from nested lists."""
    lengths = np.fromiter(map(len, lists), dtype=np.int32, count=len(lists))
    offsets = np.zeros(len(lists) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = pa.array(list(itertools.chain.from_iterable(lists)), pa.large_string())
    return pl.Series(pa.ListArray.from_arrays(pa.array(offsets), values)).cast(pl.List(pl.String()))


def _classify_validation_error(error: str) -> tuple[str, str]:
    if error.startswith("Object missing required field"):
        return "missing_field", error
    if error.startswith("Expected `object`"):
        return "not_an_object", f"a post must be a JSON object: {error}"
    if "created_at" in error:
        return "invalid_timestamp", f"{error} (use ISO 8601 with a time, or epoch seconds/milliseconds)"
    return "wrong_type", error


def encode_post(post: dict[str, Any] | PostV1) -> bytes:
    """Serialise a post for producing (used by the simulator, the producer command and tests)."""
    return msgspec.json.encode(post)
