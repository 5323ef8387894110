"""Real Kafka brokers for the test suite, and helpers shared by every test that talks to one.

Two brokers, because Chorus must work on both:

* Apache Kafka 4.x (KRaft, broker and controller in one JVM), the reference implementation. Its jars
  come from Maven Central through ``tests/kafka/pom.xml`` and are cached under
  ``.cache/kafka-<version>/libs`` (``$CHORUS_KAFKA_CACHE/kafka-<version>/libs`` when that is set), so only
  the first run on a machine pays for the download (~20 s, 43 MB).
* Tansu, the broker the demo embeds (:class:`stream.kafka.broker.EmbeddedBroker`).

:class:`ApacheKafkaBroker` keeps its ports and log directory across ``stop()``/``kill()`` and
``start()``, so a test can take the broker away and bring the same one back.

Consumer-group timeouts: Tansu completes a group join only after about half of ``session_timeout_ms``,
so tests use :data:`CONSUMER_GROUP_TIMEOUTS` (6 s session, joins in ~3 s on both brokers).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord

from stream.kafka.broker import BrokerStartError, create_topics, free_port, wait_for_kafka

REPO_ROOT = Path(__file__).resolve().parents[1]
KAFKA_POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"

#: Consumer settings for tests: Tansu joins a group after ~session_timeout_ms / 2, and Apache Kafka's
#: group.min.session.timeout.ms is 6000, so 6 s is the shortest session both accept.
CONSUMER_GROUP_TIMEOUTS: dict[str, int] = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}

#: First run downloads ~43 MB from Maven Central; a slow mirror day should not fail the suite.
JAR_RESOLVE_TIMEOUT_S = 600.0
#: The JVM broker is ready in ~3 s on 2 idle cores; after a SIGKILL the controller first waits for
#: the old broker session to expire (broker.session.timeout.ms below).
APACHE_KAFKA_START_TIMEOUT_S = 90.0
APACHE_KAFKA_STOP_TIMEOUT_S = 30.0
#: What the SASL listener accepts (``sasl_users``); every user may use each.
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class RunningBroker(Protocol):
    """What a test needs from a broker fixture, whichever broker it is."""

    @property
    def bootstrap(self) -> str: ...

    kind: str


def kafka_version(pom: Path = KAFKA_POM) -> str:
    """The Apache Kafka version pinned in ``tests/kafka/pom.xml`` (its one source of truth)."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(pom).getroot().find("m:properties/m:kafka.version", ns)
    if node is None or not (node.text or "").strip():
        raise ValueError(f"{pom} has no <properties><kafka.version>")
    return (node.text or "").strip()


def kafka_cache_dir() -> Path:
    """Folder holding ``libs/`` for the pinned version; ``$CHORUS_KAFKA_CACHE`` replaces ``.cache``."""
    root = Path(os.environ.get("CHORUS_KAFKA_CACHE") or REPO_ROOT / ".cache")
    return root / f"kafka-{kafka_version()}"


