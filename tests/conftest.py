"""Shared pytest fixtures. Helpers live in modules beside this file; this file only wires them up.

Sections: Kafka brokers (below). Add new groups of fixtures as new sections.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from brokers import ApacheKafkaBroker, RunningBroker, new_topic, resolve_kafka_jars

from stream.broker import EmbeddedBroker

# --- Kafka brokers --------------------------------------------------------------------------------
# One broker of each kind per test session (starting a JVM costs seconds); topics are unique per test,
# so tests don't see each other's records. Consumers in tests should use brokers.consumer_config()
# (6 s session timeout: Tansu joins a group after ~half of it).

BROKER_KINDS = ("apache-kafka", "tansu")


@pytest.fixture(scope="session")
def kafka_jars() -> Path:
    """The Apache Kafka jars, fetched by Maven on a machine's first run and cached after that."""
    return resolve_kafka_jars()


@pytest.fixture(scope="session")
def apache_kafka(kafka_jars: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafkaBroker]:
    """A single-node Apache Kafka 4.x broker shared by the session. Don't stop it: use fresh_apache_kafka."""
    with ApacheKafkaBroker(tmp_path_factory.mktemp("apache-kafka"), libs=kafka_jars) as broker:
        yield broker


@pytest.fixture
def fresh_apache_kafka(kafka_jars: Path, tmp_path: Path) -> Iterator[ApacheKafkaBroker]:
    """A private Apache Kafka broker the test may stop, kill and start again (same ports and data)."""
    broker = ApacheKafkaBroker(tmp_path / "apache-kafka", libs=kafka_jars)
    try:
        broker.start()
        yield broker
    finally:
        broker.kill()  # the data dies with tmp_path; no need for a clean shutdown


@pytest.fixture(scope="session")
def tansu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """The Tansu broker the demo embeds (in-memory storage), shared by the session."""
    with EmbeddedBroker(log_dir=tmp_path_factory.mktemp("tansu")) as broker:
        yield broker


@pytest.fixture(scope="session", params=BROKER_KINDS)
def broker(request: pytest.FixtureRequest) -> RunningBroker:
    """Each broker kind in turn: a test using it runs once on Apache Kafka and once on Tansu."""
    fixture_name = {"apache-kafka": "apache_kafka", "tansu": "tansu"}[request.param]
    return request.getfixturevalue(fixture_name)


@pytest.fixture
def topic_factory(request: pytest.FixtureRequest) -> Callable[..., str]:
    """``topic_factory(broker, partitions=1) -> name``: a new topic named after the test, unique per call."""

    def make(on: RunningBroker, partitions: int = 1) -> str:
        return new_topic(on, partitions, prefix=request.node.name)

    return make
