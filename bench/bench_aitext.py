"""Throughput of the AI-text detector per stage, in posts per second.

    python bench/bench_aitext.py                       # real models, CPU, 512 synthetic posts, 3 runs
    python bench/bench_aitext.py --quick               # 64 posts, one run (a smoke test)
    python bench/bench_aitext.py --device cuda --random-weights --tokenizers DIR --posts 50000

Stages timed separately on the same posts: triage + normalisation, stylometry, SmolLM2 statistics
(tokenise + forward + metrics), MiniLM embeddings, the head, and the whole ``FeatureExtractor`` +
head path. Each stage runs ``--repeats`` times on the same posts; the table gives posts/s as the
median (min-max) of those runs. Posts are synthetic tweet-length sentences (no development data needed) unless
``--input`` names a JSONL/CSV/Parquet file with a ``text`` column.

``--onnx`` adds the same stages through ONNX Runtime (exports from the cache, built on first use:
``chorus export-aitext``) and a head-to-head of the serving configurations (``--compare``: torch and
ONNX Runtime float32 at 1 and 2 threads, ONNX Runtime with SmolLM2 in int8) on the same posts: the
whole ``FeatureExtractor``, the configurations interleaved ``--compare-reps`` times so a neighbour's
burst of CPU use hurts all alike. The table gives posts/s as median (min-max) and CPU microseconds
per post (``time.process_time``: the fairer number on a machine shared with other jobs), and marks
the default configuration.

``--random-weights`` builds SmolLM2-135M's and MiniLM-L6's architectures with random weights, for
machines that do not have the model packages (a lent GPU): speed does not depend on the weights.
Their tokenizers come from ``--tokenizers DIR``, written here beforehand with
``--save-tokenizers DIR`` (a few MB, unlike the 98 MB GGUF).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import median_spread, save, table

#: What each stage is, for the table.
STAGE_TEXT = {
    "triage_normalise": "triage + link/mention normalisation (Python)",
    "stylometry": "stylometric features (Python)",
    "lm_tokenize": "SmolLM2 tokenisation",
    "lm_statistics": "SmolLM2 statistics: tokenise + forward + metrics",
    "minilm_embeddings": "MiniLM sentence embeddings",
    "all_features": "whole `FeatureExtractor` (everything above)",
    "head": "logistic-regression head on the features",
    "lm_statistics_onnx": "SmolLM2 statistics, ONNX Runtime",
    "minilm_embeddings_onnx": "MiniLM embeddings, ONNX Runtime",
    "all_features_onnx": "whole `FeatureExtractor`, ONNX Runtime",
}

#: Goals from the issues, in posts/s (CPU: one worker's share; GPU: one device).
GOALS = {"cpu": {"all_features": 10.0}, "cuda": {"all_features": 10_000.0}}

WORDS = [
    "the",
    "a",
    "new",
    "great",
    "today",
    "just",
    "we",
    "you",
    "they",
    "this",
    "that",
    "really",
    "love",
    "think",
    "game",
    "city",
    "team",
    "people",
    "time",
    "vote",
    "news",
    "music",
    "weather",
    "coffee",
    "morning",
    "night",
    "week",
    "big",
    "best",
    "never",
    "always",
    "here",
    "now",
    "why",
    "how",
    "about",
    "with",
    "from",
    "into",
    "over",
    "again",
    "still",
    "more",
    "most",
    "good",
    "bad",
    "happy",
    "sad",
    "win",
    "lose",
    "play",
    "read",
    "watch",
]


def synthetic_posts(n: int, seed: int = 0) -> list[str]:
    """Tweet-length sentences (5-40 words), some with a link or a mention, deterministic."""
    rng = random.Random(seed)
    posts = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(5, 40))]
        if rng.random() < 0.3:
            words.append("https://t.co/" + "".join(rng.choice("abcdefXYZ123") for _ in range(10)))
        if rng.random() < 0.2:
            words.insert(0, "@someone")
        posts.append(" ".join(words).capitalize() + rng.choice([".", "!", "?", ""]))
    return posts


def timed(
    label: str, n: int, fn: Callable[[], Any], sync: Callable[[], None], repeats: int = 1
) -> tuple[Any, dict[str, Any]]:
    """Run ``fn`` ``repeats`` times; the row has every run's posts/s and their median."""
    import statistics

    rates, seconds_all, out = [], [], None
    for _ in range(max(1, repeats)):
        sync()
        start = time.perf_counter()
        out = fn()
        sync()
        seconds = time.perf_counter() - start
        seconds_all.append(round(seconds, 3))
        rates.append(n / seconds if seconds > 0 else float("inf"))
    row = {"stage": label, "posts": n, "seconds": seconds_all, "posts_per_s": round(statistics.median(rates), 1),
           "posts_per_s_runs": [round(r, 2) for r in rates]}  # fmt: skip
    print(json.dumps(row), flush=True)
    return out, row


