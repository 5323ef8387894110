"""``chorus rekey``: re-key posts by shared object for the scaled-out coordinator."""

from __future__ import annotations

import argparse
import signal

from stream.cli.common import add_common_arguments, load_config
from stream.config import BY_OBJECT_TOPIC
from stream.coordination.rekey import Rekeyer, RekeySettings
from stream.kafka.topics import ensure_topics


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``chorus rekey``."""
    p = subparsers.add_parser(
        "rekey",
        help="re-key posts by shared object onto chorus.posts.by-object (scale-out of the coordinator)",
        description="Consume the posts topic in its own group and produce one message per (post, shared object) "
        "keyed by type and object, so that coordination workers in one consumer group over that topic each "
        "see every post sharing an object routed to them. Start N processes with the same group to scale.",
    )
    add_common_arguments(p)
    p.add_argument("--group", default=RekeySettings.group_id, help="consumer group id (default chorus-rekey)")
    p.add_argument("--topic", default=BY_OBJECT_TOPIC, help=f"output topic (default {BY_OBJECT_TOPIC})")
    p.add_argument("--partitions", type=int, help="create the output topic with this many partitions if missing")
    p.add_argument("--idle-exit", type=float, help="exit after this many seconds without posts")
    p.set_defaults(func=_rekey)


def _rekey(args: argparse.Namespace) -> int:
    config = load_config(args)
    if args.partitions:
        ensure_topics(config, {args.topic: args.partitions})
    # The coordinator's types: co_similar is opt-in there, and then the rekey stage must route it too.
    networks = tuple(config.coordinator.networks)
    rekeyer = Rekeyer(config, RekeySettings(group_id=args.group, topic=args.topic, networks=networks))

    def stop(signum: int, _frame: object) -> None:
        rekeyer.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    rekeyer.run(idle_exit_s=args.idle_exit)
    return 0
