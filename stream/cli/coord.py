"""``chorus coord``: batch co-action networks and campaigns from a file (:mod:`stream.coordination.batch`)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import polars as pl

from detectors.coordination.coaction import (
    DEFAULT_WINDOWS_S,
    KNOWN_NETWORK_TYPES,
    NETWORK_TYPES,
    PARAPHRASE_SEARCHES,
    CoActionConfig,
)
from detectors.coordination.formats import coerce_posts
from detectors.coordination.graph import CampaignConfig, detect_campaigns
from stream.coordination.batch import (
    add_embeddings,
    has_embeddings,
    parse_embeddings,
    read_previous_campaigns,
    split_rejected,
    write_outputs,
)
from stream.files.posts import read_posts
from stream.models.weights import ModelNotInstalledError


def _parse_windows(args: argparse.Namespace) -> dict[str, float]:
    windows = dict.fromkeys(KNOWN_NETWORK_TYPES, args.window_s) if args.window_s is not None else {}
    for item in args.window or []:
        network, sep, seconds = item.partition("=")
        if not sep or network not in KNOWN_NETWORK_TYPES:
            raise ValueError(
                f"--window {item!r}: expected TYPE=SECONDS with TYPE one of {', '.join(KNOWN_NETWORK_TYPES)}"
            )
        windows[network] = float(seconds)
    return windows


def run(args: argparse.Namespace) -> int:
    """The ``chorus coord`` command: exit 0 on success, 2 on bad input."""
    try:
        if not args.input.exists():
            raise ValueError(f"{args.input}: no such file")
        requested = tuple(args.networks.split(",")) if args.networks else None
        unknown = [n for n in requested or () if n not in KNOWN_NETWORK_TYPES]
        if unknown:
            raise ValueError(f"--networks: unknown {unknown}; known: {', '.join(KNOWN_NETWORK_TYPES)}")
        coaction = CoActionConfig(
            windows_s=_parse_windows(args),
            min_weight=args.min_weight,
            evidence_per_edge=args.evidence,
            similarity_threshold=args.similarity_threshold,
            min_tokens=args.min_tokens,
            paraphrase_threshold=args.paraphrase_threshold,
            paraphrase_search=args.paraphrase_search,
            seed=args.seed,
        )
        coaction.window_s("co_paraphrase")  # a bad window fails here, before any model is loaded
        started = time.perf_counter()
        posts, rejected = split_rejected(parse_embeddings(coerce_posts(read_posts(args.input))))
        previous = read_previous_campaigns(args.previous)
        # co_paraphrase by default only when the input brings its embeddings (no model call).
        networks = requested or (KNOWN_NETWORK_TYPES if has_embeddings(posts) else NETWORK_TYPES)
        if "co_paraphrase" in networks and not has_embeddings(posts):
            posts = add_embeddings(posts, device=args.device, batch_size=args.embed_batch)
    except (ValueError, OSError, pl.exceptions.PolarsError, ModelNotInstalledError) as exc:
        print(f"chorus coord: {exc}", file=sys.stderr)
        return 2
    loaded = time.perf_counter()
    result = detect_campaigns(posts, CampaignConfig(coaction=coaction, networks=networks, seed=args.seed), previous)
    computed = time.perf_counter()
    counts = write_outputs(result, args.outdir)
    if rejected.height:
        rejected.select(pl.exclude(pl.List(pl.String))).write_csv(args.outdir / "rejected.csv")
        counts["rejected.csv"] = rejected.height
    print(
        f"{posts.height} posts read{' and embedded' if 'co_paraphrase' in networks else ''} in "
        f"{loaded - started:.1f}s, networks and campaigns in "
        f"{computed - loaded:.1f}s; wrote to {args.outdir}:"
    )
    for name, n in counts.items():
        print(f"  {name:<24} {n} rows")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``chorus coord`` to the command line."""
    windows = ", ".join(f"{n}={int(s)}" for n, s in DEFAULT_WINDOWS_S.items())
    p = subparsers.add_parser(
        "coord",
        help="co-action networks and campaigns from a file of posts (QUT-compatible edge lists)",
        description="Compute co-repost, co-text, co-reply, co-link, co-hashtag and co-similar networks "
        "(QUT coordination_network_toolkit semantics: directed, weight = posts of user_1 matched by "
        "user_2 within the window), the account graph and its campaigns, and write edge lists, "
        "evidence and campaigns as CSV. The co-paraphrase network (MiniLM sentence embeddings with "
        "cosine >= --paraphrase-threshold) is added when the input has an 'embedding' column, or "
        "when named in --networks, in which case missing embeddings are computed with the MiniLM "
        f"encoder (offline; slower: tens of posts/s per CPU core). Default windows (s): {windows}.",
    )
    p.add_argument("input", type=Path, help="posts: .csv[.gz] (Chorus, QUT 8-column or IRA), .parquet, .jsonl[.gz]")
    p.add_argument("outdir", type=Path, help="folder for the output CSV files (created if missing)")
    p.add_argument("--window-s", type=float, default=None, help="one window in seconds for every type")
    p.add_argument(
        "--window", action="append", metavar="TYPE=SECONDS", help="window for one type, e.g. co_similar=3600"
    )
    p.add_argument(
        "--networks",
        help=f"comma-separated types out of {','.join(KNOWN_NETWORK_TYPES)} (default: {','.join(NETWORK_TYPES)}, "
        "plus co_paraphrase when the input has an embedding column)",
    )
    p.add_argument("--min-weight", type=int, default=1, help="drop edges lighter than this (default 1)")
    p.add_argument("--similarity-threshold", type=float, default=0.8, help="co_similar Jaccard (default 0.8)")
    p.add_argument("--min-tokens", type=int, default=1, help="co_similar: smallest token set (default 1)")
    p.add_argument(
        "--paraphrase-threshold", type=float, default=0.9, help="co_paraphrase embedding cosine (default 0.9)"
    )
    p.add_argument(
        "--paraphrase-search", choices=tuple(PARAPHRASE_SEARCHES), default="hybrid",
        help="co_paraphrase pair search: hybrid (exact in sparse time slices, SimHash index in dense ones; default), "
        "lsh (the index everywhere: what chorus coordinator finds in the stream) or exact (brute force)",
    )  # fmt: skip
    p.add_argument("--device", default="cpu", help="co_paraphrase: MiniLM device, cpu, cuda or auto (default cpu)")
    p.add_argument("--embed-batch", type=int, default=256, help="co_paraphrase: texts per MiniLM call (default 256)")
    p.add_argument("--evidence", type=int, default=5, help="matched post pairs kept per edge (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed for MinHash, SimHash and Louvain (default 0)")
    p.add_argument("--previous", type=Path, help="campaign_members.csv of the previous window (stable ids)")
    p.set_defaults(func=run)
