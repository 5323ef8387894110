"""Putting posts on the posts topic: from files, from the simulator, from tests.

Posts are keyed by account id, so one account's posts stay in order on one partition (the
per-account aggregates and the coordination stage read them in time order). Lines are sent as
they are: validation is the workers' job, and a bad line must reach the dead-letter topic with its
reason rather than vanish at the producer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import IO, Any

from kafka import KafkaProducer

from stream.config import ChorusConfig
from stream.kafka.clients import make_producer
from stream.kafka.messages import encode_post


def post_key(post: dict[str, Any]) -> bytes | None:
    account = post.get("account_id")
    return str(account).encode() if account is not None else None


def send_messages(
    producer: KafkaProducer,
    topic: str,
    messages: Iterable[tuple[bytes | None, bytes]],
    *,
    on_sent: Callable[[int], None] | None = None,
    chunk: int = 1_000,
) -> dict[int, int]:
    """Send (key, value) pairs and wait for every ack; returns partition -> end offset written.

    The end offsets let a caller (the demo, a test) know exactly when the workers have committed
    everything that was sent, without trusting the broker's ListOffsets answer.
    """
    ends: dict[int, int] = {}
    pending = []

    def settle() -> None:
        for future in pending:
            meta = future.get(timeout=60)
            ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
        if on_sent:
            on_sent(len(pending))
        pending.clear()

    for key, value in messages:
        pending.append(producer.send(topic, key=key, value=value))
        if len(pending) >= chunk:
            producer.flush()
            settle()
    producer.flush()
    settle()
    return ends


def produce_posts(
    config: ChorusConfig,
    posts: Iterable[dict[str, Any]],
    *,
    extra: Iterable[tuple[bytes | None, bytes]] = (),
    on_sent: Callable[[int], None] | None = None,
) -> dict[int, int]:
    """Encode and send posts (plus any raw extra messages); returns partition -> end offset."""
    producer = make_producer(config, client_id=f"{config.kafka.client_id_prefix}-producer")
    try:
        messages = [(post_key(p), encode_post(p)) for p in posts]
        messages.extend(extra)
        return send_messages(producer, config.topics.posts, messages, on_sent=on_sent)
    finally:
        producer.close(timeout=30)


def produce_lines(config: ChorusConfig, handle: IO[bytes]) -> int:
    """Send each non-blank line of a JSONL stream as one message; returns how many were sent."""
    producer = make_producer(config, client_id=f"{config.kafka.client_id_prefix}-producer")

    def messages() -> Iterable[tuple[bytes | None, bytes]]:
        for line in handle:
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            try:
                key = post_key(json.loads(line))
            except (ValueError, AttributeError):
                key = None  # the worker will dead-letter it with the reason
            yield key, line

    sent = 0

    def count(n: int) -> None:
        nonlocal sent
        sent += n

    try:
        send_messages(producer, config.topics.posts, messages(), on_sent=count)
    finally:
        producer.close(timeout=30)
    return sent
