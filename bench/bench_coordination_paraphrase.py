"""co_paraphrase in the stream: throughput of the incremental state with embeddings, and what it costs.

Usage::

    python bench/bench_coordination_paraphrase.py           # the table in bench/results/
    python bench/bench_coordination_paraphrase.py --quick   # a smoke test

Posts come from the streaming benchmark's generator (``bench_coordination_stream.chunk``: Zipf-
popular objects, injected campaigns) with a sentence embedding each (``--dim`` floats, 384 as
all-MiniLM-L6-v2): a post whose text occurs more than once in its chunk gets that text's vector
(a common organic phrase: identical texts, identical vectors, one object), and a campaign member's
post its campaign message's vector plus noise (each member rewords: copies at cosine ~0.95, all
distinct vectors); every other post gets a random vector (cosine ~0 with everything). Real
embeddings cluster more than random ones, so this is the index's favourable case for chance
candidates; the campaign paraphrases are its real work.

What is timed, on a horizon filled before timing (``CoActionState.add``, micro-batches in memory):

* the five default stream types alone, and the same plus ``co_paraphrase``: what switching the
  paraphrase network on costs;
* **validate + state** with ``co_paraphrase``: from the embedded-posts wire format (the workers'
  ``EmbeddedPostV1``, embedding as float32 bytes) through ``PostValidator(embeddings=True)``, as a
  coordinator with ``input = "embedded"`` does per micro-batch;
* the bytes per post on the embedded-posts topic, and the vectors and band rows the state holds.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import msgspec
import numpy as np
import polars as pl
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_coordination_stream import stream
from bench.common import median_spread, save, table
from detectors.coordination.coaction import CoActionConfig
from detectors.coordination.incremental import STREAM_NETWORK_TYPES, CoActionState, IncrementalConfig
from stream.kafka.messages import EmbeddedPostV1, PostValidator, RawMessage, encode_embedding

#: Noise per dimension that puts two copies of one vector at cosine ~0.95 in 384 dimensions.
PARAPHRASE_NOISE = 0.0115
_TABLE = 16_384


def with_embeddings(posts: pl.DataFrame, dim: int, seed: int) -> pl.DataFrame:
    """``posts`` plus an ``embedding`` column; see the module docstring."""
    rng = np.random.default_rng(seed)
    base_table = np.random.default_rng(12345).standard_normal((_TABLE, dim)).astype(np.float32) / np.sqrt(dim)
    key = posts.select(pl.col("text").str.to_lowercase().alias("k"))
    repeated = key.select(pl.col("k").is_duplicated()).to_series().to_numpy()
    campaign = key.select(pl.col("k").str.starts_with("campaign ")).to_series().to_numpy()
    slot = (key.select(pl.col("k").hash(7)).to_series().to_numpy() % _TABLE).astype(np.int64)
    vectors = rng.standard_normal((posts.height, dim)).astype(np.float32) / np.float32(np.sqrt(dim))
    # The same text is the same vector (the encoder is deterministic); a campaign's members reword.
    vectors[repeated] = base_table[slot[repeated]]
    vectors[campaign] += PARAPHRASE_NOISE * rng.standard_normal((int(campaign.sum()), dim)).astype(np.float32)
    return posts.with_columns(embedding=pl.Series(vectors).cast(pl.List(pl.Float32)))


def feed(state: CoActionState, posts: pl.DataFrame, batch: int) -> float:
    started = time.perf_counter()
    for start in range(0, posts.height, batch):
        state.add(posts[start : start + batch])
    return time.perf_counter() - started


def wire_messages(posts: pl.DataFrame) -> list[RawMessage]:
    """The posts as workers republish them on the embedded-posts topic."""
    vectors = np.array(posts.get_column("embedding").to_list(), dtype=np.float32)
    out = []
    for i, row in enumerate(posts.drop("embedding").to_dicts()):
        row["urls"], row["hashtags"], row["mentions"] = row["urls"] or [], row["hashtags"] or [], []
        message = EmbeddedPostV1(**row, embedding=encode_embedding(vectors[i]), embedding_model="bench")
        out.append(RawMessage("embedded", 0, i, None, msgspec.json.encode(message)))
    return out


def run(args: argparse.Namespace) -> tuple[list[list[str]], list[str]]:
    warm_posts = int(args.rate * args.horizon_s)
    posts = with_embeddings(pl.concat(stream(warm_posts + args.measure_posts, args.rate, seed=1)), args.dim, seed=2)
    warm, measured = posts[:warm_posts], posts[warm_posts:]
    configurations = {
        "5 stream types": STREAM_NETWORK_TYPES,
        "5 stream types + co_paraphrase": (*STREAM_NETWORK_TYPES, "co_paraphrase"),
    }
    rows, notes = [], []
    process = psutil.Process()
    for label, networks in configurations.items():
        config = IncrementalConfig(coaction=CoActionConfig(), networks=networks, horizon_s=args.horizon_s)
        full = CoActionState(config)
        feed(full, warm, args.batch)
        rates = []
        for _ in range(args.repeats):
            state = full.copy()
            gc.collect()
            rates.append(measured.height / feed(state, measured, args.batch))
        held = state.held_rows()
        vectors = held.get("paraphrase_vectors")
        rows.append([label, "state.add", f"{measured.height:,}", median_spread(rates),
                     f"{vectors:,}" if vectors is not None else "-",
                     f"{held['paraphrase_bands']:,}" if vectors is not None else "-",
                     f"{process.memory_info().rss / 2**20:,.0f}"])  # fmt: skip
        if "co_paraphrase" in networks:
            edges = state.edges(["co_paraphrase"])["co_paraphrase"]
            notes.append(f"{label}: {edges.height:,} co_paraphrase edges in the horizon "
                         f"({state.stats.capped_bands:,} band entries over the cap).")  # fmt: skip
        del full, state
        gc.collect()

    networks = configurations["5 stream types + co_paraphrase"]
    config = IncrementalConfig(coaction=CoActionConfig(), networks=networks, horizon_s=args.horizon_s)
    full = CoActionState(config)
    feed(full, warm, args.batch)
    messages = wire_messages(measured)
    validator = PostValidator(embeddings=True)
    rates = []
    for _ in range(args.repeats):
        state = full.copy()
        gc.collect()
        started = time.perf_counter()
        for start in range(0, len(messages), args.batch):
            state.add(validator.validate(messages[start : start + args.batch]).posts)
        rates.append(len(messages) / (time.perf_counter() - started))
    held = state.held_rows()
    rows.append(["5 stream types + co_paraphrase", "validate + state.add", f"{len(messages):,}", median_spread(rates),
                 f"{held['paraphrase_vectors']:,}", f"{held['paraphrase_bands']:,}",
                 f"{process.memory_info().rss / 2**20:,.0f}"])  # fmt: skip
    size = np.mean([len(m.value or b"") for m in messages])
    notes.append(f"Embedded-posts topic: {size:,.0f} bytes per post on average ({args.dim} float32 as base64 "
                 "plus the post's fields).")  # fmt: skip
    return rows, notes


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--rate", type=float, default=500.0, help="event-time posts per second (default 500)")
    parser.add_argument("--horizon-s", type=float, default=600.0, help="state horizon (default 600)")
    parser.add_argument("--measure-posts", type=int, default=100_000, help="posts timed after the warm-up")
    parser.add_argument("--batch", type=int, default=5000, help="micro-batch size (default 5000)")
    parser.add_argument("--dim", type=int, default=384, help="embedding length (default 384, MiniLM)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.quick:
        args.horizon_s, args.measure_posts, args.repeats = 300.0, 20_000, 1
    rows, notes = run(args)
    text = table(
        "Streaming coordination: co_paraphrase over the workers' embeddings",
        ["co-action types", "stage", "posts timed", "posts/s median (min-max)", "held vectors", "held band rows",
         "RSS (MiB)"],
        rows,
        [
            f"{args.rate:,.0f} posts/s of event time, each with a {args.dim}-float embedding; co_paraphrase at "
            f"cosine {CoActionConfig().paraphrase_threshold} and a {CoActionConfig().window_s('co_paraphrase'):.0f} s "
            f"window; horizon {args.horizon_s / 60:.0f} min, filled before timing "
            f"({int(args.rate * args.horizon_s):,} posts); micro-batches of {args.batch:,}; {args.repeats} runs.",
            *notes,
        ],
    )
    print(text)
    if not args.quick:
        save("coordination_paraphrase", text)
    return text


if __name__ == "__main__":
    main()
