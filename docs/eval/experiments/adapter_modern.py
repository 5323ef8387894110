"""Does a fine-tuned MiniLM (LoRA on its top layers) lift the modern head, and does the lift hold out?

The modern head without an adapter (``modern-lr-v2``) reads MiniLM's *frozen* embedding, which encodes what a
post is about more than how it is written. This script fine-tunes the adapter of
:mod:`detectors.aitext.finetune` (rank-8 LoRA on every linear map of the top two layers, plus a
classifier) on a class-balanced sample of the corpus's *train* keys, adds its logit to the head as
one more feature (learnt on train keys, read out of sample on calibrate and evaluate keys, like the
character n-gram logit) and compares, on the same corpus and the same splits:

* the head without and with the adapter's logit, on the evaluate keys;
* leave-one-generator-out and leave-one-source-out: adapter *and* head refitted without the held-out
  generator (or source), scored on it.

    .venv/bin/python docs/eval/experiments/adapter_modern.py --leave-out claude-3,gpt-4o,gemini-1.5,llama-3 \\
        --leave-source-out aigc_election2024

Writes ``.cache/aitext/adapter_experiment.json`` and the adapter trained on every train key to
``.cache/aitext/adapter-modern.safetensors``. Embeddings and trunk states are computed only for the
rows that read them (the head never reads train rows' embeddings).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import polars as pl

log = logging.getLogger("adapter_modern")
CACHE = Path(".cache/aitext")


def balanced_sample(rows: pl.DataFrame, mask: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Row numbers of up to ``per_class`` machine and human train rows where ``mask`` holds."""
    y = rows["label"].to_numpy()
    rng = np.random.default_rng(seed)
    out = []
    for label in (0, 1):
        idx = np.flatnonzero(mask & (y == label))
        out.append(rng.choice(idx, min(per_class, len(idx)), replace=False))
    return np.sort(np.concatenate(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(CACHE / "corpus.parquet"))
    parser.add_argument("--per-class", type=int, default=15000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--leave-out", default="", help="generators, comma-separated")
    parser.add_argument("--leave-source-out", default="", help="sources, comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    import torch

    from detectors.aitext.finetune import AdapterConfig, EncoderAdapter, compute_trunk, fit_adapter, predict_cached
    from detectors.aitext.fit_modern import evaluation_metrics, fit_pipeline
    from detectors.aitext.generalisation import slice_row
    from detectors.aitext.text import stylometric_features
    from stream.models.weights import load_encoder, save_adapter
    from stream.training.modern import DEFAULT_EMBEDDING_CACHE, cached_embeddings

    torch.set_num_threads(args.threads)
    corpus = pl.read_parquet(args.corpus)
    texts = corpus["text"].to_list()
    y = corpus["label"].to_numpy().astype(int)
    split = corpus["split"].to_numpy()
    generator = corpus["generator"].to_numpy()
    source = corpus["source"].to_numpy()
    later = np.flatnonzero(split != "train")
    started = time.monotonic()
    train_sample = balanced_sample(corpus, split == "train", args.per_class, args.seed)
    log.info("corpus %d rows; adapter sample %d; scored rows %d", corpus.height, len(train_sample), len(later))

    tokenizer, encoder = load_encoder("cpu")
    for p in encoder.parameters():
        p.requires_grad_(False)
    config = AdapterConfig(epochs=args.epochs, seed=args.seed)
    need = np.union1d(train_sample, later)
    t0 = time.monotonic()
    part = compute_trunk(tokenizer, encoder, [texts[i] for i in need], config.adapted_layers)
    # a full-length cache: rows nobody reads keep an empty state
    states = [np.zeros((0, 384), np.float16)] * len(texts)
    for j, i in enumerate(need):
        states[i] = part.states[j]
    from detectors.aitext.finetune import TrunkCache

    cache = TrunkCache(states)
    trunk_seconds = time.monotonic() - t0
    log.info("trunk states for %d rows in %.0f s", len(need), trunk_seconds)

    def adapter_logit(train_idx: np.ndarray) -> tuple[np.ndarray, object, float]:
        t = time.monotonic()
        module = fit_adapter(encoder, cache, y, train_idx, config)
        fit_s = time.monotonic() - t
        logit = np.full(len(texts), np.nan)
        logit[later] = predict_cached(module, encoder, cache, later)
        log.info(
            "adapter on %d rows: fit %.0f s, scored %d rows in %.0f s",
            len(train_idx),
            fit_s,
            len(later),
            time.monotonic() - t - fit_s,
        )
        return logit, module, fit_s

    full_logit, module, fit_seconds = adapter_logit(train_sample)
    adapter = EncoderAdapter.from_module(module, config, {"training_rows": len(train_sample)})
    save_adapter(adapter, CACHE / "adapter-modern.safetensors")
    np.save(CACHE / "adapter-modern-logit.npy", full_logit)

    embedding = np.zeros((len(texts), 384), np.float32)
    embedding[later] = cached_embeddings([texts[i] for i in later], DEFAULT_EMBEDDING_CACHE, threads=args.threads)
    style = np.stack([stylometric_features(t) for t in texts])
    everything = np.ones(len(texts), dtype=bool)
    results: dict[str, object] = {"trunk_seconds": trunk_seconds, "adapter_fit_seconds": fit_seconds}
    ev = split == "evaluate"
    humans = ev & (y == 0)
    adapter_alone = [
        slice_row(g, full_logit[humans], full_logit[ev & (generator == g)], np.inf)
        for g in sorted(set(generator[ev & (y == 1)]))
    ]
    results["adapter_logit_alone_per_generator"] = adapter_alone
    for name, extra in (("baseline", None), ("with_adapter", full_logit[:, None])):
        fitted = fit_pipeline(corpus, texts, style, embedding, everything, args.seed, extra=extra)
        metrics = evaluation_metrics(corpus, fitted.log_odds, fitted.thresholds["default"])
        results[name] = metrics
        log.info("%s: modern pooled %s", name, metrics["evaluate_modern_pooled"])
        log.info("%s: human tweets fpr %s", name, metrics["evaluate_human_tweets_fpr_at_default"])
        for row in metrics["evaluate_per_generator"]:
            log.info(
                "  %-14s auroc %.3f tpr1 %.3f flagged %.3f",
                row["slice"],
                row["auroc"],
                row["tpr_at_1pct_fpr"],
                row["flagged_at_default"],
            )
    out = CACHE / "adapter_experiment.json"
    out.write_text(json.dumps(results, indent=1, default=float))

    for kind, column, keys in (
        ("leave_one_generator_out", generator, [k for k in args.leave_out.split(",") if k]),
        ("leave_one_source_out", source, [k for k in args.leave_source_out.split(",") if k]),
    ):
        rows = []
        for key in keys:
            held = column == key
            logit, _, _ = adapter_logit(train_sample[~held[train_sample]])
            machine = ev & (y == 1) & held
            own = ev & (y == 0) & held
            judged = own if own.any() else humans
            row = {"slice": key}
            for name, extra in (("baseline", None), ("with_adapter", logit[:, None])):
                fitted = fit_pipeline(corpus, texts, style, embedding, ~held, args.seed, extra=extra)
                row[name] = slice_row(
                    key, fitted.log_odds[judged], fitted.log_odds[machine], fitted.thresholds["default"]
                )
            row["adapter_alone"] = slice_row(key, logit[judged], logit[machine], np.inf)
            log.info(
                "%s %s: baseline %.3f / with adapter %.3f / adapter alone %.3f",
                kind,
                key,
                row["baseline"]["auroc"],
                row["with_adapter"]["auroc"],
                row["adapter_alone"]["auroc"],
            )
            rows.append(row)
            results[kind] = rows
            out.write_text(json.dumps(results, indent=1, default=float))
    log.info("done in %.0f s -> %s", time.monotonic() - started, out)


if __name__ == "__main__":
    main()
