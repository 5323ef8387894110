"""The pipeline's subcommands: worker, demo, produce, simulate, topics, migrate, broker, console."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from stream.cli.common import add_common_arguments, load_config
from stream.config import ConfigError, is_loopback, local_mode_refusal

log = logging.getLogger("chorus")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run the whole pipeline on an embedded broker with a simulated stream",
        description="Start the embedded Kafka-compatible broker (Tansu), produce a simulated stream of "
        "organic, machine-written and coordinated posts (plus a few malformed messages), run the "
        "workers over it until every post is in the store, and say how to open the console.",
    )
    add_common_arguments(p)
    p.add_argument("--posts", type=int, default=5_000, help="simulated posts (default 5000)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--seed", type=int, default=7, help="simulator seed (default 7)")
    p.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (for logs)")
    p.add_argument("--detectors", help="comma-separated detectors (default: aitext,llm_boilerplate; "
                   "'llm_boilerplate' alone skips the models)")
    p.set_defaults(func=_demo)

    p = subparsers.add_parser(
        "worker",
        help="join the workers' consumer group and process posts until stopped",
        description="Consume posts, validate them (bad ones go to the dead-letter topic with their "
        "reason), run the detectors, write the store, produce flags, then commit offsets. "
        "SIGTERM finishes the batch in hand and leaves the group. Start several, on one host or "
        "many, with the same group id to share the partitions.",
    )
    add_common_arguments(p)
    p.add_argument("--processes", type=int, default=1, help="worker processes on this host (default 1)")
    p.add_argument("--worker-id", help="name in logs and metrics (default host-pid)")
    p.add_argument("--group", help="consumer group id (default from config: chorus-workers)")
    p.add_argument("--detectors", help="comma-separated detector names (default from config)")
    p.add_argument("--idle-exit", type=float, help="exit after this many seconds without posts")
    p.set_defaults(func=_worker)

    p = subparsers.add_parser("produce", help="send posts from a JSONL file to the posts topic")
    add_common_arguments(p)
    p.add_argument("input", help="JSONL file, one post per line ('-' for standard input)")
    p.set_defaults(func=_produce)

    p = subparsers.add_parser("simulate", help="write a simulated stream of posts to a JSONL file")
    p.add_argument("output", help="JSONL file to write ('-' for standard output)")
    p.add_argument("--posts", type=int, default=5_000)
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(func=_simulate)

    p = subparsers.add_parser("topics", help="create the posts, flags and dead-letter topics")
    add_common_arguments(p)
    p.add_argument("--partitions", type=int, help="partitions of the posts and flags topics")
    p.add_argument("--replication-factor", type=int, default=1)
    p.set_defaults(func=_topics)

    p = subparsers.add_parser("migrate", help="create or upgrade the store's schema")
    add_common_arguments(p)
    p.set_defaults(func=_migrate)

    p = subparsers.add_parser("broker", help="run the embedded Kafka-compatible broker in the foreground")
    p.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one)")
    p.set_defaults(func=_broker)

    p = subparsers.add_parser("console", help="open the review console (Streamlit) on the store")
    add_common_arguments(p)
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--address", default="127.0.0.1",
                   help="interface to listen on (default 127.0.0.1: this machine only; any other address needs "
                   "OIDC sign-in, an [auth] section in .streamlit/secrets.toml)")
    p.set_defaults(func=_console)


# -- worker ------------------------------------------------------------------------------------
def _worker(args: argparse.Namespace) -> int:
    config = load_config(args).with_overrides(
        worker={
            **({"group_id": args.group} if args.group else {}),
            **({"detectors": tuple(d.strip() for d in args.detectors.split(",") if d.strip())}
               if args.detectors else {}),
        }
    )
    from stream.pipeline.processes import run_worker, run_worker_processes

    if args.processes > 1:
        return run_worker_processes(config, args.processes, idle_exit_s=args.idle_exit)
    return run_worker(config, worker_id=args.worker_id, idle_exit_s=args.idle_exit)


# -- producing and simulating ----------------------------------------------------------------
def _produce(args: argparse.Namespace) -> int:
    from stream.kafka.producer import produce_lines

    config = load_config(args)
    handle = sys.stdin.buffer if args.input == "-" else open(args.input, "rb")  # noqa: SIM115
    with handle:
        sent = produce_lines(config, handle)
    print(f"sent {sent} messages to {config.topics.posts} on {config.kafka.bootstrap_servers}")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from stream.kafka.messages import encode_post
    from stream.simulation import SimulationConfig, simulate_posts

    posts = simulate_posts(SimulationConfig(seed=args.seed, posts=args.posts))
    out = sys.stdout.buffer if args.output == "-" else open(args.output, "wb")  # noqa: SIM115
    with out:
        for post in posts:
            out.write(encode_post(post) + b"\n")
    if args.output != "-":
        print(f"wrote {len(posts)} posts to {args.output}")
    return 0


# -- administration --------------------------------------------------------------------------
def _topics(args: argparse.Namespace) -> int:
    from stream.kafka.topics import ensure_topics, topic_plan

    config = load_config(args)
    plan = topic_plan(config, args.partitions)
    described = ensure_topics(config, plan, replication_factor=args.replication_factor)
    for name, partitions in described.items():
        note = "" if partitions == plan[name] else f" (asked for {plan[name]}; the topic already existed)"
        print(f"{name}: {partitions} partitions{note}")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from stream.store.database import Store

    config = load_config(args)
    store = Store.open(config.store.url)
    try:
        print(f"store {store.engine.url.render_as_string(hide_password=True)} at schema version "
              f"{store.schema_version()}")
    finally:
        store.close()
    return 0


def _broker(args: argparse.Namespace) -> int:
    from stream.kafka.broker import EmbeddedBroker

    broker = EmbeddedBroker(port=args.port)
    bootstrap = broker.start()
    print(f"embedded broker listening on {bootstrap} (log: {broker.log_path}); Ctrl-C stops it", flush=True)
    try:
        while broker.is_running:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        broker.stop()
    return 0


def _console(args: argparse.Namespace) -> int:
    """Streamlit on 127.0.0.1 unless ``--address`` says otherwise, the store URL in the child's environment.

    Any other address is refused (exit 2) unless the Streamlit secrets name an identity provider:
    in local mode nobody signs in, so whoever reached the port would act as the local reviewer
    (the console refuses it again itself, for ``streamlit run`` by hand). The URL may carry a
    password: on Streamlit's command line every local user could read it in ``ps``, so it travels
    as ``CHORUS_STORE__URL`` (the console reads the configuration) and is printed with the password
    hidden. ``viewer`` toolbar mode hides Streamlit's developer menu and its Deploy button, which
    mean nothing to an analyst; the repository's ``.streamlit/config.toml`` says the same for
    ``streamlit run dashboards/app.py`` started by hand from the repository root.
    """
    from sqlalchemy.engine import make_url

    config = load_config(args)
    app = Path(__file__).resolve().parents[2] / "dashboards" / "app.py"
    if not is_loopback(args.address) and not secrets_name_an_identity_provider(_streamlit_secrets_files(app)):
        print(f"chorus console: {local_mode_refusal(args.address)}", file=sys.stderr)
        return 2
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(args.port),
           "--server.address", args.address, "--server.headless", "true",
           "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer"]
    env = dict(os.environ)
    env["CHORUS_STORE__URL"] = config.store.url
    if getattr(args, "config", None):  # the console reads the rest of the file itself ([review], ...)
        env["CHORUS_CONFIG"] = str(Path(args.config).resolve())
    url = config.store.url
    shown = make_url(url).render_as_string(hide_password=True) if "://" in url else url
    print(f"review console on http://{args.address}:{args.port} (store: {shown})", flush=True)
    return subprocess.call(cmd, env=env)


def _streamlit_secrets_files(app: Path) -> list[Path]:
    """Where the console's Streamlit will look for secrets: its ``secrets.files`` option (by default
    ``~/.streamlit/secrets.toml`` and ``.streamlit/secrets.toml`` here, where it starts) and the
    folder beside the app."""
    from streamlit import config as streamlit_config

    files = [Path(f) for f in streamlit_config.get_option("secrets.files")]
    return [*files, app.parent / ".streamlit" / "secrets.toml"]


def secrets_name_an_identity_provider(paths: list[Path]) -> bool:
    """Whether these Streamlit secrets, merged as Streamlit merges them (a later file's top-level
    keys win), have a non-empty ``[auth]`` section: what ``dashboards/auth.py`` calls OIDC mode.
    A folder of Kubernetes-style secrets counts when it has an ``auth`` folder."""
    merged: dict[str, object] = {}
    for path in paths:
        if path.suffix == ".toml" and path.is_file():
            try:
                merged.update(tomllib.loads(path.read_text(encoding="utf-8")))
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"the Streamlit secrets file {path} is not valid TOML: {exc}") from None
        elif path.is_dir() and (path / "auth").is_dir():
            merged["auth"] = {"folder": str(path / "auth")}
    auth = merged.get("auth")
    return isinstance(auth, dict) and bool(auth)


# -- demo --------------------------------------------------------------------------------------
def _demo(args: argparse.Namespace) -> int:
    from stream.pipeline.demo import run_demo

    config = load_config(args)
    detectors = tuple(d.strip() for d in args.detectors.split(",") if d.strip()) if args.detectors else None
    summary = run_demo(config, posts=args.posts, workers=args.workers, seed=args.seed,
                       timeout_s=args.timeout, progress=not args.no_progress, detectors=detectors)
    print(summary.render())
    return 0 if summary.complete else 1
