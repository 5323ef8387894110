"""``chorus coordinator``, ``chorus graph-stage`` (and ``chorus rekey``): the streaming coordination stage.

``register(subparsers)`` adds the commands to ``chorus``; ``python -m stream.cli.coordinator
coordinator ...`` runs them without it. Settings: the ``[coordinator]`` section of the main
configuration (``--config`` / ``$CHORUS_CONFIG``, ``CHORUS_COORDINATOR__FIELD`` environment
variables; every field of :class:`stream.config.CoordinatorSettings`), then the flags below.
``--settings FILE`` (a separate TOML file with a ``[coordinator]`` table) still works but is
deprecated: it is applied on top of the configuration's section, with a warning.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import tomllib
from pathlib import Path

from detectors.coordination.incremental import STREAM_NETWORK_TYPES
from stream.cli import rekey
from stream.cli.common import add_common_arguments, load_config
from stream.config import EDGES_TOPIC, ChorusConfig, CoordinatorSettings

log = logging.getLogger("chorus")


#: The graph stage's consumer group when the configuration names none of its own: it must not share
#: the coordination workers' group (their rebalances would make it rebuild its horizon).
GRAPH_STAGE_GROUP = "chorus-graph-stage"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``chorus coordinator``, ``chorus graph-stage`` and ``chorus rekey``."""
    p = subparsers.add_parser(
        "coordinator",
        help="find coordinated campaigns in the stream of posts (one process, own consumer group)",
        description="Consume the posts topic in its own consumer group, keep the co-action networks of a "
        "sliding horizon of posts, periodically find campaigns (account graph, Louvain, stable ids), write "
        "them with their evidence to the store, send a flag per new campaign version to the flags topic, "
        "then commit. A restart re-reads the last horizon of posts before it writes anything.",
    )
    _add_stage_arguments(p)
    p.add_argument("--input", choices=("posts", "embedded", "actions"), help="what the topic carries (default "
                   "posts; embedded: the posts the workers republish with their embeddings, needed by "
                   "co_paraphrase; actions: the by-object topic of chorus rekey)")
    p.add_argument("--emit-edges", action="store_true", default=None,
                   help="scale-out worker: run no graph stage, send per-object match rows to the edges topic "
                   "for chorus graph-stage (with --input actions, several processes in one group)")
    p.add_argument("--max-posts-per-object", type=int, help="hot-object cap per window slice (0: none; default 1000)")
    p.set_defaults(func=_coordinator)

    p = subparsers.add_parser(
        "graph-stage",
        help="the one graph stage of the scaled-out coordination path (reads the workers' edges topic)",
        description="Consume the edges topic that coordination workers (chorus coordinator --input actions "
        "--emit-edges) fill, keep their per-object match rows over the horizon, and run the coordinator's "
        "checkpoint over them: campaigns into the store, a flag per new campaign version, then commit. "
        f"Run ONE process. Its consumer group defaults to {GRAPH_STAGE_GROUP}.",
    )
    _add_stage_arguments(p)
    p.set_defaults(func=_graph_stage)
    rekey.register(subparsers)


def _add_stage_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p)
    p.add_argument("--settings", type=Path, help="deprecated: a TOML file with a [coordinator] table (put the "
                   "table in the --config file instead)")
    p.add_argument("--group", help="consumer group id (default from [coordinator] group_id)")
    p.add_argument("--topic", help="topic to read (default: the posts topic; chorus.posts.by-object after rekey; "
                   f"the edges topic, {EDGES_TOPIC}, for the graph stage)")
    p.add_argument("--edges-topic", help=f"the edges topic (default {EDGES_TOPIC})")
    p.add_argument("--networks", help=f"comma-separated co-action types (default {','.join(STREAM_NETWORK_TYPES)})")
    p.add_argument("--window", action="append", metavar="TYPE=SECONDS", help="window of one type, e.g. co_link=120")
    p.add_argument("--horizon-s", type=float, help="event time the state holds (default 21600)")
    p.add_argument("--graph-interval-s", type=float, help="most seconds between campaign runs (default 30)")
    p.add_argument("--graph-in-foreground", action="store_true", default=None,
                   help="run the graph stage in the consumer loop (default: in the background)")
    p.add_argument("--batch-max-posts", type=int, help="micro-batch size (default 20000)")
    p.add_argument("--min-size", type=int, help="smallest campaign (default 3)")
    p.add_argument("--seed", type=int, help="Louvain seed (default 0)")
    p.add_argument("--machine-detector", help="detector whose probabilities give campaigns their machine share")
    p.add_argument("--coordinator-id", help="name in logs (default host-pid-coordinator)")
    p.add_argument("--idle-exit", type=float, help="exit after this many seconds caught up without posts")

