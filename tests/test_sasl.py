"""Production Kafka settings against a real Apache Kafka broker with SASL authentication and TLS.

The broker (``tests/brokers.py``, ``sasl_users``) has a SASL_PLAINTEXT listener that the pipeline
uses (PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512), and a PLAINTEXT one the test uses to create topics.
What must hold:

* the right credentials, from the configuration (``kafka.security_protocol``, ``sasl_mechanism``,
  ``sasl_username``, ``CHORUS_KAFKA__SASL_PASSWORD``), carry posts in and flags and actions out
  through a real worker, with each mechanism;
* a wrong password is refused in bounded time (kafka-python's bootstrap timeout, 30 s), with the
  broker's reason in the log, instead of a worker that hangs;
* over SASL_SSL, the cluster's CA from ``kafka.ssl_cafile`` carries the stream; without it the
  broker's certificate is refused, in bounded time, with a message that says so;
* the password appears in no log line: Chorus's at every level, kafka-python's at INFO and above.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from brokers import CONSUMER_GROUP_TIMEOUTS, ApacheKafkaBroker
from kafka import KafkaConsumer
from kafka.errors import KafkaError
from pipeline_helpers import expected_flags
from tls import make_pki

from detectors.boilerplate import LlmBoilerplateDetector
from stream.config import ChorusConfig
from stream.kafka.broker import create_topics
from stream.kafka.clients import KafkaUnreachable
from stream.kafka.producer import produce_posts
from stream.pipeline.worker import PostWorker
from stream.simulation import SimulationConfig, simulate_posts
from stream.store.database import Store

pytestmark = pytest.mark.kafka

USER = "chorus-worker"
PASSWORD = "pw-" + uuid.uuid4().hex  # unique, so finding it in a log cannot be a coincidence
WRONG_PASSWORD = "wrong-" + uuid.uuid4().hex

POLICY = """
[policy]
id = "sasl-test"
version = "1"