def resolve_kafka_jars(cache_dir: Path | None = None, timeout_s: float = JAR_RESOLVE_TIMEOUT_S) -> Path:
    """Return a folder with the Apache Kafka broker's runtime jars, downloading them with Maven if needed.

    The folder is reused while ``tests/kafka/pom.xml`` is unchanged (its hash is stored beside the
    jars). Jars are copied to a scratch folder and renamed into place, under a file lock, so parallel
    test processes and an interrupted download never leave a half-filled ``libs/``.
    """
    cache_dir = cache_dir or kafka_cache_dir()
    libs = cache_dir / "libs"
    stamp = libs / ".pom-sha256"
    pom_hash = hashlib.sha256(KAFKA_POM.read_bytes()).hexdigest()
    if stamp.is_file() and stamp.read_text().strip() == pom_hash:
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise FileNotFoundError("Maven (`mvn`) is needed to fetch the Kafka jars: apt-get install maven")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.is_file() and stamp.read_text().strip() == pom_hash:
            return libs  # another process resolved them while we waited for the lock
        scratch = cache_dir / f"libs.partial-{os.getpid()}"
        shutil.rmtree(scratch, ignore_errors=True)
        command = [
            mvn, "-q", "-B", "-f", str(KAFKA_POM), "dependency:copy-dependencies",
            "-DincludeScope=runtime", f"-DoutputDirectory={scratch}",
        ]  # fmt: skip
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            shutil.rmtree(scratch, ignore_errors=True)
            raise TimeoutError(f"Maven did not fetch the Kafka jars in {timeout_s:.0f} s: {command}") from exc
        if done.returncode != 0 or not any(scratch.glob("kafka_2.13-*.jar")):
            shutil.rmtree(scratch, ignore_errors=True)
            raise RuntimeError(
                f"Maven failed to fetch the Kafka jars (exit {done.returncode}): {' '.join(command)}\n"
                f"{done.stdout[-4000:]}{done.stderr[-4000:]}"
            )
        (scratch / ".pom-sha256").write_text(pom_hash + "\n")
        shutil.rmtree(libs, ignore_errors=True)
        scratch.rename(libs)
    return libs


