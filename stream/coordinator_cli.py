"""``chorus coordinator`` (and ``chorus rekey``): the streaming coordination stage on the command line.

``register(subparsers)`` adds the commands to ``chorus``; ``python -m stream.coordinator_cli
coordinator ...`` runs them without it. Settings: the flags below, on top of an optional TOML file
with a ``[coordinator]`` table (``--settings``, every field of
:class:`stream.coordinator.CoordinatorSettings`), on top of the defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import tomllib
from pathlib import Path
from typing import Any

from detectors.coordination.incremental import STREAM_NETWORK_TYPES
from stream.cli import add_common_arguments, load_config

log = logging.getLogger("chorus")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``chorus coordinator`` and ``chorus rekey``."""
    p = subparsers.add_parser(
        "coordinator",
        help="find coordinated campaigns in the stream of posts (one process, own consumer group)",
        description="Consume the posts topic in its own consumer group, keep the co-action networks of a "
        "sliding horizon of posts, periodically find campaigns (account graph, Louvain, stable ids), write "
        "them with their evidence to the store, send a flag per new campaign version to the flags topic, "
        "then commit. A restart re-reads the last horizon of posts before it writes anything.",
    )
    add_common_arguments(p)
    p.add_argument("--settings", type=Path, help="TOML file with a [coordinator] table")
    p.add_argument("--group", help="consumer group id (default chorus-coordinator)")
    p.add_argument("--topic", help="topic to read (default: the posts topic; chorus.posts.by-object after rekey)")
    p.add_argument("--input", choices=("posts", "actions"), help="what the topic carries (default posts; "
                   "actions: the by-object topic of chorus rekey)")
    p.add_argument("--networks", help=f"comma-separated co-action types (default {','.join(STREAM_NETWORK_TYPES)})")
    p.add_argument("--window", action="append", metavar="TYPE=SECONDS", help="window of one type, e.g. co_link=120")
    p.add_argument("--horizon-s", type=float, help="event time the state holds (default 21600)")
    p.add_argument("--max-posts-per-object", type=int, help="hot-object cap per window slice (0: none; default 1000)")
    p.add_argument("--graph-interval-s", type=float, help="most seconds between campaign runs (default 30)")
    p.add_argument("--batch-max-posts", type=int, help="micro-batch size (default 20000)")
    p.add_argument("--min-size", type=int, help="smallest campaign (default 3)")
    p.add_argument("--seed", type=int, help="Louvain seed (default 0)")
    p.add_argument("--machine-detector", help="detector whose probabilities give campaigns their machine share")
    p.add_argument("--coordinator-id", help="name in logs (default host-pid-coordinator)")
    p.add_argument("--idle-exit", type=float, help="exit after this many seconds caught up without posts")
    p.set_defaults(func=_coordinator)

    try:
        from stream import rekey
    except ImportError:  # the scale-out stage is optional
        return
    rekey.register(subparsers)


def settings_from_args(args: argparse.Namespace) -> Any:
    """The coordinator settings: defaults, then ``--settings``, then flags."""
    from stream.coordinator import CoordinatorSettings

    values: dict[str, Any] = {}
    if getattr(args, "settings", None):
        with open(args.settings, "rb") as handle:
            values.update(tomllib.load(handle).get("coordinator", {}))
    settings = CoordinatorSettings.from_mapping(values)
    flags = {
        "group_id": args.group,
        "topic": args.topic,
        "input": args.input,
        "networks": tuple(n.strip() for n in args.networks.split(",") if n.strip()) if args.networks else None,
        "windows": tuple(args.window) if args.window else None,
        "horizon_s": args.horizon_s,
        "max_posts_per_object": args.max_posts_per_object,
        "graph_interval_s": args.graph_interval_s,
        "batch_max_posts": args.batch_max_posts,
        "min_size": args.min_size,
        "seed": args.seed,
        "machine_detector": args.machine_detector,
    }
    settings = dataclasses.replace(settings, **{k: v for k, v in flags.items() if v is not None})
    settings.incremental_config()  # validate now: a bad window or network fails before connecting
    return settings


def _coordinator(args: argparse.Namespace) -> int:
    from stream.coordinator import Coordinator
    from stream.store import Store

    config = load_config(args)
    try:
        settings = settings_from_args(args)
    except (ValueError, OSError, tomllib.TOMLDecodeError) as exc:
        print(f"chorus coordinator: {exc}", file=sys.stderr)
        return 2
    store = Store.open(config.store.url)
    try:
        coordinator = Coordinator(config, store, settings, coordinator_id=args.coordinator_id)

        def stop(signum: int, _frame: object) -> None:
            log.info("%s: %s received, finishing up", coordinator.coordinator_id, signal.Signals(signum).name)
            coordinator.request_stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        coordinator.run(idle_exit_s=args.idle_exit)
    finally:
        store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``coordinator`` / ``rekey`` without the ``chorus`` entry point (until it is wired in)."""
    parser = argparse.ArgumentParser(prog="chorus")
    register(parser.add_subparsers(dest="command", metavar="COMMAND"))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
