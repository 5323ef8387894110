"""Bounded soak: one worker under a steady stream, then a burst above what it can take.

    python bench/bench_soak.py [--rate 800] [--burst-rate 5000] [--warm 60] [--burst 15] [--recover 90]
                               [--bootstrap HOST:PORT] [--quick]

Everything runs on loopback: the embedded Tansu broker (or ``--bootstrap``), a producer in this
process pacing posts at ``--rate`` posts/s, and one ``chorus worker`` process (the real command,
with the policy stage on: a boilerplate policy that labels posts and produces actions). Phases:

1. warm-up, ``--warm`` s at ``--rate`` (a rate this 2-core machine sustains with the producer on the
   same cores: lag must stay flat);
2. burst, ``--burst`` s at ``--burst-rate`` (above what one worker processes: lag builds);
3. recovery, ``--recover`` s back at ``--rate`` (lag must return to its warm-up level);
4. drain: production stops; the run ends when every offset is committed (bounded by ``--drain``).

Every second it samples the consumer group's lag (produced minus committed offsets: Tansu's
ListOffsets is unreliable, so the producer's acknowledged offsets are the end) and the worker's
resident memory (``/proc/PID/status``). At the end it checks that every produced post is in the
store exactly once, writes ``bench/results/soak.md`` and plots ``bench/results/soak.png``.
Needs matplotlib for the plot (``pip install matplotlib``).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS, result_name, save, table
from stream.config import ChorusConfig
from stream.kafka.broker import EmbeddedBroker
from stream.kafka.clients import make_admin, make_producer
from stream.kafka.messages import encode_post
from stream.kafka.producer import post_key
from stream.kafka.topics import ensure_topics
from stream.pipeline.processes import spawn_worker_process, write_private_config
from stream.simulation import SimulationConfig, simulate_posts
from stream.store.database import Store

POLICY = """
[policy]
id = "soak"
version = "1"

[[rules]]
id = "boilerplate-label"
action = "label"
label = "likely machine-written"
when = [ { detector = "llm_boilerplate", threshold = "default" } ]
"""


@dataclass
class Sample:
    t: float
    phase: str
    produced: int
    committed: int
    lag: int
    rss_mb: float


@dataclass
class Producer:
    """Paces posts at a target rate and records each partition's acknowledged end offset."""

    config: ChorusConfig
    pool: list[dict]
    ends: dict[int, int] = field(default_factory=dict)
    sent: int = 0
    errors: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._producer = make_producer(self.config, client_id="soak-producer", linger_ms=20)

    def _acked(self, metadata: object) -> None:
        with self._lock:
            p, end = metadata.partition, metadata.offset + 1  # type: ignore[attr-defined]
            if end > self.ends.get(p, 0):
                self.ends[p] = end

    def _failed(self, _exc: BaseException) -> None:
        self.errors += 1

    def send_one(self) -> None:
        base = self.pool[self.sent % len(self.pool)]
        post = dict(base, post_id=f"{base['post_id']}-r{self.sent // len(self.pool)}")
        future = self._producer.send(self.config.topics.posts, key=post_key(post), value=encode_post(post))
        future.add_callback(self._acked)
        future.add_errback(self._failed)
        self.sent += 1

    def run_for(self, seconds: float, rate: float, stop: Callable[[], bool]) -> float:
        """Send at ``rate`` posts/s for ``seconds``; return the rate achieved."""
        start = time.monotonic()
        first = self.sent
        while (now := time.monotonic()) - start < seconds and not stop():
            due = int((now - start) * rate) - (self.sent - first)
            for _ in range(max(0, min(due, 2_000))):
                self.send_one()
            time.sleep(0.01)
        self._producer.flush()
        return (self.sent - first) / max(1e-9, time.monotonic() - start)

    def acked_total(self) -> int:
        with self._lock:
            return sum(self.ends.values())

    def close(self) -> None:
        self._producer.flush()
        self._producer.close()


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def soak(args: argparse.Namespace, bootstrap: str, workdir: Path) -> tuple[list[Sample], dict]:
    run = uuid.uuid4().hex[:8]
    policy_file = workdir / "policy.toml"
    policy_file.write_text(POLICY)
    config = ChorusConfig().with_overrides(
        kafka={"bootstrap_servers": bootstrap},
        topics={"posts": f"soak-{run}-posts", "flags": f"soak-{run}-flags", "dead_letter": f"soak-{run}-dlq",
                "partitions": 4},
        worker={"group_id": f"soak-{run}", "batch_max_posts": 500, "session_timeout_ms": 6000,
                "heartbeat_interval_ms": 1000, "log_interval_s": 10.0, "detectors": ("llm_boilerplate",)},
        store={"url": f"sqlite:///{workdir / 'soak.db'}"},
        policy={"active_file": str(policy_file), "actions_topic": f"soak-{run}-actions"},
    )
    ensure_topics(config, {config.topics.posts: 4, config.topics.flags: 4, config.topics.dead_letter: 1,
                           config.policy.actions_topic: 4})
    Store.open(config.store.url).close()  # migrate before the worker starts
    pool = simulate_posts(SimulationConfig(seed=3, posts=20_000))
    producer = Producer(config, pool)
    worker_log = workdir / "worker.log"
    worker = spawn_worker_process(write_private_config(config, workdir), "soak-worker", log_file=worker_log)

    samples: list[Sample] = []
    phase = ["warm"]
    started = time.monotonic()
    done = threading.Event()

    def sample_loop() -> None:
        admin = make_admin(config, client_id="soak-sampler")
        try:
            while not done.is_set():
                try:
                    offsets = admin.list_group_offsets({config.worker.group_id: None}).get(config.worker.group_id, {})
                except Exception:  # a missed sample is not a failed run
                    offsets = {}
                committed = sum(m.offset for tp, m in offsets.items()
                                if tp.topic == config.topics.posts and m.offset >= 0)
                produced = producer.acked_total()
                samples.append(Sample(time.monotonic() - started, phase[0], produced, committed,
                                      max(0, produced - committed), rss_mb(worker.pid)))
                done.wait(1.0)
        finally:
            admin.close()

    sampler = threading.Thread(target=sample_loop, daemon=True)
    sampler.start()
    dead = worker.poll
    rates = {}
    try:
        rates["warm"] = producer.run_for(args.warm, args.rate, lambda: dead() is not None)
        phase[0] = "burst"
        rates["burst"] = producer.run_for(args.burst, args.burst_rate, lambda: dead() is not None)
        phase[0] = "recover"
        rates["recover"] = producer.run_for(args.recover, args.rate, lambda: dead() is not None)
        phase[0] = "drain"
        deadline = time.monotonic() + args.drain
        while time.monotonic() < deadline and worker.poll() is None:
            if samples and samples[-1].phase == "drain" and samples[-1].lag == 0:
                break
            time.sleep(0.5)
    finally:
        done.set()
        sampler.join(timeout=10)
        producer.close()
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
        worker_code = worker.wait(timeout=60)

    with Store.open(config.store.url, migrate=False) as store:
        stored_posts = store.count("posts")
        actions = store.count("policy_actions")
    result = {
        "run": run, "rates": rates, "produced": producer.sent, "acked": producer.acked_total(),
        "send_errors": producer.errors, "stored": stored_posts, "actions": actions, "worker_exit": worker_code,
        "worker_log": worker_log.read_text(errors="replace")[-3000:],
    }
    return samples, result