def markdown(rows: list[dict[str, Any]], info: dict[str, Any], args: argparse.Namespace) -> str:
    """The benchmark's table: one row per stage, posts/s as median (min-max) of the runs."""
    goals = GOALS["cuda" if args.device.startswith("cuda") else "cpu"]
    body = []
    for row in rows:
        if row["stage"].startswith("compare_"):
            what = COMPARE_TEXT[row["config"].split("@")[0]] + f", {row['threads']} thread(s)"
            what += " — **default**" if row["default"] else ""
            body.append([f"`{row['stage']}`", what, f"{row['posts']:,}",
                         f"{median_spread(row['posts_per_s_runs'])}; {row['cpu_us_per_post']:,.0f} CPU µs/post",
                         f"{goals['all_features']:,.0f}" if "all_features" in goals else ""])  # fmt: skip
        elif "posts_per_s_runs" in row:
            goal = goals.get(row["stage"])
            body.append([f"`{row['stage']}`", STAGE_TEXT.get(row["stage"], ""), f"{row['posts']:,}",
                         median_spread(row["posts_per_s_runs"]), f"{goal:,.0f}" if goal else ""])  # fmt: skip
    weights = "random weights of the same architectures" if args.random_weights else "the real models"
    notes = [
        f"Device {info['device']}, {weights}; {info['posts']:,} "
        + ("synthetic tweet-length posts" if not args.input else f"posts of `{Path(args.input).name}`")
        + f" (mean {info['mean_lm_tokens']:.1f} SmolLM2 tokens); median (min-max) of {args.repeats} run(s) per stage "
        f"after a warm-up; models loaded in {info['load_seconds']:.1f} s; peak RSS {info['peak_rss_mb']:,} MB"
        + (f", GPU peak {info['gpu_peak_mb']:,} MB." if info.get("gpu_peak_mb") else "."),
        "The language-model statistics dominate `all_features`; triage and stylometry are single-threaded "
        "Python, which is what limits a GPU once the models are fast.",
    ]
    for speed in (r for r in rows if r["stage"] == "speedup_vs_torch"):
        notes.append(f"`{speed['config']}` vs `{speed['baseline']}`, whole extractor on the same posts: "
                     f"{speed['wall']}x wall, {speed['cpu']}x CPU time (goal {speed['goal']}x).")  # fmt: skip
    if any(r["stage"].startswith("compare_onnx-int8") for r in rows):
        notes.append("int8 serves SmolLM2 with every weight product dynamically quantised, the output projection "
                     "included (opt-in: `[aitext] quantize = true` or `CHORUS_AITEXT_QUANTIZE=1`); it moves the LM "
                     "statistics, so it is scored by its own head (`aitext_head_int8.json`), which ranks a little "
                     "worse: see `detectors/aitext/onnx_backend.py` (`DEFAULT_QUANTIZE`).")  # fmt: skip
    title = "AI-text detector, per stage" + (" (GPU)" if args.device.startswith("cuda") else " (CPU)")
    return table(title, ["stage", "what", "posts", "posts/s median (min-max)", "goal posts/s"], body, notes)


