"""Worker processes: one in this process, or several children sharing a private configuration file.

The children are started as ``python -m stream.cli.main worker`` with the configuration (secrets
included) in a file only this user can read, never on the command line where ``ps`` shows it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from stream.config import ChorusConfig

log = logging.getLogger("chorus")


def run_worker(config: ChorusConfig, *, worker_id: str | None = None, idle_exit_s: float | None = None) -> int:
    """One worker in this process, stopped cleanly by SIGTERM or Ctrl-C.

    The handlers go in before the store and the detectors are set up (seconds, with models): a stop
    asked for while the worker is still starting ends it cleanly before it joins the group, instead
    of the default handler killing it.
    """
    from stream.pipeline.detectors import build_detectors
    from stream.pipeline.worker import PostWorker
    from stream.store.database import Store

    worker: PostWorker | None = None
    stopped: list[str] = []

    def stop(signum: int, _frame: object) -> None:
        stopped.append(signal.Signals(signum).name)
        log.info("%s: %s received, finishing the batch in hand", worker.worker_id if worker else worker_id or "worker",
                 stopped[-1])
        if worker is not None:
            worker.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    store = Store.open(config.store.url)
    try:
        worker = PostWorker(config, store, build_detectors(config.worker.detectors, config), worker_id=worker_id)
        if stopped:
            log.info("%s: stopped while starting; not joining the group", worker.worker_id)
            return 0
        worker.run(idle_exit_s=idle_exit_s)
    finally:
        store.close()
    return 0


def spawn_worker_process(config_path: Path, worker_id: str, *, idle_exit_s: float | None = None,
                         log_file: Path | None = None) -> subprocess.Popen:
    """A worker in a child process, reading the configuration from a private file."""
    cmd = [sys.executable, "-m", "stream.cli.main", "worker", "--config", str(config_path), "--worker-id", worker_id]
    if idle_exit_s is not None:
        cmd += ["--idle-exit", str(idle_exit_s)]
    out = open(log_file, "ab") if log_file else None  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT if out else None)
    finally:
        if out:
            out.close()


def write_private_config(config: ChorusConfig, directory: str | Path | None = None) -> Path:
    """The configuration (secrets included) in a file only this user can read."""
    fd, path = tempfile.mkstemp(prefix="chorus-", suffix=".toml", dir=directory)
    with os.fdopen(fd, "w") as handle:
        handle.write(config.to_toml())
    os.chmod(path, 0o600)
    return Path(path)


def run_worker_processes(config: ChorusConfig, processes: int, *, idle_exit_s: float | None = None) -> int:
    """Several workers on this host; signals are passed on so each leaves the group cleanly."""
    config_path = write_private_config(config)
    children = [
        spawn_worker_process(config_path, f"{os.uname().nodename}-{os.getpid()}-{i}", idle_exit_s=idle_exit_s)
        for i in range(processes)
    ]

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        return max(child.wait() for child in children)
    finally:
        config_path.unlink(missing_ok=True)