def summarise(args: argparse.Namespace, samples: list[Sample], result: dict) -> tuple[str, list[str]]:
    def phase_of(name: str) -> list[Sample]:
        return [s for s in samples if s.phase == name]

    warm = [s for s in phase_of("warm") if s.t > min(10.0, args.warm / 3)]
    warm_lag = sorted(s.lag for s in warm) or [0]
    steady = warm_lag[int(0.95 * (len(warm_lag) - 1))]
    burst_end = max((s.t for s in phase_of("burst")), default=0.0)
    after = [s for s in samples if s.t > burst_end]
    threshold = max(steady, 500)  # one batch: a lag the worker clears in one step
    recovered_at = next((s.t for s in after if s.lag <= threshold), None)
    peak = max((s.lag for s in samples), default=0)
    rss_warm = sorted(s.rss_mb for s in warm) or [float("nan")]
    tail = samples[int(0.8 * len(samples)):]
    rss_tail = sorted(s.rss_mb for s in tail) or [float("nan")]
    med = lambda xs: xs[len(xs) // 2]  # noqa: E731
    checks = []
    if result["stored"] != result["acked"]:
        checks.append(f"LOST OR EXTRA POSTS: {result['acked']:,} acknowledged, {result['stored']:,} stored")
    if samples and samples[-1].lag != 0:
        checks.append(f"lag did not return to zero (last sample {samples[-1].lag:,})")
    if recovered_at is None:
        checks.append("lag never fell back to its warm-up level after the burst")
    growth = (med(rss_tail) - med(rss_warm)) / med(rss_warm) * 100
    rows = [
        ["warm-up", f"{args.warm:.0f}", f"{args.rate:,.0f}", f"{result['rates']['warm']:,.0f}",
         f"p95 {steady:,}", f"{med(rss_warm):.0f}"],
        ["burst", f"{args.burst:.0f}", f"{args.burst_rate:,.0f}", f"{result['rates']['burst']:,.0f}",
         f"peak {peak:,}", f"{max((s.rss_mb for s in samples), default=float('nan')):.0f} (max)"],
        ["recovery", f"{args.recover:.0f}", f"{args.rate:,.0f}", f"{result['rates']['recover']:,.0f}",
         f"back to <= {threshold:,} {recovered_at - burst_end:.0f} s after the burst" if recovered_at else "not back",
         f"{med(rss_tail):.0f} (last 20%)"],
    ]
    notes = [
        f"One `chorus worker` process (llm_boilerplate detector, policy stage on with one labelling rule, "
        f"batches of 500, SQLite store), {'Tansu (embedded)' if not args.bootstrap else args.bootstrap} on "
        f"loopback, 4 partitions; the producer runs in the same 2 cores. Lag = acknowledged minus committed "
        f"offsets, sampled every second.",
        f"Nothing lost: {result['acked']:,} posts acknowledged by the broker, {result['stored']:,} in the store "
        f"(post ids unique), {result['actions']:,} actions; lag at the end {samples[-1].lag if samples else 'n/a'}. "
        f"Worker memory from warm-up to the last 20% of the run: {growth:+.1f}%.",
        f"Plot: `bench/results/{result_name('soak')}.png`.",
    ]
    if checks:
        notes.append("FAILED: " + "; ".join(checks))
    text = table("Soak: steady stream, then a burst (one worker)",
                 ["phase", "seconds", "target posts/s", "sent posts/s", "lag (posts)", "worker RSS MB"], rows, notes)
    return text, checks


def plot(samples: list[Sample], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_lag, ax_rss) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    t = [s.t for s in samples]
    colours = {"warm": "#e8f1fa", "burst": "#fbe3e3", "recover": "#e9f7e9", "drain": "#f4f4f4"}
    for ax in (ax_lag, ax_rss):
        start = 0
        for i in range(1, len(samples) + 1):
            if i == len(samples) or samples[i].phase != samples[start].phase:
                ax.axvspan(samples[start].t, samples[i - 1].t, color=colours[samples[start].phase], lw=0)
                if ax is ax_lag:
                    ax.text(samples[start].t, 0.98, samples[start].phase, transform=ax.get_xaxis_transform(),
                            va="top", fontsize=8, color="#555")
                start = i
    ax_lag.plot(t, [s.lag for s in samples], color="#c0392b", lw=1.5, label="consumer lag (posts)")
    rate = [0.0] + [max(0.0, (b.committed - a.committed) / max(1e-9, b.t - a.t)) for a, b in pairwise(samples)]
    ax_rate = ax_lag.twinx()
    ax_rate.plot(t, rate, color="#2c7fb8", lw=0.8, alpha=0.7, label="committed posts/s")
    ax_lag.set_ylabel("lag (posts)")
    ax_rate.set_ylabel("committed posts/s", color="#2c7fb8")
    ax_lag.legend(loc="upper right", fontsize=8)
    ax_rss.plot(t, [s.rss_mb for s in samples], color="#6a51a3", lw=1.5)
    ax_rss.set_ylabel("worker RSS (MB)")
    ax_rss.set_xlabel("seconds")
    ax_rss.set_ylim(bottom=0)
    fig.suptitle("Chorus soak: lag and worker memory over time")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> str:
    """Run the soak; returns its Markdown table. A failed check raises after the table is written."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=800.0, help="steady posts/s (default 800)")
    parser.add_argument("--burst-rate", type=float, default=5_000.0, help="burst posts/s (default 5000)")
    parser.add_argument("--warm", type=float, default=60.0, help="seconds at the steady rate first (default 60)")
    parser.add_argument("--burst", type=float, default=15.0, help="seconds of burst (default 15)")
    parser.add_argument("--recover", type=float, default=90.0, help="seconds at the steady rate after (default 90)")
    parser.add_argument("--drain", type=float, default=120.0, help="at most this long to drain at the end")
    parser.add_argument("--bootstrap", help="an existing broker (default: start embedded Tansu)")
    parser.add_argument("--quick", action="store_true", help="20 s / 5 s / 30 s (a smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.warm, args.burst, args.recover = 20.0, 5.0, 30.0
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)

    with tempfile.TemporaryDirectory() as scratch:
        broker = None if args.bootstrap else EmbeddedBroker(log_dir=Path(scratch))
        bootstrap = args.bootstrap or broker.start()
        try:
            samples, result = soak(args, bootstrap, Path(scratch))
        finally:
            if broker:
                broker.stop()
    text, checks = summarise(args, samples, result)
    print(text)
    if not args.quick:
        save("soak", text)
        RESULTS.mkdir(exist_ok=True)
        plot(samples, RESULTS / f"{result_name('soak')}.png")
    else:
        plot(samples, Path(tempfile.gettempdir()) / "chorus-soak-quick.png")
    if checks:
        print(result["worker_log"], file=sys.stderr)
        raise SystemExit(f"soak failed: {'; '.join(checks)}")
    return text


if __name__ == "__main__":
    main()
