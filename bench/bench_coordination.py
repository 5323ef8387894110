"""Chorus co-action networks side by side with QUT's coordination_network_toolkit.

Usage (the data is the development set's, never copied into the repo)::

    nice -n 10 python bench/bench_coordination.py ../shared/data/coordination/ira_en_2017-01_03.csv.gz \\
        --windows 60,3600,86400 --repeats 3 --toolkit-timeout 1200

What is timed is the network computation on both sides with the data already loaded: for Chorus
the polars functions on an in-memory frame (median of ``--repeats`` runs); for the toolkit its
``compute_*`` call on a database already filled by its ``preprocess_data`` (index building and
its text normalisation included, as they are part of computing a network there). The toolkit is
run once per network and window, in its own process group with ``--toolkit-timeout`` as the
bound; a run that hits the bound is reported as ``>T s`` and its edges are not compared. Its text
caches (normalised text, token sets) persist in the database after the first network that needs
them, which favours the toolkit slightly.

Edges are compared as sets of ``(user_1, user_2, weight)`` without self-loops: ``equal`` for the
exact types, recall and precision of the toolkit's edges for co_similar. Campaign purity is the
share of accounts in found campaigns whose campaign's majority ``label`` is their own.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import redirect_stdout
from pathlib import Path

import polars as pl

from detectors.coordination import (
    NETWORK_TYPES,
    QUT_NETWORK_NAMES,
    CoActionConfig,
    co_action_edges,
    coerce_posts,
    posts_to_qut,
)
from detectors.coordination.graph import CampaignConfig, detect_campaigns

EXACT = ("co_repost", "co_text", "co_reply", "co_link")

_TOOLKIT_CHILD = """
import io, sys, time, json
from contextlib import redirect_stdout
from coordination_network_toolkit import compute_networks as c
from coordination_network_toolkit.similarity import MinDocSizeSimilarity
db, network = sys.argv[1], sys.argv[2]
window, threshold, threads = int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
fn = {"co_retweet": c.compute_co_retweet_parallel, "co_tweet": c.compute_co_tweet_network,
      "co_reply": c.compute_co_reply_network, "co_link": c.compute_co_link_network,
      "co_similar_tweet": c.compute_co_similar_tweet}[network]
kwargs = {"n_threads": threads}
if network == "co_similar_tweet":
    kwargs.update(similarity_threshold=threshold, similarity_function=MinDocSizeSimilarity(1))
t = time.perf_counter()
with redirect_stdout(io.StringIO()):
    fn(db, window, **kwargs)
print(json.dumps({"seconds": time.perf_counter() - t}))
"""


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    python = platform.python_version()
    return f"{platform.node()} | {model} | {os.cpu_count()} cores | Python {python} | polars {pl.__version__}"


def load_toolkit_db(posts: pl.DataFrame, db: Path) -> None:
    """Fill the toolkit's database via its Python API, urls split properly (no phantom link)."""
    from coordination_network_toolkit import preprocess

    qut = posts_to_qut(posts)
    rows = ((*r[:-1], r[-1].split()) for r in qut.iter_rows())
    with redirect_stdout(io.StringIO()):
        preprocess.preprocess_data(str(db), rows)


def toolkit_edges(db: Path, network: str) -> set[tuple[str, str, int]]:
    table = {
        "co_retweet": "co_retweet_network",
        "co_tweet": "co_tweet_network",
        "co_reply": "co_reply_network",
        "co_link": "co_link_network",
        "co_similar_tweet": "co_similar_tweet_network",
    }[network]
    with sqlite3.connect(db) as conn:
        return {(str(a), str(b), int(w)) for a, b, w in conn.execute(f"select * from {table} where user_1 != user_2")}


