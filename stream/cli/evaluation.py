"""``chorus eval``: score a labelled file with the detectors, write the report (:mod:`stream.evaluation.report`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from detectors.evaluation import TEXT_VARIANTS
from stream.cli.common import load_config
from stream.evaluation.report import (
    DEFAULT_BATCH_SIZE,
    NOT_EVALUATED,
    build_eval_detectors,
    evaluate,
    markdown_table,
    read_labelled,
    score_labelled,
    write_report,
)


def _detector_names(values: Sequence[str] | None) -> list[str] | None:
    if not values:
        return None
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def _command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this report, for its first line."""
    parts = ["chorus eval", *(str(p) for p in args.input), "--out", str(args.out)]
    if args.detectors:
        parts += ["--detectors", *_detector_names(args.detectors)]
    for flag, value in (("--split", args.split), ("--sample", args.sample)):
        if value is not None:
            parts += [flag, str(value)]
    if args.groups:
        parts += ["--groups", *_detector_names(args.groups)]
    if args.sample is not None and args.seed:
        parts += ["--seed", str(args.seed)]
    if args.raw_only:
        parts.append("--raw-only")
    if args.no_text:
        parts.append("--no-text")
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    """The ``chorus eval`` command: 0 when the report is written, 2 on bad input or unknown detectors."""
    try:
        labelled = read_labelled(args.input, split=args.split, groups=_detector_names(args.groups),
                                 sample_per_dataset=args.sample, seed=args.seed)  # fmt: skip
        detectors, skipped = build_eval_detectors(_detector_names(args.detectors), load_config(args))
    except (ValueError, OSError, pl.exceptions.PolarsError) as exc:
        print(f"chorus eval: {exc}", file=sys.stderr)
        return 2
    for name, why in skipped.items():
        print(f"chorus eval: skipping detector {name}: {why}", file=sys.stderr)
    if not detectors:
        print("chorus eval: no detector could be built; see the messages above", file=sys.stderr)
        return 2
    print(f"{labelled.posts.height} labelled posts, {labelled.rejected.height} rejected; "
          f"detectors: {', '.join(d.name for d in detectors)}")  # fmt: skip
    variants = ("raw",) if args.raw_only else TEXT_VARIANTS
    named = bool(_detector_names(args.detectors))
    try:
        scored = score_labelled(labelled.posts, detectors, variants=variants, batch_size=args.batch_size,
                                progress=print, skipped=None if named else skipped)  # fmt: skip
    except ValueError as exc:
        print(f"chorus eval: {exc}", file=sys.stderr)
        return 2
    evaluation = evaluate(scored, detectors, labelled=labelled.posts, skipped=skipped)
    command = _command_line(args)
    notes = []
    if args.split:
        notes.append(f"Only rows of split `{args.split}`.")
    if args.groups:
        notes.append(f"Only rows of groups (accounts) {', '.join(f'`{g}`' for g in _detector_names(args.groups))}.")
    if args.sample:
        notes.append(
            f"A seeded sample (seed {args.seed}) of at most {args.sample} posts per dataset, half of each class."
        )
    if args.raw_only:
        notes.append("Raw text only (`--raw-only`): no normalised-text pass.")
    report = write_report(
        evaluation, labelled, args.out, inputs=[str(p) for p in args.input], notes=notes, command=command,
        include_text=not args.no_text,
    )
    print(markdown_table(evaluation.headline().filter(pl.col("slice") == "all")))
    print(f"report: {report}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``chorus eval`` to the command line."""
    p = subparsers.add_parser(
        "eval",
        help="score a labelled file with the detectors and write a report (Markdown + PNG plots)",
        description="Score labelled posts (id/post_id, text, label 0 human / 1 machine; optional dataset, "
        "source_model or generator, group, split) with the registered detectors through the stream's "
        "detector API, on raw and on link/mention-normalised text, and write report.md with ROC and "
        "precision-recall curves per dataset and generator, calibration, AUROC, TPR at 1%% and 0.1%% FPR "
        "and accuracy at the default threshold, plus metrics.csv and scores.parquet.",
    )
    p.add_argument("input", type=Path, nargs="+", help="labelled posts: .jsonl[.gz], .csv[.gz] or .parquet")
    p.add_argument("--out", type=Path, required=True, help="folder for the report (created if missing)")
    p.add_argument(
        "--detectors",
        nargs="+",
        metavar="NAME",
        help=f"detectors to evaluate (default: every registered one except {', '.join(sorted(NOT_EVALUATED))})",
    )
    p.add_argument("--split", help="only rows whose split column equals this (e.g. validation)")
    p.add_argument("--groups", nargs="+", metavar="GROUP",
                   help="only rows whose group column is one of these (e.g. held-out accounts; commas or spaces)")
    p.add_argument("--sample", type=int, help="at most this many posts per dataset, half of each class (seeded)")
    p.add_argument("--seed", type=int, default=0, help="seed for --sample (default 0)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="posts per detect() call (default 500)")
    p.add_argument("--raw-only", action="store_true", help="skip the normalised-text pass (half the scoring time)")
    p.add_argument("--no-text", action="store_true",
                   help="leave post texts out of the report and rejected.csv (for a report committed with the code)")
    p.add_argument("--config", help="TOML configuration file (default: $CHORUS_CONFIG); detectors are built from it")
    p.set_defaults(func=run)
