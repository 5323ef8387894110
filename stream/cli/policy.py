"""``chorus policy ...``: validate policy files, switch them on and off (audited), compare a shadow.

Registered by ``stream.cli.main`` through :func:`register`. Every switch is one command that writes the
change and its audit row in one transaction; workers pick it up within ``policy.reload_interval_s``.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from stream.cli.common import add_common_arguments, load_config


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``chorus policy`` and its subcommands."""
    policy = subparsers.add_parser(
        "policy",
        help="validate, activate, shadow, roll back and compare automated-action policies",
        description="Policies are versioned TOML files of rules that turn detector outputs into actions "
        "(see policies/example.toml). Try a policy in shadow first (recorded, never acted on), compare, "
        "then activate; every switch is written to the audit log.",
    )
    sub = policy.add_subparsers(dest="policy_command", metavar="SUBCOMMAND")

    p = sub.add_parser("validate", help="check policy files; errors name file, line and field")
    p.add_argument("files", nargs="+", type=Path)
    p.set_defaults(func=_validate)

    for name, slot, text in (
        ("activate", "active", "make FILE the active policy: its rules act on the stream"),
        ("shadow", "shadow", "run FILE beside the active policy: recorded, never acted on"),
    ):
        p = sub.add_parser(name, help=text, description=text + ". Audited.")
        add_common_arguments(p)
        p.add_argument("file", type=Path, nargs="?", help="policy file (validated first)")
        p.add_argument("--clear", action="store_true", help=f"empty the {slot} slot instead")
        p.add_argument("--actor", help="who is switching (default: $CHORUS_ACTOR or the login name)")
        p.set_defaults(func=_set, slot=slot)

    p = sub.add_parser("rollback", help="put back the policy the slot held before (audited)")
    add_common_arguments(p)
    p.add_argument("--slot", choices=("active", "shadow"), default="active")
    p.add_argument("--actor", help="who is rolling back (default: $CHORUS_ACTOR or the login name)")
    p.set_defaults(func=_rollback)

    p = sub.add_parser("status", help="which policies run, their actions per rule, open circuit breakers")
    add_common_arguments(p)
    p.set_defaults(func=_status)

    p = sub.add_parser("compare", help="per rule: posts matched, overlap with the other policy, reviewer agreement")
    add_common_arguments(p)
    p.set_defaults(func=_compare)

    policy.set_defaults(func=lambda args: (policy.print_help(), 2)[1])


def _actor(args: argparse.Namespace) -> str:
    if getattr(args, "actor", None):
        return str(args.actor)
    try:
        return os.environ.get("CHORUS_ACTOR") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _validate(args: argparse.Namespace) -> int:
    from stream.policy.files import PolicyError, load_policy

    failed = 0
    for path in args.files:
        try:
            policy = load_policy(path)
        except PolicyError as exc:
            failed += 1
            print(exc, file=sys.stderr)
            continue
        actions = ", ".join(sorted({r.action for r in policy.rules})) or "none"
        print(f"{path}: ok: {policy.label}, {len(policy.rules)} rules ({actions})")
    return 1 if failed else 0


def _set(args: argparse.Namespace) -> int:
    from stream.policy.files import PolicyError
    from stream.policy.registry import PolicyRegistryError, set_slot
    from stream.store.database import Store

    if args.clear == (args.file is not None):
        print(f"chorus policy {args.policy_command}: give a policy FILE or --clear", file=sys.stderr)
        return 2
    config = load_config(args)
    text = None
    if args.file is not None:
        try:
            text = args.file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            print(f"{args.file}: cannot read: {exc}", file=sys.stderr)
            return 1
    with Store.open(config.store.url) as store:
        try:
            change = set_slot(store, args.slot, text, source=str(args.file) if args.file else "", actor=_actor(args))
        except (PolicyError, PolicyRegistryError) as exc:
            print(exc, file=sys.stderr)
            return 1
    print(change.describe())
    pinned = config.policy.active_file if args.slot == "active" else config.policy.shadow_file
    if pinned:
        print(f"note: this configuration pins the {args.slot} policy to {pinned}; workers started with it "
              "ignore the store's slot", file=sys.stderr)
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from stream.policy.registry import PolicyRegistryError, rollback
    from stream.store.database import Store

    config = load_config(args)
    with Store.open(config.store.url) as store:
        try:
            change = rollback(store, args.slot, actor=_actor(args))
        except PolicyRegistryError as exc:
            print(exc, file=sys.stderr)
            return 1
    print(change.describe())
    return 0


def _status(args: argparse.Namespace) -> int:
    import polars as pl

    from stream.policy.registry import read_slots
    from stream.store.database import Store

    config = load_config(args)
    with Store.open(config.store.url) as store:
        slots = read_slots(store)
        for slot, ref in slots.items():
            print(f"{slot}: {ref[0] + '@' + ref[1] if ref else '(none)'}")
            if ref is None:
                continue
            matches = store.policy_matches(ref[0], ref[1], slot)
            if matches.height:
                counts = matches.group_by("rule_id", "action", "status").len().sort("rule_id", "status")
                for row in counts.iter_rows(named=True):
                    print(f"  {row['rule_id']:<32} {row['action']:<20} {row['status']:<10} {row['len']}")
        alerts = store.frame("policy_alerts")
        if alerts.height:
            latest = alerts.sort("alert_id").group_by("policy_id", "policy_version", "rule_id", "worker_id").last()
            open_now = latest.filter(pl.col("kind") == "breaker_tripped")
            for row in open_now.iter_rows(named=True):
                print(f"ALERT: circuit breaker open for rule {row['rule_id']} of {row['policy_id']}@"
                      f"{row['policy_version']} on {row['worker_id']}: {100 * (row['share'] or 0):.1f}% of "
                      f"{row['posts']} posts since {row['at']:%Y-%m-%d %H:%M:%S} UTC")
    return 0


def _compare(args: argparse.Namespace) -> int:
    import polars as pl

    from stream.policy.compare import compare_slots
    from stream.store.database import Store

    config = load_config(args)
    with Store.open(config.store.url) as store:
        table = compare_slots(store)
    if table is None:
        print("no shadow policy: start one with `chorus policy shadow FILE`", file=sys.stderr)
        return 1
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200, tbl_hide_dataframe_shape=True):
        print(table)
    return 0