def run_toolkit(db: Path, network: str, window: int, threshold: float, threads: int, timeout: float) -> float | None:
    """Seconds the toolkit took, or None past ``timeout`` (its whole process group is stopped)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _TOOLKIT_CHILD, str(db), network, str(window), str(threshold), str(threads)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return None
    if proc.returncode != 0:
        raise RuntimeError(f"toolkit {network} at {window}s failed with exit code {proc.returncode}")
    return float(json.loads(out.strip().splitlines()[-1])["seconds"])


def chorus_run(posts: pl.DataFrame, network: str, window: int, threshold: float, repeats: int):
    config = CoActionConfig(windows_s={network: window}, similarity_threshold=threshold)
    times, edges = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        edges = co_action_edges(posts, network, config)
        times.append(time.perf_counter() - start)
    assert edges is not None
    return statistics.median(times), set(edges.select("user_1", "user_2", "weight").iter_rows())


def purity(posts: pl.DataFrame, window: int) -> tuple[float, int, int, float]:
    """(purity, campaigns, accounts in campaigns, seconds) of the batch campaign stage."""
    labels = dict(posts.select("account_id", "label").unique("account_id").iter_rows())
    config = CampaignConfig(coaction=CoActionConfig(windows_s=dict.fromkeys(NETWORK_TYPES, window)))
    start = time.perf_counter()
    result = detect_campaigns(posts, config)
    seconds = time.perf_counter() - start
    right = total = 0
    for members in result.members.values():
        counts = Counter(labels.get(a) for a in members)
        right += counts.most_common(1)[0][1]
        total += len(members)
    return (right / total if total else float("nan")), len(result.members), total, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="ira_en_2017-01_03.csv.gz (see shared/data/README.md)")
    parser.add_argument("--windows", default="60,3600,86400", help="comma-separated seconds")
    parser.add_argument("--networks", default="co_repost,co_text,co_reply,co_link,co_similar")
    parser.add_argument("--repeats", type=int, default=3, help="Chorus runs per cell (median)")
    parser.add_argument("--threshold", type=float, default=0.8, help="co_similar Jaccard threshold")
    parser.add_argument("--threads", type=int, default=2, help="toolkit worker processes")
    parser.add_argument("--toolkit-timeout", type=float, default=1200.0, help="seconds per toolkit run")
    parser.add_argument("--skip-toolkit", default="", help="comma-separated NETWORK@WINDOW to not run in the toolkit")
    parser.add_argument("--no-purity", action="store_true", help="skip the campaign purity run")
    args = parser.parse_args(argv)

    windows = [int(w) for w in args.windows.split(",")]
    networks = args.networks.split(",")
    skip = set(filter(None, args.skip_toolkit.split(",")))
    posts = coerce_posts(pl.read_csv(args.data, infer_schema_length=0))
    print(f"# Chorus vs coordination_network_toolkit, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"# machine: {machine()}")
    print(f"# data: {args.data.name}, {posts.height} posts, {posts['account_id'].n_unique()} accounts")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "toolkit.db"
        load_toolkit_db(posts, db)
        for window in windows:
            for network in networks:
                qut_name = QUT_NETWORK_NAMES[network]
                ours_s, ours = chorus_run(posts, network, window, args.threshold, args.repeats)
                theirs_s = None
                if f"{network}@{window}" not in skip:
                    theirs_s = run_toolkit(db, qut_name, window, args.threshold, args.threads, args.toolkit_timeout)
                if theirs_s is None:
                    verdict = "skipped" if f"{network}@{window}" in skip else f"toolkit >{args.toolkit_timeout:.0f}s"
                    rows.append((window, network, len(ours), "", ours_s, theirs_s, verdict))
                else:
                    theirs = toolkit_edges(db, qut_name)
                    if network in EXACT:
                        verdict = "equal" if ours == theirs else f"DIFFER ({len(ours ^ theirs)} edges)"
                    else:
                        hit = len(ours & theirs)
                        recall = hit / len(theirs) if theirs else 1.0
                        precision = hit / len(ours) if ours else 1.0
                        verdict = f"recall {recall:.4f} precision {precision:.4f}"
                    rows.append((window, network, len(ours), len(theirs), ours_s, theirs_s, verdict))
                r = rows[-1]
                print(f"  done {network} @ {window}s: chorus {r[4]:.2f}s, toolkit {r[5]}", file=sys.stderr, flush=True)
    print()
    print("| window | network | chorus edges | toolkit edges | chorus s (median) | toolkit s | speed-up | edges |")
    print("|---:|---|---:|---:|---:|---:|---:|---|")
    for window, network, n_ours, n_theirs, ours_s, theirs_s, verdict in rows:
        qut = f"{theirs_s:.2f}" if theirs_s is not None else "-"
        speed = f"{theirs_s / ours_s:.0f}x" if theirs_s is not None else "-"
        print(f"| {window} | {network} | {n_ours} | {n_theirs} | {ours_s:.2f} | {qut} | {speed} | {verdict} |")
    if not args.no_purity:
        print()
        print("| window | campaigns | accounts in campaigns | purity vs label | seconds |")
        print("|---:|---:|---:|---:|---:|")
        for window in windows:
            p, n, accounts, seconds = purity(posts, window)
            print(f"| {window} | {n} | {accounts} | {p:.3f} | {seconds:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