def random_models(device: str, tokenizers: Path) -> tuple[Any, Any, Any, Any]:
    """SmolLM2-135M and MiniLM-L6 architectures with random weights (speed only)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel, LlamaConfig, LlamaForCausalLM

    lm_cfg = LlamaConfig(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        max_position_embeddings=8192,
        rope_theta=100000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        pad_token_id=2,
    )
    enc_cfg = BertConfig(
        vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536
    )
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    lm = LlamaForCausalLM(lm_cfg).to(device=device, dtype=dtype).eval()
    enc = BertModel(enc_cfg).to(device=device, dtype=dtype).eval()
    lm_tok = AutoTokenizer.from_pretrained(str(tokenizers / "smollm2"), local_files_only=True)
    enc_tok = AutoTokenizer.from_pretrained(str(tokenizers / "minilm"), local_files_only=True)
    return lm_tok, lm, enc_tok, enc


#: The serving configurations ``--compare`` can name (``KIND@THREADS``), for the table.
COMPARE_TEXT = {
    "torch": "whole extractor, transformers",
    "onnx": "whole extractor, ONNX Runtime float32",
    "onnx-int8": "whole extractor, ONNX Runtime, SmolLM2 int8",
}


def onnx_rows(
    args: argparse.Namespace, lm: Any, encoder: Any, clean: list[str], texts: list[str], sync: Callable[[], None]
) -> list[dict[str, Any]]:
    """The ONNX Runtime path on the same posts and batching as the torch rows, and a head-to-head of
    the ``--compare`` configurations (each a whole :class:`FeatureExtractor`) interleaved."""
    import statistics

    import torch

    from detectors.aitext import features as F
    from detectors.aitext.models import DEFAULT_CPU_THREADS
    from detectors.aitext.onnx_backend import DEFAULT_QUANTIZE
    from stream.models.aitext import load_onnx_models

    def onnx_extractor(threads: int | None, quantize: bool) -> Any:
        lm_forward, enc_forward = load_onnx_models("cpu", threads=threads, quantize=quantize)
        onnx_lm = F.LanguageModelScorer(lm.tokenizer, lm_forward, token_budget=lm.token_budget,
                                        max_batch=lm.max_batch, chunk_tokens=lm.chunk_tokens,
                                        document_start_id=lm.document_start_id)  # fmt: skip
        onnx_encoder = F.SentenceEncoder(
            encoder.tokenizer, forward=enc_forward, token_budget=encoder.token_budget, max_batch=encoder.max_batch
        )
        return F.FeatureExtractor(onnx_lm, onnx_encoder)

    t0 = time.perf_counter()
    onnx = onnx_extractor(args.ort_threads, False)
    print(json.dumps({"stage": "load_onnx_sessions", "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
    onnx.extract(texts[: min(64, len(texts))])  # warm-up
    n = len(texts)
    rows = []
    for label, fn in (
        ("lm_statistics_onnx", lambda: onnx.lm.score(clean)),
        ("minilm_embeddings_onnx", lambda: onnx.encoder.encode(clean)),
        ("all_features_onnx", lambda: onnx.extract(texts)),
    ):
        rows.append(timed(label, n, fn, sync, args.repeats)[1])

    configs: dict[str, tuple[int, Any]] = {}
    torch_extractor = F.FeatureExtractor(lm, encoder)
    for config in args.compare.split(","):
        kind, threads = config.split("@")
        if kind not in COMPARE_TEXT:
            raise SystemExit(f"unknown configuration {config!r}; kinds: {', '.join(COMPARE_TEXT)}")
        extractor = torch_extractor if kind == "torch" else onnx_extractor(int(threads), kind == "onnx-int8")
        configs[config] = (int(threads), extractor)
    for threads, extractor in configs.values():  # warm-up, each at its thread count
        torch.set_num_threads(threads)
        extractor.extract(texts[: min(32, n)])
    runs: dict[str, list[tuple[float, float]]] = {c: [] for c in configs}
    for _ in range(max(args.compare_reps, 1)):
        for config, (threads, extractor) in configs.items():
            torch.set_num_threads(threads)  # torch's own, and the statistics' threads on the ONNX path
            wall, cpu = time.perf_counter(), time.process_time()
            extractor.extract(texts)
            runs[config].append((time.perf_counter() - wall, time.process_time() - cpu))
    torch.set_num_threads(args.threads)
    default = f"torch@{DEFAULT_CPU_THREADS}"
    med = {c: (statistics.median(w for w, _ in v), statistics.median(p for _, p in v)) for c, v in runs.items()}
    for config, v in runs.items():
        row = {
            "stage": f"compare_{config}",
            "config": config,
            "threads": configs[config][0],
            "default": config == default,
            "posts": n,
            "posts_per_s_runs": [round(n / w, 2) for w, _ in v],
            "cpu_us_per_post": round(1e6 * med[config][1] / n),
            "reps": len(v),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    baseline = default if default in med else next(iter(med))
    for config in med:
        if config != baseline and not config.startswith("torch"):
            speedup = {
                "stage": "speedup_vs_torch",
                "config": config,
                "baseline": baseline,
                "wall": round(med[baseline][0] / med[config][0], 2),
                "cpu": round(med[baseline][1] / med[config][1], 2),
                "goal": 1.5,
                "int8_default": DEFAULT_QUANTIZE,
            }
            print(json.dumps(speedup), flush=True)
            rows.append(speedup)
    return rows


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3, help="runs per stage (median and min-max)")
    parser.add_argument("--quick", action="store_true", help="64 posts, one run (a smoke test)")
    parser.add_argument("--input", help="posts file with a 'text' column instead of synthetic posts")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--tokenizers", type=Path, help="folder written by --save-tokenizers")
    parser.add_argument("--save-tokenizers", type=Path, help="save both tokenizers here and exit")
    parser.add_argument("--lm-token-budget", type=int, default=None, help="padded tokens per LM batch")
    parser.add_argument("--max-batch", type=int, default=None, help="posts per LM batch at most")
    parser.add_argument("--chunk-tokens", type=int, default=None, help="statistics chunk, tokens (default: by device)")
    parser.add_argument("--profile", action="store_true", help="print torch profiler's top ops for the LM stage")
    parser.add_argument("--json-out", type=Path, help="also write the rows here")
    parser.add_argument("--onnx", action="store_true", help="also time the ONNX Runtime path (real models only)")
    parser.add_argument("--ort-threads", type=int, default=None, help="ONNX Runtime intra-op threads (default 1)")
    parser.add_argument(
        "--compare",
        default="torch@1,torch@2,onnx@1,onnx@2,onnx-int8@1,onnx-int8@2",
        help="serving configurations KIND@THREADS compared interleaved with --onnx (kinds: torch, onnx, onnx-int8)",
    )
    parser.add_argument("--compare-reps", type=int, default=3, help="interleaved repetitions of --compare")
    args = parser.parse_args(argv)
    if args.quick:
        args.posts, args.repeats = min(args.posts, 64), 1
    if args.onnx and args.random_weights:
        parser.error("--onnx exports the real models; it does not combine with --random-weights")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # torch with 2 threads (the --compare rows) must not spin-wait on a shared 2-core machine; OpenMP
    # reads this once, when torch is imported just below
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    import numpy as np
    import torch

    from detectors.aitext import features as F
    from detectors.aitext.text import stylometric_features, triage

    torch.set_num_threads(args.threads)
    if args.save_tokenizers:
        from stream.models.weights import load_encoder, load_language_model

        load_language_model("cpu")[0].save_pretrained(args.save_tokenizers / "smollm2")
        load_encoder("cpu")[0].save_pretrained(args.save_tokenizers / "minilm")
        print(f"saved tokenizers to {args.save_tokenizers}")
        return ""

    if args.input:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from stream.files.posts import read_posts

        texts = read_posts(Path(args.input))["text"].to_list()[: args.posts]
    else:
        texts = synthetic_posts(args.posts)
    n = len(texts)
    cuda = args.device.startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    if args.random_weights:
        if not args.tokenizers:
            parser.error("--random-weights needs --tokenizers DIR (write it with --save-tokenizers)")
        lm_tok, lm_model, enc_tok, enc_model = random_models(args.device, args.tokenizers)
    else:
        from stream.models.weights import load_encoder, load_language_model

        lm_tok, lm_model = load_language_model(args.device)
        enc_tok, enc_model = load_encoder(args.device)
    budget = args.lm_token_budget or (32768 if cuda else F.LM_TOKEN_BUDGET)
    lm = F.LanguageModelScorer(
        lm_tok,
        F.TorchCausalLM(lm_model),
        token_budget=budget,
        max_batch=args.max_batch or (4096 if cuda else 256),
        chunk_tokens=args.chunk_tokens or (16384 if cuda else None),  # None: the CPU default
    )
    encoder = F.SentenceEncoder(
        enc_tok, enc_model, token_budget=max(budget, F.ENCODER_TOKEN_BUDGET), max_batch=lm.max_batch
    )
    extractor = F.FeatureExtractor(lm, encoder)
    load_seconds = time.perf_counter() - t0
    print(json.dumps({"stage": "load_models", "seconds": round(load_seconds, 1)}), flush=True)

    # warm-up (first calls allocate and pick kernels)
    extractor.extract(texts[: min(64, n)])
    rows = []
    triaged, row = timed("triage_normalise", n, lambda: [triage(t) for t in texts], sync, args.repeats)
    rows.append(row)
    clean = [t.text for t in triaged if t.scored]
    _, row = timed("stylometry", n, lambda: [stylometric_features(t) for t in clean], sync, args.repeats)
    rows.append(row)
    _, row = timed("lm_tokenize", n, lambda: lm.tokenize(clean), sync, args.repeats)
    rows.append(row)
    _, row = timed("lm_statistics", n, lambda: lm.score(clean), sync, args.repeats)
    rows.append(row)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=acts) as prof:
            lm.score(clean[: min(n, 5000)])
            sync()
        key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
        print(prof.key_averages().table(sort_by=key, row_limit=15), flush=True)
    _, row = timed("minilm_embeddings", n, lambda: encoder.encode(clean), sync, args.repeats)
    rows.append(row)
    fb, row = timed("all_features", n, lambda: extractor.extract(texts), sync, args.repeats)
    rows.append(row)
    if not args.random_weights:
        from detectors.aitext.head import DEFAULT_ARTIFACT
        from stream.models.artifacts import load_head

        head = load_head(DEFAULT_ARTIFACT)
        _, row = timed("head", n, lambda: head.predict_proba(fb.values, fb.embedding), sync, args.repeats)
        rows.append(row)
    if args.onnx:
        rows.extend(onnx_rows(args, lm, encoder, clean, texts, sync))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    info = {
        "device": torch.cuda.get_device_name() if cuda else f"cpu x{args.threads} thread(s)",
        "peak_rss_mb": round(peak),
        "gpu_peak_mb": round(torch.cuda.max_memory_allocated() / 2**20) if cuda else None,
        "mean_lm_tokens": float(np.mean([len(s) for s in lm.tokenize(clean)[0]])) if clean else 0.0,
        "random_weights": args.random_weights,
        "posts": n,
        "load_seconds": load_seconds,
    }
    print(json.dumps(info), flush=True)
    if args.json_out:
        args.json_out.write_text(json.dumps({"rows": rows, **info}, indent=1))
    text = markdown(rows, info, args)
    print(text)
    if not args.quick:
        save("aitext", text)
    return text


if __name__ == "__main__":
    main()
