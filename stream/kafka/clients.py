"""kafka-python clients built from the configuration, with the settings Chorus relies on.

Kept in one place so that security settings (SASL, TLS) and the delivery guarantees are the same
for every producer and consumer Chorus makes, on the embedded broker and on a user's cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from stream.config import ChorusConfig

Client = TypeVar("Client")


class KafkaUnreachable(KafkaError):
    """No connection to the cluster could be made; the message says what the brokers answered."""

    retriable = False


_TELLING = ("authentication", "sasl", "ssl", "certificate", "denied", "unsupported")


class _ErrorLog(logging.Handler):
    """Keeps kafka-python's ERROR lines seen while connecting: the only place it says *why*
    (e.g. "Authentication failed: Invalid username or password"); the exception only says
    "Unable to bootstrap"."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message not in self.messages:
            self.messages.append(message)


@contextmanager
def _explained_connection_errors(config: ChorusConfig) -> Iterator[None]:
    kafka_logger = logging.getLogger("kafka")
    errors = _ErrorLog()
    previous_level = kafka_logger.level
    if kafka_logger.getEffectiveLevel() > logging.ERROR:
        kafka_logger.setLevel(logging.ERROR)  # so the reason reaches the handler; restored below
    kafka_logger.addHandler(errors)
    try:
        yield
    except KafkaError as exc:
        if isinstance(exc, KafkaUnreachable):
            raise
        kcfg = config.kafka
        # Reconnect noise repeats; an authentication or TLS failure is said once, early: keep it.
        telling = [m for m in errors.messages if any(k in m.lower() for k in _TELLING)]
        said = "; ".join(telling[-2:] or errors.messages[-3:]) or "nothing (no broker answered)"
        raise KafkaUnreachable(
            f"cannot connect to Kafka at {kcfg.bootstrap_servers} ({type(exc).__name__}: {exc}). "
            f"The brokers said: {said}. Check kafka.bootstrap_servers, kafka.security_protocol "
            f"({kcfg.security_protocol}), kafka.sasl_mechanism ({kcfg.sasl_mechanism}), kafka.sasl_username "
            f"({kcfg.sasl_username}) and the password (CHORUS_KAFKA__SASL_PASSWORD)."
        ) from exc
    finally:
        kafka_logger.removeHandler(errors)
        kafka_logger.setLevel(previous_level)


def _connect(config: ChorusConfig, factory: Callable[..., Client], settings: dict[str, Any]) -> Client:
    with _explained_connection_errors(config):
        return factory(**settings)


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
    return _connect(config, KafkaConsumer, settings)


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
    return _connect(config, KafkaProducer, settings)


def make_admin(config: ChorusConfig, *, client_id: str = "chorus-admin") -> KafkaAdminClient:
    return _connect(config, KafkaAdminClient, {**config.kafka.client_settings(), "client_id": client_id})