def _kafka_uuid() -> str:
    """A cluster id in Kafka's form (URL-safe base64 of 16 random bytes, no padding).

    Like Kafka's ``Uuid.randomUuid`` it never starts with '-', which the storage tool would read as a flag.
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


class ApacheKafkaBroker:
    """A single-node Apache Kafka broker (KRaft combined mode) in a child JVM, for tests.

    Ports (client listener, controller) and the log directory are chosen on first ``start()`` and kept,
    so ``stop()``/``kill()`` followed by ``start()`` brings back the same broker with its topics,
    records and committed offsets: what "the broker went away" tests need.
    """

    kind = "apache-kafka"

    def __init__(
        self,
        workdir: Path,
        libs: Path | None = None,
        heap: str = "512m",
        start_timeout_s: float = APACHE_KAFKA_START_TIMEOUT_S,
        sasl_users: dict[str, str] | None = None,
        tls_keystore: Path | None = None,
    ) -> None:
        """``sasl_users`` (user -> password) adds a SASL_PLAINTEXT listener (:attr:`sasl_bootstrap`)
        where each user can authenticate with SASL/PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, beside the
        PLAINTEXT one, which tests keep using to set up topics and read results; inter-broker and
        controller traffic stay PLAINTEXT. ``tls_keystore`` (a PEM file: PKCS#8 key, then the
        certificate chain; see ``tests/tls.py``) makes that listener SASL_SSL instead."""
        self.workdir = workdir
        self.libs = libs
        self.heap = heap
        self.start_timeout_s = start_timeout_s
        self.sasl_users = dict(sasl_users or {})
        self.tls_keystore = tls_keystore
        self.port: int | None = None
        self.controller_port: int | None = None
        self.sasl_port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``host:port`` for clients; stable across restarts."""
        if self.port is None:
            raise RuntimeError("the broker has no port yet; call start() first")
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap(self) -> str:
        """``host:port`` of the SASL listener (only with ``sasl_users``)."""
        if self.sasl_port is None:
            raise RuntimeError("no SASL listener: pass sasl_users and call start() first")
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def log_path(self) -> Path:
        """The broker's log4j2 log (appended to across restarts)."""
        return self.workdir / "server.log"

    @property
    def jvm_log_path(self) -> Path:
        """The JVM's own stdout/stderr: where a crash before logging starts shows up."""
        return self.workdir / "jvm.log"

    @property
    def data_dir(self) -> Path:
        """KRaft metadata and topic logs; kept across restarts."""
        return self.workdir / "data"

    @property
    def is_running(self) -> bool:
        """Whether the JVM is alive (``start()`` is what waits for it to be ready)."""
        return self._process is not None and self._process.poll() is None

    def _java(self) -> str:
        java_home = os.environ.get("JAVA_HOME")
        java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
        if not java or not Path(java).is_file():
            raise FileNotFoundError("Java 17+ is needed for the Apache Kafka broker: apt-get install openjdk-17-jdk")
        return java

    def _jvm(self, libs: Path, heap: str) -> list[str]:
        """The java command line up to the main class, logging to :attr:`log_path`."""
        return [
            self._java(),
            f"-Xmx{heap}",
            "-Xms64m",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
        ]

    def _write_config(self) -> Path:
        """Write server.properties and log4j2.properties; return the former."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            # A static one-voter quorum: no dynamic-quorum bootstrapping to redo on restart.
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            **self._sasl_settings(),
            "log.dirs": str(self.data_dir),
            # One node: every internal topic has one replica.
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # Fewer internal partitions: the first group join creates __consumer_offsets, faster on 2 cores.
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.num.partitions": "4",
            # Tests join groups all the time; the default 3 s delay would add 3 s to each.
            "group.initial.rebalance.delay.ms": "0",
            # Topics are created on purpose (stream.kafka.broker.create_topics) with their partition counts.
            "auto.create.topics.enable": "false",
            "num.partitions": "1",
            # After a SIGKILL the restarted broker is refused (DUPLICATE_BROKER_REGISTRATION) until the
            # old session expires; 4 s instead of 9 s keeps restart tests short.
            "broker.session.timeout.ms": "4000",
            "broker.heartbeat.interval.ms": "1000",
        }
        server_properties = self.workdir / "server.properties"
        server_properties.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        (self.workdir / "log4j2.properties").write_text(
            "status = warn\n"
            "appender.file.type = File\n"
            "appender.file.name = FILE\n"
            f"appender.file.fileName = {self.log_path}\n"
            "appender.file.append = true\n"
            "appender.file.layout.type = PatternLayout\n"
            "appender.file.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = INFO\n"
            "rootLogger.appenderRef.file.ref = FILE\n"
        )
        return server_properties

    def _sasl_settings(self) -> dict[str, str]:
        """The extra listener for SASL, each mechanism's login module in the listener's own JAAS
        setting (``listener.name.<listener>.<mechanism>.sasl.jaas.config``: no JAAS file, no JVM
        flag). PLAIN users live in that setting; SCRAM credentials are written into the metadata
        log when the storage is formatted (:meth:`_format_storage`), as KRaft requires."""
        if not self.sasl_users:
            return {}
        for user, password in self.sasl_users.items():
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", user) or any(c in password for c in '"\\\n;,[]='):
                raise ValueError(f"test SASL user {user!r}: keep names and passwords free of quotes, ';', ',', '[]='")
        users = " ".join(f'user_{u}="{p}"' for u, p in self.sasl_users.items())
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        listener = "SASL_SSL" if self.tls_keystore else "SASL_PLAINTEXT"
        prefix = f"listener.name.{listener.lower()}"
        settings = {
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},{listener}://127.0.0.1:{self.sasl_port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port},{listener}://127.0.0.1:{self.sasl_port}",
            "listener.security.protocol.map": f"PLAINTEXT:PLAINTEXT,{listener}:{listener},CONTROLLER:PLAINTEXT",
            "sasl.enabled.mechanisms": ",".join(SASL_MECHANISMS),
            f"{prefix}.plain.sasl.jaas.config":
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};",
            f"{prefix}.scram-sha-256.sasl.jaas.config": scram,
            f"{prefix}.scram-sha-512.sasl.jaas.config": scram,
        }
        if self.tls_keystore:
            settings[f"{prefix}.ssl.keystore.type"] = "PEM"
            settings[f"{prefix}.ssl.keystore.location"] = str(self.tls_keystore)
        return settings

    def _format_storage(self, libs: Path, server_properties: Path) -> None:
        """Format the KRaft log directory once; a restart reuses it as it is."""
        if (self.data_dir / "meta.properties").is_file():
            return
        command = [
            *self._jvm(libs, "256m"), "kafka.tools.StorageTool", "format",
            "--cluster-id", _kafka_uuid(), "--config", str(server_properties),
        ]  # fmt: skip
        for user, password in self.sasl_users.items():
            for mechanism in SASL_MECHANISMS[1:]:
                command += ["--add-scram", f"{mechanism}=[name={user},password={password}]"]
        with open(self.jvm_log_path, "ab") as out:
            done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=120, check=False)
        if done.returncode != 0:
            raise BrokerStartError(
                f"formatting {self.data_dir} failed (exit {done.returncode}); see {self.jvm_log_path}"
            )

    def start(self) -> str:
        """Start the broker (no-op if running) and return its bootstrap string once it serves clients."""
        if self.is_running:
            return self.bootstrap
        libs = self.libs = self.libs or resolve_kafka_jars()
        if self.port is None or self.controller_port is None:
            self.port, self.controller_port = free_port(), free_port()
            while self.controller_port == self.port:
                self.controller_port = free_port()
        if self.sasl_users and self.sasl_port is None:
            self.sasl_port = free_port()
            while self.sasl_port in (self.port, self.controller_port):
                self.sasl_port = free_port()
        server_properties = self._write_config()
        self._format_storage(libs, server_properties)
        with open(self.jvm_log_path, "ab") as out:
            self._process = subprocess.Popen(
                [*self._jvm(libs, self.heap), "kafka.Kafka", str(server_properties)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for_kafka(self.bootstrap, self.start_timeout_s, self._process)
        except (TimeoutError, BrokerStartError) as exc:
            self.kill()
            raise BrokerStartError(
                f"Apache Kafka did not start: {exc}; see {self.log_path} and {self.jvm_log_path}"
            ) from exc
        return self.bootstrap

    def stop(self, timeout_s: float = APACHE_KAFKA_STOP_TIMEOUT_S) -> None:
        """Shut down cleanly (SIGTERM); SIGKILL if the JVM is still there after ``timeout_s``."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """Crash the broker (SIGKILL): no clean shutdown, as when a machine dies."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.kill()
        process.wait()

    def __enter__(self) -> ApacheKafkaBroker:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def unique_topic_name(prefix: str = "chorus-test") -> str:
    """A topic name no other test uses, readable in broker logs (legal characters only, <= 249)."""
    clean = re.sub(r"[^a-zA-Z0-9._-]+", "-", prefix).strip("-.")[:200] or "chorus-test"
    return f"{clean}-{uuid.uuid4().hex[:10]}"


def new_topic(broker: RunningBroker, partitions: int = 1, prefix: str = "chorus-test") -> str:
    """Create a uniquely named topic with ``partitions`` partitions on ``broker``; return its name."""
    name = unique_topic_name(prefix)
    create_topics(broker.bootstrap, {name: partitions})
    return name


def consume(consumer: KafkaConsumer, count: int, timeout_s: float = 30.0) -> list[ConsumerRecord]:
    """Poll until ``count`` records arrived (or ``timeout_s`` passed); return what arrived.

    Bounded so a test that expects too much fails with a count instead of hanging; the first poll
    also covers the group join (~3 s with :data:`CONSUMER_GROUP_TIMEOUTS`).
    """
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout_s
    while len(records) < count and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    return records


def consumer_config(broker: RunningBroker, **overrides: Any) -> dict[str, Any]:
    """KafkaConsumer keyword arguments for tests: earliest offsets, manual commits, short group timeouts."""
    return {
        "bootstrap_servers": broker.bootstrap,
        "auto_offset_reset": "earliest",
        "enable_auto_commit": False,
        **CONSUMER_GROUP_TIMEOUTS,
        **overrides,
    }
