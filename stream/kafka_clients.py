"""kafka-python clients built from the configuration, with the settings Chorus relies on.

Kept in one place so that security settings (SASL, TLS) and the delivery guarantees are the same
for every producer and consumer Chorus makes, on the embedded broker and on a user's cluster.
"""

from __future__ import annotations

from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from stream.config import ChorusConfig


def make_consumer(config: ChorusConfig, *, client_id: str, **overrides: Any) -> KafkaConsumer:
    """A group member that never commits on its own: the worker commits after its effects."""
    settings: dict[str, Any] = {
        **config.kafka.client_settings(),
        "client_id": client_id,
        "group_id": config.worker.group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": config.worker.batch_max_posts,
        "session_timeout_ms": config.worker.session_timeout_ms,
        "heartbeat_interval_ms": config.worker.heartbeat_interval_ms,
        "max_poll_interval_ms": config.worker.max_poll_interval_ms,
        "reconnect_backoff_max_ms": 5_000,
    }
    settings.update(overrides)
    return KafkaConsumer(**settings)


def make_producer(config: ChorusConfig, *, client_id: str, **overrides: Any) -> KafkaProducer:
    """acks=all with retries: a flag or dead letter the worker sent is on the broker before commit."""
    settings: dict[str, Any] = {
        **config.kafka.client_settings(),
        "client_id": client_id,
        "acks": "all",
        "linger_ms": 5,
        "retries": 2_147_483_647,
        "enable_idempotence": config.kafka.enable_idempotence,
        "max_in_flight_requests_per_connection": 5,
        "reconnect_backoff_max_ms": 5_000,
        "max_block_ms": 60_000,
    }
    settings.update(overrides)
    return KafkaProducer(**settings)


def make_admin(config: ChorusConfig, *, client_id: str = "chorus-admin") -> KafkaAdminClient:
    return KafkaAdminClient(**config.kafka.client_settings(), client_id=client_id)
