"""Flags and configuration loading that every ``chorus`` subcommand shares."""

from __future__ import annotations

import argparse

from stream.config import ChorusConfig


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags every command that touches Kafka or the store understands."""
    parser.add_argument("--config", help="TOML configuration file (default: $CHORUS_CONFIG)")
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers, host:port[,host:port]")
    parser.add_argument("--store", help="store URL: sqlite:///path.db, a path, or postgresql+psycopg://...")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def load_config(args: argparse.Namespace) -> ChorusConfig:
    """The configuration with this command's flags applied on top."""
    config = ChorusConfig.load(getattr(args, "config", None))
    return config.with_overrides(
        kafka={"bootstrap_servers": args.bootstrap} if getattr(args, "bootstrap", None) else {},
        store={"url": args.store} if getattr(args, "store", None) else {},
    )
