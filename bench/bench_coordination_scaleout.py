"""The scale-out coordination path, stage by stage: rekey -> M coordination workers -> one graph stage.

Usage::

    python bench/bench_coordination_scaleout.py           # the table in bench/results/
    python bench/bench_coordination_scaleout.py --quick   # a smoke test

The same stream as ``bench_coordination_stream.py`` (Zipf-popular objects, injected campaigns,
``--rate`` posts per second of event time) goes through the three stages of the scale-out path in
one process, with the wire formats in between but without a broker (the broker's share is measured
by ``bench_pipeline.py``; here it is what each stage costs per post and how many bytes it puts on
its topic):

1. **rekey** (``chorus rekey``): posts -> one action per (post, shared object), routed by object
   (``object_actions`` + ``encode_actions``);
2. **coordination workers** (``chorus coordinator --input actions --emit-edges``): the actions of
   each route go to worker ``hash(route) % M``, as Kafka's partitioner sends equal keys to one
   partition; each worker decodes its actions, adds them to its own ``CoActionState`` and encodes
   what changed for the edges topic (``encode_edges``). The workers run one after the other here;
   deployed, they run in parallel, so the path's capacity is the per-worker rate times M (as long
   as the rekey and graph stages keep up);
3. **graph stage** (``chorus graph-stage``): decodes the edges messages into an
   ``ObjectMatchLedger`` (``decode_edges`` + ``apply``), then runs one graph stage over the full
   ledger (``campaigns_from_state``).

The check: the ledger's edges equal those of one ``CoActionState`` fed every post, and so do the
campaigns. ``--workers`` sets M.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_coordination_stream import stream
from bench.common import save, table
from detectors.coordination.coaction import CoActionConfig
from detectors.coordination.graph import CampaignConfig
from detectors.coordination.incremental import (
    STREAM_NETWORK_TYPES,
    CoActionState,
    IncrementalConfig,
    ObjectMatchLedger,
    campaigns_from_state,
)
from stream.coordination.graph_stage import decode_edges, encode_edges
from stream.coordination.rekey import decode_actions, encode_actions, object_actions


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}" if seconds > 0 else "-"


def run(args: argparse.Namespace) -> tuple[list[list[str]], list[str], int]:
    posts = pl.concat(stream(args.posts, args.rate, seed=1))
    config = IncrementalConfig(coaction=CoActionConfig(), networks=STREAM_NETWORK_TYPES, horizon_s=args.horizon_s)
    batches = [posts[s : s + args.batch] for s in range(0, posts.height, args.batch)]

    # 1. rekey: one action per (post, object), routed by object.
    started = time.perf_counter()
    messages = [m for batch in batches for m in encode_actions(object_actions(batch, STREAM_NETWORK_TYPES))]
    rekey_s = time.perf_counter() - started
    action_bytes = sum(len(k) + len(v) for k, v in messages)

    # 2. M coordination workers, each fed its routes in arrival order, micro-batch by micro-batch.
    routes = pl.Series([k for k, _ in messages]).hash(1) % args.workers
    per_worker = [[messages[i][1] for i in routes.arg_true()] for routes in (routes == w for w in range(args.workers))]
    edge_messages: list[bytes] = []
    worker_s, worker_actions = [], []
    for w, values in enumerate(per_worker):
        gc.collect()
        state = CoActionState(config)
        started = time.perf_counter()
        for start in range(0, len(values), args.batch):
            actions, _ = decode_actions(values[start : start + args.batch])
            delta = state.add_actions(actions)
            edge_messages += encode_edges(delta.object_matches, delta.actions, source=f"worker-{w}")
        worker_s.append(time.perf_counter() - started)
        worker_actions.append(len(values))
    edge_bytes = sum(len(v) for v in edge_messages)

    # 3. The graph stage: the ledger from the edges topic, then one graph run over it.
    gc.collect()
    ledger = ObjectMatchLedger(config)
    started = time.perf_counter()
    for start in range(0, len(edge_messages), 50):
        rows, acts, _, bad = decode_edges(edge_messages[start : start + 50])
        assert not bad
        ledger.apply(rows, acts)
    ledger_s = time.perf_counter() - started
    campaign_config = CampaignConfig(networks=STREAM_NETWORK_TYPES)
    started = time.perf_counter()
    scaled = campaigns_from_state(ledger, campaign_config)
    graph_s = time.perf_counter() - started

    # The reference: one state over every post.
    single = CoActionState(config)
    started = time.perf_counter()
    for batch in batches:
        single.add(batch)
    single_s = time.perf_counter() - started
    reference = campaigns_from_state(single, campaign_config)
    same_edges = all(ledger.edges([n])[n].equals(single.edges([n])[n]) for n in STREAM_NETWORK_TYPES)
    same_campaigns = sorted(map(sorted, scaled.members.values())) == sorted(map(sorted, reference.members.values()))

    n = posts.height
    rows = [
        ["rekey (posts -> actions)", f"{n:,} posts", _rate(n, rekey_s), f"{len(messages):,} messages, "
         f"{action_bytes / n:,.0f} B/post"],
        *[
            [f"coordination worker {w + 1} of {args.workers}", f"{worker_actions[w]:,} actions",
             _rate(worker_actions[w], worker_s[w]) + " actions/s", ""]
            for w in range(args.workers)
        ],
        ["coordination workers, all", f"{n:,} posts", _rate(n, sum(worker_s)) + " (in series)",
         f"{len(edge_messages):,} messages, {edge_bytes / n:,.0f} B/post"],
        ["graph stage: edges -> ledger", f"{len(edge_messages):,} messages", _rate(n, ledger_s), ""],
        ["graph stage: one run over the ledger", f"{ledger.held_rows()['matches']:,} matches",
         f"{graph_s:.1f} s per run", f"{len(scaled.members)} campaigns"],
        ["one coordinator (reference)", f"{n:,} posts", _rate(n, single_s), ""],
    ]  # fmt: skip
    notes = [
        f"Same result as one coordinator over every post: edges {'equal' if same_edges else 'DIFFERENT'}, "
        f"campaigns {'equal' if same_campaigns else 'DIFFERENT'} ({len(reference.members)}).",
        f"Per-post rates (posts/s) unless said; a worker's rate is per action it receives "
        f"({len(messages) / n:.2f} actions per post on average).",
    ]
    return rows, notes, n


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--posts", type=int, default=600_000, help="posts through the path (default 600,000)")
    parser.add_argument("--rate", type=float, default=500.0, help="event-time posts per second (default 500)")
    parser.add_argument("--horizon-s", type=float, default=3600.0, help="state and ledger horizon (default 3600)")
    parser.add_argument("--batch", type=int, default=20_000, help="micro-batch size of every stage")
    parser.add_argument("--workers", type=int, default=2, help="coordination workers M (default 2)")
    args = parser.parse_args(argv)
    if args.quick:
        args.posts, args.batch = 60_000, 5_000
    rows, notes, n = run(args)
    text = table(
        "Streaming coordination: the scale-out path (rekey -> coordination workers -> graph stage)",
        ["stage", "input", "rate", "output on its topic"],
        rows,
        [
            f"{n:,} posts at {args.rate:,.0f} posts/s of event time ({n / args.rate / 60:.0f} min), "
            f"the five stream types, horizon {args.horizon_s / 3600:.1f} h, micro-batches of {args.batch:,}, "
            f"{args.workers} coordination workers; one process, wire formats but no broker; one run.",
            *notes,
        ],
    )
    print(text)
    if not args.quick:
        save("coordination_scaleout", text)
    return text


if __name__ == "__main__":
    main()
