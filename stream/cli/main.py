"""The ``chorus`` command line: one subcommand per job.

Every subcommand reads the same configuration (``--config FILE``, ``CHORUS_*`` environment
variables) and a few common flags override it. Each command module registers itself with
``register(subparsers)``, so the parts of Chorus can grow without this file knowing their flags.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from stream.config import ConfigError
from stream.kafka.clients import KafkaUnreachable

DESCRIPTION = """\
Chorus finds machine-written posts and coordinated campaigns in a stream of social-network posts.

Start here:
  chorus demo                     run the whole pipeline on an embedded broker with a simulated
                                  stream, and fill the store the review console reads
  chorus console                  open the review console on that store

Run against your own cluster (see README, "Running on your cluster"):
  chorus topics --bootstrap HOST:9092          create the posts / flags / dead-letter topics
  chorus worker --bootstrap HOST:9092 --store postgresql+psycopg://...   start a worker
  chorus produce posts.jsonl --bootstrap HOST:9092                        send posts
"""


def _command_modules() -> list[Callable[[argparse._SubParsersAction], None]]:
    from stream.cli import aitext, aitext_modern, coord, coordinator, evaluation, pipeline, policy

    return [
        pipeline.register,
        aitext.register,
        aitext_modern.register,
        evaluation.register,
        coord.register,
        coordinator.register,
        policy.register,
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chorus", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in _command_modules():
        register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), argv)


def run(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse ``argv`` with ``parser`` and run its command: one logging setup and one exit-code policy
    for ``chorus`` and for the modules that also run alone (``python -m stream.cli.coordinator``)."""
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # kafka-python logs every reconnect attempt at WARNING/ERROR; the worker says it once, clearly.
    logging.getLogger("kafka").setLevel(logging.DEBUG if getattr(args, "verbose", False) else logging.CRITICAL)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"chorus: configuration error: {exc}", file=sys.stderr)
        return 2
    except KafkaUnreachable as exc:
        print(f"chorus: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