[[rules]]
id = "boilerplate-label"
action = "label"
label = "likely machine-written"
when = [ { detector = "llm_boilerplate", threshold = "default" } ]
"""


@pytest.fixture(scope="module")
def sasl_kafka(kafka_jars: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafkaBroker]:
    broker = ApacheKafkaBroker(tmp_path_factory.mktemp("sasl-kafka"), libs=kafka_jars,
                               sasl_users={USER: PASSWORD, "other": "other-" + uuid.uuid4().hex})
    with broker:
        yield broker


def sasl_config(
    broker: ApacheKafkaBroker, tmp_path: Path, password: str, mechanism: str = "PLAIN", **kafka: str
) -> ChorusConfig:
    """Topics made on the PLAINTEXT listener; everything Chorus does goes through SASL, configured
    the way an operator would: settings in the file, the password in the environment."""
    prefix = f"s{uuid.uuid4().hex[:6]}"
    topics = {"posts": f"{prefix}-posts", "flags": f"{prefix}-flags", "dead_letter": f"{prefix}-dlq"}
    actions = f"{prefix}-actions"
    create_topics(broker.bootstrap, {topics["posts"]: 2, topics["flags"]: 2, topics["dead_letter"]: 1, actions: 2})
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(POLICY)
    file_settings = {
        "kafka": {"bootstrap_servers": broker.sasl_bootstrap, "security_protocol": "SASL_PLAINTEXT",
                  "sasl_mechanism": mechanism, "sasl_username": USER, **kafka},
        "topics": {**topics, "partitions": 2},
        "worker": {"group_id": f"{prefix}-workers", **CONSUMER_GROUP_TIMEOUTS, "log_interval_s": 1.0},
        "store": {"url": f"sqlite:///{tmp_path / 'chorus.db'}"},
        "policy": {"active_file": str(policy_file), "actions_topic": actions},
    }
    config_file = tmp_path / "chorus.toml"
    config_file.write_text(ChorusConfig.from_dict(file_settings).to_toml())
    config = ChorusConfig.load(config_file, env={"CHORUS_KAFKA__SASL_PASSWORD": password})
    assert password not in repr(config), "the password must not show in the configuration's repr"
    return config


def read_all(config: ChorusConfig, topic: str, expect: int, timeout_s: float = 30.0) -> list:
    consumer = KafkaConsumer(topic, **config.kafka.client_settings(), group_id=None,
                             auto_offset_reset="earliest", enable_auto_commit=False)
    records: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expect and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
    finally:
        consumer.close()
    return records


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every Chorus log record, and kafka-python's from INFO up (its DEBUG dumps protocol bytes)."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="kafka")
    return caplog


def assert_no_secret(caplog: pytest.LogCaptureFixture, *secrets: str) -> None:
    lines = [f"{r.name} {r.levelname} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records]
    leaked = [line for line in lines for s in secrets if s in line]
    assert not leaked, f"secret in {len(leaked)} log lines, e.g. {leaked[0][:300]}"
    assert len(lines) > 20, "the capture should have seen the clients' and the worker's logs"


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_right_credentials_carry_posts_flags_and_actions(sasl_kafka, tmp_path: Path, all_logs, mechanism) -> None:
    config = sasl_config(sasl_kafka, tmp_path, PASSWORD, mechanism)
    posts = simulate_posts(SimulationConfig(seed=31, posts=400))
    produce_posts(config, posts)
    want = expected_flags(posts, [LlmBoilerplateDetector()])
    assert want, "the simulated stream should trip the boilerplate detector"

    with Store.open(config.store.url) as store:
        worker = PostWorker(config, store, [LlmBoilerplateDetector()], worker_id="sasl-worker")
        stats = worker.run(idle_exit_s=4)
        assert stats.valid == 400
        assert store.count("policy_actions") == len(want)

    flags = read_all(config, config.topics.flags, len(want))
    actions = read_all(config, config.policy.actions_topic, len(want))
    assert {f.value for f in flags} and len(flags) == len(want)
    assert {r.key.decode() for r in actions} == {f.split(":", 1)[1] for f in want}
    assert_no_secret(all_logs, PASSWORD)


@pytest.mark.timeout(120)  # a hang guard, not a timing: the client must give up, not retry for ever
def test_wrong_password_is_refused_with_the_reason_and_in_bounded_time(sasl_kafka, tmp_path: Path,
                                                                        all_logs) -> None:
    config = sasl_config(sasl_kafka, tmp_path, WRONG_PASSWORD)
    with Store.open(config.store.url) as store:
        worker = PostWorker(config, store, [LlmBoilerplateDetector()], worker_id="refused-worker")
        with pytest.raises(KafkaError) as refused:
            worker.run(idle_exit_s=2)
    assert "Unable to bootstrap" in str(refused.value)
    # The exception itself says why, so `chorus worker` can print it without kafka-python's logs.
    assert isinstance(refused.value, KafkaUnreachable)
    assert "Invalid username or password" in str(refused.value)
    assert "sasl_username" in str(refused.value) and WRONG_PASSWORD not in str(refused.value)
    reasons = [r.getMessage() for r in all_logs.records if r.levelno >= logging.ERROR]
    assert any("Authentication failed: Invalid username or password" in m for m in reasons), reasons[:5]
    assert_no_secret(all_logs, WRONG_PASSWORD, PASSWORD)


def test_kafka_python_debug_logs_do_not_show_the_password(sasl_kafka, tmp_path: Path, caplog) -> None:
    """kafka-python 3.0 logs its config and the SASL frames at DEBUG, password included: with a
    password configured its loggers stay at INFO even when everything else asks for DEBUG."""
    config = sasl_config(sasl_kafka, tmp_path, PASSWORD)  # creates topics without credentials
    logging.getLogger("kafka").setLevel(logging.NOTSET)
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    read_all(config, config.topics.flags, expect=1, timeout_s=2)
    assert logging.getLogger("kafka").getEffectiveLevel() >= logging.INFO
    assert not [r for r in caplog.records if r.name.startswith("kafka") and r.levelno < logging.INFO]
    assert any("password" in r.getMessage() for r in caplog.records if r.name == "chorus"), "it says why"
    lines = [r.getMessage() for r in caplog.records]
    assert not [line for line in lines if PASSWORD in line]


# ---------------------------------------------------------------------------------------------
# TLS: SASL_SSL with the cluster's CA from the configuration


@pytest.fixture(scope="module")
def tls_kafka(kafka_jars: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApacheKafkaBroker, Path]]:
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    broker = ApacheKafkaBroker(tmp_path_factory.mktemp("tls-kafka"), libs=kafka_jars, sasl_users={USER: PASSWORD},
                               tls_keystore=pki.server_keystore)
    with broker:
        yield broker, pki.ca


def test_sasl_ssl_with_the_clusters_ca_carries_the_stream(tls_kafka, tmp_path: Path, all_logs) -> None:
    broker, ca = tls_kafka
    config = sasl_config(broker, tmp_path, PASSWORD, "SCRAM-SHA-512", security_protocol="SASL_SSL",
                         ssl_cafile=str(ca))
    posts = simulate_posts(SimulationConfig(seed=37, posts=200))
    produce_posts(config, posts)
    want = expected_flags(posts, [LlmBoilerplateDetector()])
    with Store.open(config.store.url) as store:
        stats = PostWorker(config, store, [LlmBoilerplateDetector()], worker_id="tls-worker").run(idle_exit_s=4)
        assert stats.valid == 200 and store.count("flags") == len(want)
    assert len(read_all(config, config.topics.flags, len(want))) == len(want)
    assert_no_secret(all_logs, PASSWORD)


@pytest.mark.timeout(120)  # a hang guard, not a timing
def test_an_untrusted_broker_certificate_is_refused_with_the_reason(tls_kafka, tmp_path: Path, all_logs) -> None:
    """Without the cluster's CA the client must not talk to the broker, and must say it is a TLS problem."""
    broker, _ca = tls_kafka
    config = sasl_config(broker, tmp_path, PASSWORD, "SCRAM-SHA-512", security_protocol="SASL_SSL")
    with Store.open(config.store.url) as store:
        worker = PostWorker(config, store, [LlmBoilerplateDetector()], worker_id="untrusting-worker")
        with pytest.raises(KafkaUnreachable) as refused:
            worker.run(idle_exit_s=2)
    assert "certificate" in str(refused.value).lower(), str(refused.value)
    assert_no_secret(all_logs, PASSWORD)
