"""Chorus co-action networks side by side with QUT's coordination_network_toolkit.

Usage (the data is the development set's, never copied into the repo)::

    nice -n 10 python bench/bench_coordination.py ../shared/data/coordination/ira_en_2017-01_03.csv.gz \\
        --windows 60,3600,86400 --repeats 5 --toolkit-timeout 1200 --toolkit-cache /tmp/toolkit.json
    python bench/bench_coordination.py --quick     # 60 s window only, one Chorus run, no purity (a smoke test)
    python bench/bench_coordination.py --paraphrase-only   # co_paraphrase's index alone (synthetic, ~2 min)

Without a data argument it reads ``DEFAULT_DATA`` (the shared development folder beside the repo).

What is timed, with the data already loaded on both sides:

* **Toolkit**: its ``compute_*`` call on a database already filled by its ``preprocess_data``
  (which stores the posts and splits urls; no text work). The call builds its indexes and, for
  co_tweet and co_similar_tweet, normalises or tokenises every text the first time one is needed
  and caches the result in the database: the bench runs windows in increasing order, so the
  first window's co_tweet/co_similar time includes that derivation and later windows' do not.
  One run per network and window, in its own process group, bounded by ``--toolkit-timeout``
  (a run past it is reported as ``>T s`` and its edges are not compared). Toolkit runs do not
  depend on Chorus's code, so ``--toolkit-cache FILE`` keeps their seconds and edges in a JSON
  file and reuses them (delete the file to measure again).
* **Chorus, network step** (the like-for-like figure): ``co_action_edges(prepared, ...)`` on the
  result of ``prepare_posts`` for that type, i.e. the as-of matching, the similarity index for
  co_similar, and the edges with their evidence. ``prepare_posts`` is what the toolkit does at
  load or caches on first use: first row per post id, integer times and account ids, normalised
  texts, stripped urls and token sets as integer object codes. It is computed once per type and
  reused for every window, as a researcher running several windows would.
* **Chorus, end to end**: ``prepare_posts`` (median of ``--repeats`` runs) plus the network step,
  i.e. what one ``co_action_edges(posts, ...)`` call on a raw frame costs.

The goal (issue 6) is judged on the network step against the toolkit's call: 10x at every window
for the exact types, 50x at one day for co_similar with recall >= 0.95.

Edges are compared as sets of ``(user_1, user_2, weight)`` without self-loops: ``equal`` for the
exact types, recall and precision of the toolkit's edges for co_similar. Campaign purity is the
share of accounts in found campaigns whose campaign's majority ``label`` is their own.

co_paraphrase has no toolkit counterpart and the IRA data has no embeddings, so its table compares
:func:`~detectors.coordination.paraphrase.similar_vector_pairs` (the hybrid: sparse time slices
compared exactly, dense ones through SimHash LSH), the same with the index everywhere
(``lsh_cost=0``) and blocked brute force
(:func:`~detectors.coordination.paraphrase.exact_similar_pairs`) on synthetic MiniLM-like
embeddings: time and recall (``--paraphrase-cases``, ``--no-paraphrase``).
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

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import median_spread, save, table
from detectors.coordination import (
    NETWORK_TYPES,
    QUT_NETWORK_NAMES,
    CoActionConfig,
    co_action_edges,
    coerce_posts,
    posts_to_qut,
)
from detectors.coordination.coaction import prepare_posts
from detectors.coordination.graph import CampaignConfig, detect_campaigns
from detectors.coordination.paraphrase import (
    LSH_COST_PER_VECTOR,
    choose_bands,
    exact_similar_pairs,
    similar_vector_pairs,
    slice_occurrences,
    slice_plan,
)

#: The development data set (IRA tweets, January-March 2017), never copied into the repo.
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/data/coordination/ira_en_2017-01_03.csv.gz"

EXACT = ("co_repost", "co_text", "co_reply", "co_link")
#: co_paraphrase's default cosine (CoActionConfig.paraphrase_threshold).
PARAPHRASE_THRESHOLD = 0.9

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


def chorus_prepare(posts: pl.DataFrame, network: str, repeats: int):
    """``(seconds of each run, prepared posts)`` of ``prepare_posts`` for one type."""
    times, prepared = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        prepared = prepare_posts(posts, [network])
        times.append(time.perf_counter() - start)
    assert prepared is not None
    return times, prepared


def chorus_run(prepared, network: str, window: int, threshold: float, repeats: int):
    """``(seconds of each network step, edge set)`` on prepared posts."""
    config = CoActionConfig(windows_s={network: window}, similarity_threshold=threshold)
    times, edges = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        edges = co_action_edges(prepared, network, config)
        times.append(time.perf_counter() - start)
    assert edges is not None
    return times, set(edges.select("user_1", "user_2", "weight").iter_rows())


class ToolkitCache:
    """Toolkit seconds and edges per ``network@window``, kept in a JSON file when one is named."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.runs: dict[str, dict] = {}
        if path is not None and path.is_file():
            self.runs = json.loads(path.read_text())["runs"]

    def get(self, key: str) -> tuple[float, set[tuple[str, str, int]]] | None:
        run = self.runs.get(key)
        return None if run is None else (run["seconds"], {(a, b, int(w)) for a, b, w in run["edges"]})

    def put(self, key: str, seconds: float, edges: set[tuple[str, str, int]]) -> None:
        self.runs[key] = {
            "seconds": seconds,
            "edges": sorted([list(e) for e in edges]),
            "measured": f"{dt.date.today()}",
        }
        if self.path is not None:
            self.path.write_text(json.dumps({"runs": self.runs}))


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


