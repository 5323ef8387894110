"""The command line as a user runs it: help, topics, produce, simulate, worker --processes, migrate."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from pipeline_helpers import pipeline_config

from stream.cli.main import main
from stream.config import ChorusConfig
from stream.kafka.topics import topic_plan
from stream.store.database import Store


def chorus(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stream.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_help_lists_every_command() -> None:
    import argparse

    from stream.cli.main import build_parser

    # the registered subcommands, not words that happen to appear in the help's prose
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    expected = {"demo", "worker", "topics", "produce", "simulate", "migrate", "broker", "console",
                "aitext-corpus", "aitext-generate", "train-aitext-modern", "score", "eval"}
    assert expected <= set(subparsers.choices), expected - set(subparsers.choices)
    result = chorus("--help")
    assert result.returncode == 0
    listed = set(re.findall(r"^    ([a-z][a-z0-9-]+)", result.stdout, flags=re.M))  # the subcommand rows
    assert expected <= listed, expected - listed
    assert "chorus demo" in result.stdout, "the help starts a newcomer at the demo"


def test_a_bad_setting_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stream.cli.main", "migrate", "--store", str(tmp_path / "s.db")],
        capture_output=True, text=True, timeout=60,
        env={"CHORUS_WORKER__BATCH_MAX_POSTS": "lots", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "configuration error" in result.stderr and "batch_max_posts" in result.stderr
    assert "Traceback" not in result.stderr


def test_migrate_creates_the_store(tmp_path: Path) -> None:
    assert main(["migrate", "--store", str(tmp_path / "s.db")]) == 0
    with Store.open(str(tmp_path / "s.db"), migrate=False) as store:
        assert store.schema_version() >= 1


@pytest.mark.kafka
def test_topics_creates_explicit_partitions(broker, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    env_config = ChorusConfig().with_overrides(
        topics={"posts": f"{name}.posts", "flags": f"{name}.flags", "dead_letter": f"{name}.dlq"},
        policy={"actions_topic": f"{name}.actions"},
    )
    config_file = tmp_path / f"{name}.toml"
    config_file.write_text(env_config.to_toml())
    assert main(["topics", "--config", str(config_file), "--bootstrap", broker.bootstrap, "--partitions", "3"]) == 0
    # Running it again is harmless: the topics exist.
    assert main(["topics", "--config", str(config_file), "--bootstrap", broker.bootstrap, "--partitions", "3"]) == 0
    out = capsys.readouterr().out
    assert f"{name}.posts: 3 partitions" in out and f"{name}.dlq: 1 partitions" in out
    assert f"{name}.actions: 3 partitions" in out
    assert set(topic_plan(env_config, 3)) == {f"{name}.posts", f"{name}.flags", f"{name}.dlq", f"{name}.actions"}


@pytest.mark.kafka
def test_simulate_produce_and_a_worker_pool_process_a_file(broker, tmp_path: Path) -> None:
    config = pipeline_config(broker, tmp_path, partitions=2)
    config_path = tmp_path / "chorus.toml"
    config_path.write_text(config.to_toml())
    posts_file = tmp_path / "posts.jsonl"
    assert main(["simulate", str(posts_file), "--posts", "300", "--seed", "2"]) == 0
    with posts_file.open("ab") as handle:
        handle.write(b"\n{this line is broken\n")
    assert main(["produce", str(posts_file), "--config", str(config_path)]) == 0

    result = chorus("worker", "--config", str(config_path), "--processes", "2", "--idle-exit", "4", timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    with Store.open(config.store.url) as store:
        assert store.count("posts") == 300
        dead = store.frame("dead_letters")
        assert dead["reason"].to_list() == ["not_json"]
        assert bytes(dead["value"][0]) == b"{this line is broken"
        workers = set(store.frame("worker_metrics")["worker_id"])
    assert len(workers) >= 1 and all("-" in w for w in workers)


@pytest.mark.timeout(120)
def test_console_listens_on_loopback_and_keeps_the_store_password_out_of_sight(tmp_path: Path) -> None:
    """``chorus console``: 127.0.0.1 only, the password neither printed nor on any command line (``ps``)."""
    import socket
    import time

    import psutil

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = "postgresql+psycopg://analyst:s3cret-pw@127.0.0.1:1/chorus"
    env = {**os.environ, "CHORUS_STORE__URL": url}  # as a deployment passes it: not on the command line
    proc = subprocess.Popen([sys.executable, "-m", "stream.cli.main", "console", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)  # fmt: skip
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert f"http://127.0.0.1:{port}" in line and "s3cret-pw" not in line and "analyst:***@" in line
        deadline = time.monotonic() + 90
        while True:
            listening = [c for c in psutil.net_connections("tcp") if c.status == "LISTEN" and c.laddr.port == port]
            if listening or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert listening and {c.laddr.ip for c in listening} == {"127.0.0.1"}
        commands = [" ".join(p.cmdline()) for p in psutil.Process(proc.pid).children(recursive=True)]
        assert any("streamlit" in c for c in commands)
        assert not [c for c in commands if "s3cret-pw" in c]
        assert any("--client.toolbarMode viewer" in c for c in commands)  # no Deploy button
    finally:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.terminate()
        proc.terminate()
        proc.wait(timeout=30)


def test_streamlit_run_by_hand_hides_the_deploy_button_as_chorus_console_does() -> None:
    """The repository's ``.streamlit/config.toml`` (read by ``streamlit run dashboards/app.py`` from the
    repository root) sets what ``chorus console`` passes on its command line."""
    import inspect
    import tomllib

    from stream.cli import pipeline

    repo = Path(__file__).resolve().parents[1]
    config = tomllib.loads((repo / ".streamlit" / "config.toml").read_text())
    assert config["client"]["toolbarMode"] == "viewer"
    assert config["browser"]["gatherUsageStats"] is False
    source = inspect.getsource(pipeline._console)
    assert '"--client.toolbarMode", "viewer"' in source and '"--browser.gatherUsageStats", "false"' in source
