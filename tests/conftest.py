"""Shared pytest fixtures. Helpers live in modules beside this file; this file only wires them up.

Sections: what CI must not skip (a plugin), Kafka brokers, the console (below). Add new groups of fixtures as new
sections.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from brokers import ApacheKafkaBroker, RunningBroker, new_topic, resolve_kafka_jars

from stream.kafka.broker import EmbeddedBroker

# --- What CI must not skip: tests/ci_guard.py ------------------------------------------------------
pytest_plugins = ["ci_guard", "pytester"]


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


# --- console -------------------------------------------------------------------------------------
# The review console and its data access (stream/review/). `review_db_url` is an empty store on
# SQLite and, when CHORUS_TEST_PG_URL is set, on PostgreSQL (a schema of its own per test). The
# console tests read a store filled by the real pipeline: `chorus demo` runs once per session
# (`demo_store_file`, ~10 s with its embedded broker) and each test gets its own copy (`demo_store`).
# `console_opener` runs the app (AppTest) as a local-mode reviewer on a test's store.

REVIEW_PG_SKIP = (
    "CHORUS_TEST_PG_URL is not set: start a server with `source .ci/postgres.sh` (as root on Debian) "
    "or point it at postgresql+psycopg://USER:PASS@HOST:PORT/DB"
)


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param(
            "postgresql",
            id="postgresql",
            marks=[
                pytest.mark.postgres,
                pytest.mark.skipif("not os.environ.get('CHORUS_TEST_PG_URL')", reason=REVIEW_PG_SKIP),
            ],
        ),
    ]
)
def review_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty database: a temp SQLite file, or a fresh PostgreSQL schema dropped after."""
    import os
    import uuid

    import sqlalchemy as sa
    from sqlalchemy.engine.url import make_url

    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'review.db'}"
        return
    pg_url = os.environ["CHORUS_TEST_PG_URL"]
    schema = f"chorus_review_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = make_url(pg_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def console_opener(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Callable[..., object]]:
    """``console_opener(store, reviewer)`` -> ``console(reviewer=that one, role="reviewer")``, which runs the
    console app (AppTest) as that local-mode reviewer on ``store`` (tests/console_fixtures.py)."""
    from console_fixtures import console_opener as opener  # imports Streamlit: only for the tests that use it

    return functools.partial(opener, monkeypatch)


@pytest.fixture(scope="session")
def demo_store_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store filled by the real pipeline (`chorus demo`, 400 posts, one worker), made once."""
    import subprocess
    import sys

    folder = tmp_path_factory.mktemp("console-demo")
    path = folder / "demo.db"
    result = subprocess.run(
        [sys.executable, "-m", "stream.cli.main", "demo", "--posts", "400", "--workers", "1", "--no-progress",
         "--store", str(path), "--timeout", "240"],
        capture_output=True, text=True, timeout=300, cwd=folder,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.fail("chorus demo failed to fill the console's store:\n" + result.stdout[-3000:] + result.stderr[-3000:])
    return path


@pytest.fixture
def demo_store(demo_store_file: Path, tmp_path: Path) -> Path:
    """A private copy of the demo store for one test (SQLite's backup API: a consistent copy, WAL included)."""
    import sqlite3

    copy = tmp_path / "console.db"
    with sqlite3.connect(demo_store_file) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    source.close()
    target.close()
    return copy