def synthetic_embeddings(n: int, *, span_s: int = 86_400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unit vectors shaped like MiniLM's, with times in seconds over ``span_s``.

    Organic posts sit around one of ``n // 500`` topics (cosine ~0.4 within a topic, ~0 across),
    so the index meets same-topic pairs, as on a real platform. A tenth of the posts are planted
    paraphrase clusters of 2-20 posts within two minutes whose member pairs lie at cosine 0.85-0.99,
    straddling the 0.9 threshold (a pair's cosine is the geometric mean of its members' ``cosines``).
    """
    rng = np.random.default_rng(seed)
    dim = 384

    def unit_rows(rows: np.ndarray) -> np.ndarray:
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    topics = unit_rows(rng.standard_normal((max(n // 500, 2), dim), dtype=np.float32))
    vectors = unit_rows(rng.standard_normal((n, dim), dtype=np.float32)) * np.float32(1.2247)  # 1/(1+1.5)=0.4
    vectors += topics[rng.integers(0, len(topics), n)]
    times = rng.integers(0, span_s, n)
    sizes = rng.integers(2, 21, n // 10 // 11)
    members = rng.permutation(n)[: sizes.sum()]
    cluster = np.repeat(np.arange(len(sizes)), sizes)
    messages = vectors[members[np.cumsum(sizes) - sizes]]  # each cluster's first member's vector
    cosines = rng.uniform(0.85, 0.99, len(members)).astype(np.float32)
    sigma = np.sqrt((1 / cosines - 1) / dim)[:, None]
    noise = rng.standard_normal((len(members), dim), dtype=np.float32) * sigma
    vectors[members] = unit_rows(messages[cluster]) + noise
    times[members] = (times[members[np.cumsum(sizes) - sizes]])[cluster] + rng.integers(0, 120, len(members))
    return unit_rows(vectors).astype(np.float32), times


def paraphrase_run(n: int, window: int, repeats: int, seed: int = 0) -> list[str]:
    """One table row: the hybrid index, the index alone and blocked brute force on ``n`` synthetic posts."""
    vectors, times = synthetic_embeddings(n, seed=seed)
    slices = pl.DataFrame({"vector_id": np.arange(n, dtype=np.uint32), "slice": times // window})
    plan = slice_plan(slice_occurrences(slices, n))

    def timed(lsh_cost: float) -> tuple[list[float], set[tuple[int, int]]]:
        seconds, found = [], set()
        for _ in range(repeats):
            start = time.perf_counter()
            pairs = similar_vector_pairs(vectors, PARAPHRASE_THRESHOLD, slices=slices, lsh_cost=lsh_cost)
            left, right = pairs["vector_id"].to_numpy(), pairs["match_vector_id"].to_numpy()
            keep = (left < right) & (np.abs(times[left] - times[right]) <= window)
            seconds.append(time.perf_counter() - start)
            found = set(zip(left[keep].tolist(), right[keep].tolist(), strict=True))
        return seconds, found

    hybrid_times, hybrid = timed(LSH_COST_PER_VECTOR)
    lsh_times, lsh = timed(0.0)
    start = time.perf_counter()
    exact = exact_similar_pairs(vectors, PARAPHRASE_THRESHOLD, times=times, window=window)
    exact_s = time.perf_counter() - start
    truth = {(a, b) for a, b in exact.select("vector_id", "match_vector_id").iter_rows() if a < b}
    recall = lambda found: len(found & truth) / len(truth) if truth else 1.0  # noqa: E731
    posts = pl.DataFrame(
        {
            "post_id": np.arange(n).astype(str),
            "account_id": (np.arange(n) % (n // 4)).astype(str),
            "created_at": pl.from_epoch(pl.Series(times + 1_700_000_000), time_unit="s"),
            "embedding": vectors,
        }
    )
    posts = coerce_posts(posts)
    start = time.perf_counter()
    edges = co_action_edges(posts, "co_paraphrase", CoActionConfig(windows_s={"co_paraphrase": window}))
    network_s = time.perf_counter() - start
    hybrid_s, lsh_s = statistics.median(hybrid_times), statistics.median(lsh_times)
    print(f"  done co_paraphrase {n} posts @ {window}s: hybrid {hybrid_s:.2f}s, LSH {lsh_s:.2f}s, exact {exact_s:.2f}s",
          file=sys.stderr)  # fmt: skip
    return [
        f"{n:,}",
        f"{window:,}",
        f"{len(truth):,}",
        f"{int(plan['exact'].sum()):,} of {plan.height:,}",
        median_spread(hybrid_times),
        median_spread(lsh_times),
        f"{exact_s:.2f}",
        f"{exact_s / hybrid_s:.1f}x / {lsh_s / hybrid_s:.1f}x",
        f"{recall(hybrid):.4f} / {recall(lsh):.4f}",
        f"{len(hybrid - truth)} / {len(lsh - truth)}",
        f"{network_s:.2f} ({edges.height:,} edges)",
    ]


def paraphrase_table(cases: list[tuple[int, int]], repeats: int) -> str:
    """co_paraphrase's index against brute force on synthetic embeddings (no data set needed)."""
    bands, rows = choose_bands(PARAPHRASE_THRESHOLD)
    return table(
        "Coordination, batch: co_paraphrase, hybrid (exact sparse slices + SimHash LSH) vs LSH alone vs exact",
        ["posts", "window (s)", "pairs (exact)", "slices compared exactly", "hybrid s median (min-max)",
         "LSH only s median (min-max)", "exact s", "hybrid speed-up vs exact / vs LSH only",
         "recall hybrid / LSH only", "false pairs hybrid / LSH only", "co_paraphrase network s"],
        [paraphrase_run(n, window, repeats) for n, window in cases],
        [f"Synthetic 384-d unit vectors shaped like MiniLM embeddings (topics at cosine ~0.4, a tenth of the "
         f"posts in planted paraphrase clusters straddling the threshold) over one day; pairs with cosine >= "
         f"{PARAPHRASE_THRESHOLD} within ±window. Hybrid: `similar_vector_pairs` with window-wide time slices; "
         f"a slice whose vectors would each be compared with at most {LSH_COST_PER_VECTOR:,.0f} others (its own "
         f"half and the next slice) is compared exactly (blocked numpy), a denser one goes through the index "
         f"({bands} bands x {rows} bits, exact cosine verification). LSH only: the same with `lsh_cost=0`. "
         f"{repeats} run(s) each; exact: `exact_similar_pairs`, blocked numpy matrix products over the rows "
         "within the window, one run. Recall: share of the exact pairs found; false pairs: pairs not in the "
         "exact set. Network: `co_action_edges(..., \"co_paraphrase\")` end to end (one run, posts frame with "
         "an `embedding` column, 4 posts per account). OpenBLAS threads: "
         f"{os.environ.get('OPENBLAS_NUM_THREADS', 'default')} (on a loaded machine, threaded BLAS slows the "
         "many small matrix products of the exact parts several-fold)."],
    )  # fmt: skip


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "data",
        type=Path,
        nargs="?",
        default=DEFAULT_DATA,
        help="ira_en_2017-01_03.csv.gz (see shared/data/README.md; default: %(default)s)",
    )
    parser.add_argument("--quick", action="store_true", help="60 s window, one Chorus run, no purity (smoke test)")
    parser.add_argument("--windows", default="60,3600,86400", help="comma-separated seconds")
    parser.add_argument("--networks", default="co_repost,co_text,co_reply,co_link,co_similar")
    parser.add_argument("--repeats", type=int, default=3, help="Chorus runs per cell (median)")
    parser.add_argument("--threshold", type=float, default=0.8, help="co_similar Jaccard threshold")
    parser.add_argument("--threads", type=int, default=2, help="toolkit worker processes")
    parser.add_argument("--toolkit-timeout", type=float, default=1200.0, help="seconds per toolkit run")
    parser.add_argument("--skip-toolkit", default="", help="comma-separated NETWORK@WINDOW to not run in the toolkit")
    parser.add_argument(
        "--toolkit-cache",
        type=Path,
        default=None,
        help="JSON file of toolkit seconds and edges per NETWORK@WINDOW: reused, filled when missing",
    )
    parser.add_argument("--no-purity", action="store_true", help="skip the campaign purity run")
    parser.add_argument("--no-save", action="store_true", help="print only, keep bench/results as it is")
    parser.add_argument(
        "--paraphrase-cases",
        default="100000@300,50000@86400",
        help="co_paraphrase table: comma-separated POSTS@WINDOW_S (synthetic embeddings)",
    )
    parser.add_argument("--paraphrase-repeats", type=int, default=2, help="index runs per co_paraphrase case")
    parser.add_argument("--no-paraphrase", action="store_true", help="skip the co_paraphrase table")
    parser.add_argument("--paraphrase-only", action="store_true", help="only the co_paraphrase table (no data)")
    args = parser.parse_args(argv)
    if args.quick:
        args.windows, args.repeats, args.no_purity = "60", 1, True
        args.paraphrase_cases, args.paraphrase_repeats = "20000@300,10000@86400", 1
    paraphrase_cases = [(int(c.split("@")[0]), int(c.split("@")[1])) for c in args.paraphrase_cases.split(",")]
    if args.paraphrase_only:
        text = paraphrase_table(paraphrase_cases, args.paraphrase_repeats)
        print(text)
        return text
    if not args.data.is_file():
        raise FileNotFoundError(f"{args.data}: no such file; pass the IRA development file (shared/data/coordination)")

    windows = [int(w) for w in args.windows.split(",")]
    networks = args.networks.split(",")
    skip = set(filter(None, args.skip_toolkit.split(",")))
    posts = coerce_posts(pl.read_csv(args.data, infer_schema_length=0))
    print(f"# Chorus vs coordination_network_toolkit, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"# machine: {machine()}")
    print(f"# data: {args.data.name}, {posts.height} posts, {posts['account_id'].n_unique()} accounts")
    rows = []
    cache = ToolkitCache(args.toolkit_cache)
    prepared: dict[str, tuple[list[float], object]] = {}
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "toolkit.db"
        if not all(cache.get(f"{n}@{w}") or f"{n}@{w}" in skip for n in networks for w in windows):
            load_toolkit_db(posts, db)
        for window in windows:
            for network in networks:
                qut_name = QUT_NETWORK_NAMES[network]
                if network not in prepared:  # once per type, reused for every window
                    prepared[network] = chorus_prepare(posts, network, args.repeats)
                prepare_times, ready = prepared[network]
                ours_times, ours = chorus_run(ready, network, window, args.threshold, args.repeats)
                key = f"{network}@{window}"
                theirs_run = None if key in skip else cache.get(key)
                if theirs_run is None and key not in skip:
                    seconds = run_toolkit(db, qut_name, window, args.threshold, args.threads, args.toolkit_timeout)
                    if seconds is not None:
                        theirs_run = seconds, toolkit_edges(db, qut_name)
                        cache.put(key, *theirs_run)
                if theirs_run is None:
                    verdict = "skipped" if key in skip else f"toolkit >{args.toolkit_timeout:.0f}s"
                    rows.append((window, network, len(ours), None, prepare_times, ours_times, None, verdict, None))
                else:
                    theirs_s, theirs = theirs_run
                    recall = None
                    if network in EXACT:
                        verdict = "equal" if ours == theirs else f"DIFFER ({len(ours ^ theirs)} edges)"
                    else:
                        hit = len(ours & theirs)
                        recall = hit / len(theirs) if theirs else 1.0
                        precision = hit / len(ours) if ours else 1.0
                        verdict = f"recall {recall:.4f} precision {precision:.4f}"
                    rows.append(
                        (window, network, len(ours), len(theirs), prepare_times, ours_times, theirs_s, verdict, recall)
                    )
                r = rows[-1]
                print(f"  done {network} @ {window}s: chorus {statistics.median(r[5]):.3f}s (+ prepare "
                      f"{statistics.median(r[4]):.3f}s), toolkit {r[6]}", file=sys.stderr, flush=True)  # fmt: skip
    body = []
    for window, network, n_ours, n_theirs, prepare_times, ours_times, theirs_s, verdict, recall in rows:
        step_s = statistics.median(ours_times)
        whole_s = statistics.median(prepare_times) + step_s
        qut = f"{theirs_s:.2f}" if theirs_s is not None else "-"
        speed = f"{theirs_s / step_s:,.0f}x" if theirs_s is not None else "-"
        speed_whole = f"{theirs_s / whole_s:,.1f}x" if theirs_s is not None else "-"
        goal = "-"
        if theirs_s is not None and network in EXACT:
            goal = "met" if theirs_s / step_s >= 10 and verdict == "equal" else "NOT met"
        elif theirs_s is not None and network == "co_similar" and window == 86_400:
            goal = "met" if theirs_s / step_s >= 50 and (recall or 0) >= 0.95 else "NOT met"
        n_theirs = f"{n_theirs:,}" if n_theirs is not None else "-"
        body.append([f"{window:,}", network, f"{n_ours:,}", n_theirs, median_spread(ours_times), f"{whole_s:.3f}",
                     qut, speed, speed_whole, verdict, goal])  # fmt: skip
    text = table(
        "Coordination, batch: Chorus vs the QUT toolkit",
        ["window (s)", "network", "Chorus edges", "toolkit edges", "Chorus network step s median (min-max)",
         "Chorus end to end s", "toolkit s", "speed-up (network step)", "speed-up (end to end)", "edges",
         "goal"],
        body,
        [f"`{args.data.name}`: {posts.height:,} posts from {posts['account_id'].n_unique():,} accounts, loaded "
         f"before timing. Network step (like for like with the toolkit's call): `co_action_edges` on "
         f"`prepare_posts(posts, [type])`, {args.repeats} run(s) per cell. End to end: the median "
         f"`prepare_posts` (normalised texts, token sets, urls, integer ids; once per type, reused for every "
         f"window) plus the network step. Toolkit (`coordination_network_toolkit`): one `compute_*` run per "
         f"cell on {args.threads} processes over its preloaded database, bounded by "
         f"{args.toolkit_timeout:.0f} s; its first window's co_tweet/co_similar time includes normalising or "
         f"tokenising every text (cached in its database for later windows)"
         + (f"; toolkit runs reused from `{args.toolkit_cache.name}` (they do not depend on Chorus's code)"
            if args.toolkit_cache else "")
         + f". `equal`: the same directed weighted edge set; co_similar at Jaccard {args.threshold}: recall and "
         "precision of the toolkit's edges. Goal (issue 6), judged on the network step: 10x the toolkit at every "
         "window with equal edges for the exact types; 50x at 86,400 s with recall >= 0.95 for co_similar."],
    )  # fmt: skip
    if not args.no_purity:
        purity_rows = []
        for window in windows:
            p, n, accounts, seconds = purity(posts, window)
            purity_rows.append([f"{window:,}", f"{n:,}", f"{accounts:,}", f"{p:.3f}", f"{seconds:.1f}"])
        text += "\n" + table(
            "Coordination, batch: campaign purity",
            ["window (s)", "campaigns", "accounts in campaigns", "purity vs label", "seconds (one run)"],
            purity_rows,
            ["Purity: the share of accounts in found campaigns whose campaign's majority `label` is their own "
             "(every co-action type at the window, seeded Louvain)."],
        )  # fmt: skip
    if not args.no_paraphrase:
        text += "\n" + paraphrase_table(paraphrase_cases, args.paraphrase_repeats)
    print(text)
    if not (args.quick or args.no_save):
        save("coordination", text)
    return text


if __name__ == "__main__":
    main()