def settings_from_args(args: argparse.Namespace, config: ChorusConfig | None = None) -> CoordinatorSettings:
    """The coordinator settings: the configuration's ``[coordinator]`` section (defaults, file,
    environment), then the deprecated ``--settings`` file, then flags."""
    settings = config.coordinator if config is not None else CoordinatorSettings()
    if getattr(args, "settings", None):
        log.warning("--settings is deprecated: put the [coordinator] table in the --config file "
                    "(or use CHORUS_COORDINATOR__FIELD variables); %s is applied on top of it", args.settings)
        with open(args.settings, "rb") as handle:
            table = tomllib.load(handle).get("coordinator", {})
        parsed = CoordinatorSettings.from_mapping(table, source=str(args.settings))  # checks names and types
        settings = dataclasses.replace(settings, **{name: getattr(parsed, name) for name in table})
    flags = {
        "group_id": args.group,
        "topic": args.topic,
        "input": getattr(args, "input", None),
        "emit_edges": getattr(args, "emit_edges", None),
        "edges_topic": args.edges_topic,
        "graph_in_background": False if args.graph_in_foreground else None,
        "networks": tuple(n.strip() for n in args.networks.split(",") if n.strip()) if args.networks else None,
        "windows": tuple(args.window) if args.window else None,
        "horizon_s": args.horizon_s,
        "max_posts_per_object": getattr(args, "max_posts_per_object", None),
        "graph_interval_s": args.graph_interval_s,
        "batch_max_posts": args.batch_max_posts,
        "min_size": args.min_size,
        "seed": args.seed,
        "machine_detector": args.machine_detector,
    }
    settings = dataclasses.replace(settings, **{k: v for k, v in flags.items() if v is not None})
    settings.incremental_config()  # validate now: a bad window or network fails before connecting
    return settings


def _graph_stage(args: argparse.Namespace) -> int:
    return _coordinator(args, graph_stage=True)


def _coordinator(args: argparse.Namespace, *, graph_stage: bool = False) -> int:
    from stream.coordination.coordinator import Coordinator
    from stream.store.database import Store

    command = "graph-stage" if graph_stage else "coordinator"
    try:
        config = load_config(args)
        settings = settings_from_args(args, config)
        if graph_stage:
            group = args.group or (
                GRAPH_STAGE_GROUP if settings.group_id == CoordinatorSettings.group_id else settings.group_id
            )
            settings = dataclasses.replace(settings, input="edges", emit_edges=False, group_id=group)
    except (ValueError, OSError, tomllib.TOMLDecodeError) as exc:
        print(f"chorus {command}: {exc}", file=sys.stderr)
        return 2
    store = None if settings.emit_edges else Store.open(config.store.url)
    try:
        coordinator = Coordinator(config, store, settings, coordinator_id=args.coordinator_id)

        def stop(signum: int, _frame: object) -> None:
            log.info("%s: %s received, finishing up", coordinator.coordinator_id, signal.Signals(signum).name)
            coordinator.request_stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        coordinator.run(idle_exit_s=args.idle_exit)
    finally:
        if store is not None:
            store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``coordinator`` / ``graph-stage`` / ``rekey`` without the ``chorus`` entry point."""
    from stream.cli.main import run

    parser = argparse.ArgumentParser(prog="chorus")
    register(parser.add_subparsers(dest="command", metavar="COMMAND"))
    return run(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
