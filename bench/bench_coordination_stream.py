"""The streaming coordination stage: throughput of the incremental co-action state, and a scale run.

Usage::

    python bench/bench_coordination_stream.py            # throughput + scale run (10 million posts)
    python bench/bench_coordination_stream.py --quick    # a smoke test (smaller everything)
    python bench/bench_coordination_stream.py --scale-posts 2000000 --rate 500 --horizon-s 3600

Posts come from a vectorised generator (:func:`chunk`): a platform-like stream at ``--rate`` posts
per second of event time, from 200,000 organic accounts whose reposts, replies, links, hashtag sets
and texts follow Zipf popularity (so some objects are hot, as on a real platform), plus injected
campaigns whose members act within seconds of each other. The detector's own generator
(:func:`stream.simulation.generate_stream`) loops in Python per post, which is right for tests and far
too slow for ten million posts.

What is timed:

* **state**: :meth:`CoActionState.add` on micro-batches already in memory (time order, five
  co-action types, one-hour horizon unless told otherwise), after a warm-up of one horizon so the
  state is full; median and spread over several runs of the same posts;
* **validate + state**: the same, from the JSON bytes of the posts through the workers'
  :class:`PostValidator`, which is what the coordinator does per micro-batch;
* **graph stage**: one :func:`campaigns_from_state` over the full horizon (what a checkpoint costs);
* **scale run**: generate and add ``--scale-posts`` posts chunk by chunk, with the process's RSS
  and the rows the state holds sampled along the way: bounded memory means both level off once
  the horizon is full, however long the stream runs.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import median_spread, save, table
from detectors.coordination.coaction import CoActionConfig
from detectors.coordination.graph import CampaignConfig
from detectors.coordination.incremental import (
    STREAM_NETWORK_TYPES,
    CoActionState,
    IncrementalConfig,
    campaigns_from_state,
)
from stream.kafka.messages import PostValidator, RawMessage, encode_post

EPOCH_US = 1_704_067_200 * 1_000_000  # 2024-01-01T00:00:00Z
N_ACCOUNTS = 200_000
N_CAMPAIGNS = 20
CAMPAIGN_SIZE = 12
#: Campaign bursts per hour of event time, over all campaigns (each campaign bursts every ~6 minutes).
BURSTS_PER_HOUR = 200.0
KINDS = np.array(["text", "repost", "reply", "link", "hashtags"])
KIND_P = np.array([0.40, 0.30, 0.10, 0.12, 0.08])


def _popular(rng: np.random.Generator, n: int, size: int, power: float) -> np.ndarray:
    """Indices in ``[0, n)`` where low indices are popular: ``floor(n * u**power)``.

    Index 0 gets a share ``n**(-1/power)`` of the draws (power 3 over 2 million objects: 0.8%), a
    heavy head and a long tail without numpy's Zipf, whose head is far hotter than a platform's
    (Zipf 1.3 gives one account a quarter of all posts).
    """
    return np.minimum((n * rng.random(size) ** power).astype(np.int64), n - 1)


def chunk(rng: np.random.Generator, start_post: int, n: int, start_s: float, rate: float) -> pl.DataFrame:
    """``n`` posts from ``start_s`` on at ``rate`` posts per second (organic + campaign bursts)."""
    span = n / rate
    t = np.sort(rng.uniform(start_s, start_s + span, size=n))
    account = _popular(rng, N_ACCOUNTS, n, 1.5)
    kind = rng.choice(len(KINDS), size=n, p=KIND_P)
    target = _popular(rng, 2_000_000, n, 3.0)
    words = rng.integers(0, 50_000, size=(n, 6))
    # Some organic texts are common phrases (slogans, greetings): those co-occur by chance.
    common = rng.random(n) < 0.05
    words[common] = _popular(rng, 200, int(common.sum()), 2.0)[:, None] + np.arange(6)[None, :] * 1_000_000
    tags = _popular(rng, 20_000, n, 2.5)
    frame = pl.DataFrame(
        {
            "i": np.arange(start_post, start_post + n),
            "t_us": (t * 1e6).astype(np.int64),
            "account": account,
            "kind": kind,
            "target": target,
            "tags": tags,
            **{f"w{j}": words[:, j] for j in range(6)},
        }
    )
    bursts = _bursts(rng, start_post + n, start_s, span)
    organic = frame.select(
        pl.format("p{}", "i").alias("post_id"),
        pl.format("u{}", "account").alias("account_id"),
        "t_us",
        pl.concat_str([pl.format("w{}", f"w{j}") for j in range(6)], separator=" ").alias("text"),
        pl.when(pl.col("kind") == 2).then(pl.format("x{}", "target")).alias("reply_to"),
        pl.when(pl.col("kind") == 1).then(pl.format("x{}", "target")).alias("repost_of"),
        pl.when(pl.col("kind") == 3)
        .then(pl.concat_list(pl.format("https://site.example/{}", "target")))
        .otherwise(pl.lit([], dtype=pl.List(pl.String)))
        .alias("urls"),
        pl.when(pl.col("kind") == 4)
        .then(pl.concat_list(pl.format("tag{}", "tags"), pl.format("tag{}", pl.col("tags") // 7)))
        .otherwise(pl.lit([], dtype=pl.List(pl.String)))
        .alias("hashtags"),
    )
    return _as_posts(pl.concat([organic, bursts]).sort("t_us", "post_id"))


def _bursts(rng: np.random.Generator, start_post: int, start_s: float, span: float) -> pl.DataFrame:
    """Campaign bursts in ``[start_s, start_s + span)``: members doing the same thing within 30 s."""
    n_bursts = rng.poisson(BURSTS_PER_HOUR * span / 3600)
    schema = {"post_id": pl.String, "account_id": pl.String, "t_us": pl.Int64, "text": pl.String,
              "reply_to": pl.String, "repost_of": pl.String, "urls": pl.List(pl.String),
              "hashtags": pl.List(pl.String)}  # fmt: skip
    if n_bursts == 0:
        return pl.DataFrame(schema=schema)
    campaign = rng.integers(0, N_CAMPAIGNS, size=n_bursts)
    kind = rng.integers(0, len(KINDS), size=n_bursts)
    burst_t = rng.uniform(start_s, start_s + span, size=n_bursts)
    burst_id = rng.integers(0, 2**40, size=n_bursts)
    member = np.tile(np.arange(CAMPAIGN_SIZE), n_bursts)
    b = np.repeat(np.arange(n_bursts), CAMPAIGN_SIZE)
    take = rng.random(b.size) < 0.8
    b, member = b[take], member[take]
    frame = pl.DataFrame(
        {
            "i": np.arange(start_post, start_post + b.size),
            "c": campaign[b],
            "m": member,
            "kind": kind[b],
            "burst": burst_id[b],
            "t_us": ((burst_t[b] + rng.uniform(0, 30, size=b.size)) * 1e6).astype(np.int64),
        }
    )
    return frame.select(
        pl.format("q{}", "i").alias("post_id"),
        pl.format("c{}_{}", "c", "m").alias("account_id"),
        "t_us",
        pl.when(pl.col("kind") == 0)
        .then(pl.format("campaign {} message {} vote now", "c", "burst"))
        .otherwise(pl.format("own words {} {}", "i", "m"))
        .alias("text"),
        pl.when(pl.col("kind") == 2).then(pl.format("target{}", "burst")).alias("reply_to"),
        pl.when(pl.col("kind") == 1).then(pl.format("target{}", "burst")).alias("repost_of"),
        pl.when(pl.col("kind") == 3)
        .then(pl.concat_list(pl.format("https://c{}.example/{}", "c", "burst")))
        .otherwise(pl.lit([], dtype=pl.List(pl.String)))
        .alias("urls"),
        pl.when(pl.col("kind") == 4)
        .then(pl.concat_list(pl.format("push{}", "burst"), pl.format("camp{}", "c")))
        .otherwise(pl.lit([], dtype=pl.List(pl.String)))
        .alias("hashtags"),
    )


def _as_posts(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(
        "post_id",
        "account_id",
        (pl.col("t_us") + EPOCH_US).cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("created_at"),
        "text",
        pl.lit("en").alias("lang"),
        "reply_to",
        "repost_of",
        pl.lit(None, dtype=pl.String).alias("quote_of"),
        "urls",
        "hashtags",
        pl.lit([], dtype=pl.List(pl.String)).alias("mentions"),
    )


def stream(n: int, rate: float, seed: int, chunk_posts: int = 100_000) -> list[pl.DataFrame]:
    rng = np.random.default_rng(seed)
    out, made, clock = [], 0, 0.0
    while made < n:
        size = min(chunk_posts, n - made)
        part = chunk(rng, made, size, clock, rate)
        out.append(part)
        made += size
        clock += size / rate
    return out


def state_config(horizon_s: float, networks: tuple[str, ...] = STREAM_NETWORK_TYPES) -> IncrementalConfig:
    return IncrementalConfig(coaction=CoActionConfig(), networks=networks, horizon_s=horizon_s)


def feed(state: CoActionState, posts: pl.DataFrame, batch: int) -> float:
    started = time.perf_counter()
    for start in range(0, posts.height, batch):
        state.add(posts[start : start + batch])
    return time.perf_counter() - started


def throughput(args: argparse.Namespace) -> tuple[list[list[str]], list[str]]:
    """posts/s of the state (and of validation + state) on a full horizon, per batch size."""
    warm_posts = int(args.rate * args.horizon_s)
    measured_posts = args.measure_posts
    parts = stream(warm_posts + measured_posts, args.rate, seed=1)
    posts = pl.concat(parts)
    warm, measured = posts[:warm_posts], posts[warm_posts:]
    rows, notes = [], []
    full = CoActionState(state_config(args.horizon_s, args.networks))
    feed(full, warm, 10_000)
    for batch in args.batches:
        rates = []
        for _ in range(args.repeats):
            state = full.copy()
            gc.collect()
            seconds = feed(state, measured, batch)
            rates.append(measured.height / seconds)
        held = state.held_rows()
        rows.append(["state.add", f"{batch:,}", f"{measured.height:,}", median_spread(rates),
                     f"{held['actions']:,} / {held['matches']:,}", f"{state.stats.capped:,}"])  # fmt: skip
    # Validation + state: what the coordinator does per micro-batch, from the wire format.
    batch = args.batches[-1]
    messages = [
        RawMessage("posts", 0, i, None, encode_post(p))
        for i, p in enumerate(measured.with_columns(pl.col("created_at")).to_dicts())
    ]
    validator = PostValidator()
    rates = []
    for _ in range(args.repeats):
        state = full.copy()
        gc.collect()
        started = time.perf_counter()
        for start in range(0, len(messages), batch):
            state.add(validator.validate(messages[start : start + batch]).posts)
        rates.append(len(messages) / (time.perf_counter() - started))
    held = state.held_rows()
    rows.append(["validate + state.add", f"{batch:,}", f"{len(messages):,}", median_spread(rates),
                 f"{held['actions']:,} / {held['matches']:,}", f"{state.stats.capped:,}"])  # fmt: skip
    started = time.perf_counter()
    result = campaigns_from_state(state, CampaignConfig(networks=args.networks))
    graph_s = time.perf_counter() - started
    found = sum(1 for members in result.members.values() if any(m.startswith("c") for m in members))
    notes.append(
        f"Graph stage over the full horizon ({held['matches']:,} matches): {graph_s:.1f} s, "
        f"{len(result.members)} campaigns ({found} with injected accounts; {N_CAMPAIGNS} injected)."
    )
    return rows, notes


def scale_run(args: argparse.Namespace) -> tuple[list[list[str]], list[str]]:
    """Generate and add posts chunk by chunk; sample RSS and held rows."""
    process = psutil.Process()
    rng = np.random.default_rng(7)
    state = CoActionState(state_config(args.horizon_s, args.networks))
    made, clock, chunk_posts = 0, 0.0, 100_000
    samples: list[tuple[int, float, float, dict[str, int], float]] = []
    every = max(1, args.scale_posts // chunk_posts // 12)
    started = time.perf_counter()
    add_seconds = 0.0
    k = 0
    while made < args.scale_posts:
        size = min(chunk_posts, args.scale_posts - made)
        posts = chunk(rng, made, size, clock, args.rate)
        made += size
        clock += size / args.rate
        add_started = time.perf_counter()
        feed(state, posts, args.batches[-1])
        add_seconds += time.perf_counter() - add_started
        k += 1
        if k % every == 0 or made >= args.scale_posts:
            samples.append((made, clock / 3600, process.memory_info().rss / 2**20, state.held_rows(),
                            time.perf_counter() - started))  # fmt: skip
            print(f"  scale: {made:,} posts, {clock / 3600:.1f} h event time, "
                  f"RSS {samples[-1][2]:,.0f} MiB, {samples[-1][4]:.0f} s", file=sys.stderr, flush=True)  # fmt: skip
        if time.perf_counter() - started > args.scale_budget_s:
            print(f"  scale: stopped at {made:,} posts: time budget {args.scale_budget_s:.0f} s", file=sys.stderr)
            break
    rows = [
        [f"{n:,}", f"{hours:.1f}", f"{rss:,.0f}", f"{held['actions']:,}", f"{held['matches']:,}", f"{seconds:.0f}"]
        for n, hours, rss, held, seconds in samples
    ]
    total = time.perf_counter() - started
    notes = [
        f"Scale run: {made:,} posts ({clock / 3600:.1f} h of event time at {args.rate:,.0f} posts/s, horizon "
        f"{args.horizon_s / 3600:.1f} h) generated and added in {total:.0f} s; the state's share "
        f"{add_seconds:.0f} s = {made / add_seconds:,.0f} posts/s; {state.stats.late:,} late, "
        f"{state.stats.capped:,} actions over the hot-object cap, {state.stats.evicted_slices:,} slices evicted.",
    ]
    return rows, notes


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--rate", type=float, default=500.0, help="event-time posts per second (default 500)")
    parser.add_argument("--horizon-s", type=float, default=3600.0, help="state horizon (default 3600)")
    parser.add_argument("--measure-posts", type=int, default=400_000, help="posts timed after the warm-up")
    parser.add_argument("--batches", default="2000,5000,20000", help="micro-batch sizes to time")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scale-posts", type=int, default=10_000_000)
    parser.add_argument("--scale-budget-s", type=float, default=900.0, help="stop the scale run after this long")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--networks", default=",".join(STREAM_NETWORK_TYPES),
                        help=f"co-action types of the state (default {','.join(STREAM_NETWORK_TYPES)})")
    args = parser.parse_args(argv)
    args.batches = [int(b) for b in str(args.batches).split(",")]
    args.networks = tuple(n.strip() for n in str(args.networks).split(",") if n.strip())
    if args.quick:
        args.horizon_s, args.measure_posts, args.repeats = 600.0, 60_000, 1
        args.batches, args.scale_posts = [5000], 600_000
    rows, notes = throughput(args)
    text = table(
        "Streaming coordination: incremental co-action state",
        ["stage", "micro-batch", "posts timed", "posts/s median (min-max)", "held actions / matches", "capped"],
        rows,
        [
            f"Co-action types {', '.join(args.networks)} at the default windows; "
            f"a stream of {args.rate:,.0f} posts/s of event time from {N_ACCOUNTS:,} accounts with Zipf-popular "
            f"objects and {N_CAMPAIGNS} injected campaigns; horizon {args.horizon_s / 3600:.1f} h, filled before "
            f"timing ({int(args.rate * args.horizon_s):,} posts); {args.repeats} runs.",
            *notes,
        ],
    )
    if not args.skip_scale:
        scale_rows, scale_notes = scale_run(args)
        text += "\n" + table(
            "Streaming coordination: scale run (bounded memory)",
            ["posts added", "event time (h)", "RSS (MiB)", "held actions", "held matches", "elapsed (s)"],
            scale_rows,
            scale_notes,
        )
    print(text)
    if not args.quick:
        save("coordination_stream", text)
    return text


if __name__ == "__main__":
    main()
