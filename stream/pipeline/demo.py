"""``chorus demo``: the whole pipeline on embedded defaults, in one command.

Embedded Tansu broker -> topics -> simulated stream (+ one malformed message of every kind) ->
worker processes in one consumer group, and the coordinator in its own group -> SQLite store.
The workers are done when their group has committed every offset the producer wrote, which is
exactly their at-least-once promise: everything committed is in the store. The coordinator is done
when it has caught up, written its campaigns and stayed idle for a few seconds.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from stream.config import ChorusConfig
from stream.kafka.broker import EmbeddedBroker
from stream.kafka.producer import produce_posts
from stream.kafka.topics import committed_offsets, ensure_topics
from stream.pipeline.demo_truth import DemoTruth, demo_truth
from stream.pipeline.processes import spawn_worker_process, write_private_config
from stream.simulation import SimulationConfig, malformed_messages, simulate_posts
from stream.store.database import Store

log = logging.getLogger("chorus.demo")

#: What the demo runs unless told otherwise: the AI-text detector (the modern head: MiniLM alone, fast
#: enough for every post) and the boilerplate phrase matcher.
DEMO_DETECTORS: tuple[str, ...] = ("aitext", "llm_boilerplate")
#: Micro-batch size in the demo: small, so the progress bar moves every second or two (offsets are
#: committed per batch) instead of sitting still while a batch of 500 is scored.
DEMO_BATCH_POSTS = 64

#: The policy the demo switches on when the store has none (see :func:`_activate_example_policy`).
EXAMPLE_POLICY = Path(__file__).resolve().parents[2] / "policies" / "example.toml"


@dataclass
class DemoSummary:
    store_url: str
    produced: int
    malformed: int
    complete: bool
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    flags_by_detector: dict[str, int] = field(default_factory=dict)
    truth: DemoTruth | None = None

    def render(self) -> str:
        status = "complete" if self.complete else "INCOMPLETE (timed out; see the worker logs above)"
        lines = [
            "",
            f"Chorus demo {status} in {self.seconds:.0f} s",
            f"  produced       {self.produced} posts + {self.malformed} malformed messages",
            f"  store          {self.store_url}",
        ]
        lines += [f"  {name:<14} {n} rows" for name, n in self.counts.items()]
        if self.flags_by_detector:
            lines.append("  by detector    " + ", ".join(f"{d}: {n}" for d, n in self.flags_by_detector.items()))
        if self.dead_letter_reasons:
            lines.append("  dead letters   " + ", ".join(f"{r}: {n}" for r, n in self.dead_letter_reasons.items()))
        if self.truth is not None:
            lines += ["", self.truth.render()]
        lines += ["", "Open the review console on this store:", f"  chorus console --store {self.store_url}", ""]
        return "\n".join(lines)


def with_paraphrase_network(config: ChorusConfig) -> ChorusConfig:
    """With the AI-text detector on, the demo also runs the paraphrase network: the workers republish
    each post with its MiniLM embedding and the coordinator reads those (``input = "embedded"``)
    with ``co_paraphrase`` added to its types. Without it there are no embeddings, and nothing changes.
    """
    if "aitext" not in config.worker.detectors or config.coordinator.input != "posts":
        return config
    networks = tuple(dict.fromkeys((*config.coordinator.networks, "co_paraphrase")))
    return config.with_overrides(
        worker={"publish_embeddings": True}, coordinator={"input": "embedded", "networks": networks}
    )


def run_demo(
    config: ChorusConfig,
    *,
    posts: int = 5_000,
    workers: int = 2,
    seed: int = 7,
    timeout_s: float = 900.0,
    progress: bool = True,
    detectors: tuple[str, ...] | None = None,
) -> DemoSummary:
    started = time.monotonic()
    # The store is created before anything runs so a wrong URL fails in the first second.
    Store.open(config.store.url).close()
    activated = _activate_example_policy(config)
    if activated:
        log.info("demo: %s (the example policy, so the console's Automated actions page has something to show)",
                 activated)
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory(prefix="chorus-demo-") as scratch:
        demo_config = with_paraphrase_network(config.with_overrides(
            kafka={"bootstrap_servers": broker.bootstrap},
            # Tansu's group joins take about half the session timeout: keep it short.
            worker={"group_id": "chorus-demo", "session_timeout_ms": 6_000, "heartbeat_interval_ms": 1_000,
                    "batch_max_posts": DEMO_BATCH_POSTS, "detectors": detectors or DEMO_DETECTORS},
        ))  # fmt: skip
        ensure_topics(demo_config)
        # one LLM paraphrase campaign: only the paraphrase network and the AI-text detector catch it
        stream = simulate_posts(SimulationConfig(seed=seed, posts=posts, llm_campaigns=1))
        broken = [(None, raw) for _reason, raw in malformed_messages()]
        with tqdm(total=len(stream) + len(broken), desc="producing", unit="msg", disable=not progress) as bar:
            ends = produce_posts(demo_config, stream, extra=broken, on_sent=bar.update)

        config_path = write_private_config(demo_config, scratch)
        log_dir = Path(scratch)
        children = [
            spawn_worker_process(config_path, f"demo-worker-{i}", log_file=log_dir / f"worker-{i}.log")
            for i in range(workers)
        ]
        coordinator: subprocess.Popen | None = None
        try:
            complete = _wait_for_commits(demo_config, ends, timeout_s, progress, children)
            if complete:
                # Started once the workers are done: its idle exit (5 s without records) would otherwise
                # fire while the workers still load their models and nothing is on the embedded topic.
                coordinator = _spawn_coordinator(config_path, log_dir / "coordinator.log")
                complete = _wait_for_exit(coordinator, timeout_s=max(60.0, timeout_s / 3))
        finally:
            _stop([*children, *([coordinator] if coordinator is not None else [])])
        if not complete:
            for log_file in sorted(log_dir.glob("*.log")):
                print(f"--- {log_file.name} (last lines) ---")
                print("\n".join(log_file.read_text(errors="replace").splitlines()[-20:]))

    store = Store.open(config.store.url)
    try:
        tables = ("posts", "detector_results", "flags", "campaigns", "campaign_members", "dead_letters",
                  "policy_actions", "worker_metrics")
        counts = {t: store.count(t) for t in tables}
        flags = store.frame("flags")
        dead = store.frame("dead_letters")
    finally:
        store.close()
    by_detector = (
        dict(flags.group_by("detector").len().sort("detector").iter_rows()) if flags.height else {}
    )
    reasons = dict(dead.group_by("reason").len().sort("reason").iter_rows()) if dead.height else {}
    return DemoSummary(
        store_url=config.store.url,
        produced=len(stream),
        malformed=len(broken),
        complete=complete,
        seconds=time.monotonic() - started,
        counts=counts,
        dead_letter_reasons=reasons,
        flags_by_detector=by_detector,
        truth=demo_truth(config.store.url),
    )


def _activate_example_policy(config: ChorusConfig) -> str | None:
    """Make ``policies/example.toml`` the active policy of an empty slot (audited, actor "chorus demo").

    Left alone: a store whose active slot is already set (a reviewer's choice, or an earlier demo),
    a configuration that pins the policy to a file or turns the policy stage off, and an install
    without the file (it ships with the source tree, not the wheel).
    """
    from stream.policy.registry import read_slots, set_slot

    if not config.policy.enabled or config.policy.active_file or not EXAMPLE_POLICY.is_file():
        return None
    with Store.open(config.store.url) as store:
        if read_slots(store)["active"] is not None:
            return None
        change = set_slot(store, "active", EXAMPLE_POLICY.read_text(encoding="utf-8"), source=str(EXAMPLE_POLICY),
                          actor="chorus demo")
    return change.describe()


def _wait_for_commits(
    config: ChorusConfig,
    ends: dict[int, int],
    timeout_s: float,
    progress: bool,
    children: list[subprocess.Popen],
) -> bool:
    total = sum(ends.values())
    deadline = time.monotonic() + timeout_s
    with tqdm(total=total, desc="processing", unit="msg", disable=not progress) as bar:
        while time.monotonic() < deadline:
            committed = committed_offsets(config, config.worker.group_id, config.topics.posts)
            done = sum(min(committed.get(p, 0), end) for p, end in ends.items())
            bar.update(done - bar.n)
            if all(committed.get(p, 0) >= end for p, end in ends.items()):
                return True
            if all(child.poll() is not None for child in children):
                log.error("every worker exited before the stream was processed")
                return False
            time.sleep(0.5)
    return False


def _spawn_coordinator(config_path: Path, log_file: Path) -> subprocess.Popen:
    """The coordination stage: exits by itself once caught up, campaigns written, idle 5 s."""
    cmd = [sys.executable, "-m", "stream.cli.main", "coordinator", "--config", str(config_path),
           "--coordinator-id", "demo-coordinator", "--idle-exit", "5"]
    with open(log_file, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


def _wait_for_exit(process: subprocess.Popen, timeout_s: float) -> bool:
    try:
        return process.wait(timeout=timeout_s) == 0
    except subprocess.TimeoutExpired:
        log.error("the coordinator did not finish within %.0f s", timeout_s)
        return False


def _stop(children: list[subprocess.Popen], timeout_s: float = 30.0) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
