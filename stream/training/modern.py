"""Embeddings cached by text, the encoder adapter and the held-out sample of the modern-LLM head.

What ``chorus train-aitext-modern`` needs around the pure fit of :mod:`detectors.aitext.fit_modern`.

The recipe and its timings are in :mod:`stream.cli.aitext_modern`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from detectors.aitext.fit import coef_digest
from detectors.aitext.head import AiTextHead

log = logging.getLogger(__name__)

DEFAULT_DATA = Path("../shared/data")
DEFAULT_EMBEDDING_CACHE = Path(".cache/aitext/embeddings-minilm.parquet")
#: The modern head's encoder adapter, written beside the head (the TweepFake head has its own).
MODERN_ADAPTER_FILE = "aitext_encoder_adapter_modern.safetensors"
#: Machine and human train pieces the adapter is fine-tuned on (each): one epoch of these 30k pieces
#: took 285 s on 2 idle cores over cached trunk states (719 s beside other work); more is untried.
ADAPTER_ROWS_PER_CLASS = 15_000


def text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def cached_embeddings(texts: list[str], cache: Path, batch: int = 2000, threads: int | None = None) -> np.ndarray:
    """Frozen MiniLM embeddings of ``texts``, computing only those not yet in the ``cache`` parquet."""
    from detectors.aitext.features import EMBEDDING_DIM, SentenceEncoder
    from stream.models.threads import configure_torch_threads
    from stream.models.weights import load_encoder

    keys = [text_key(t) for t in texts]
    known: dict[str, np.ndarray] = {}
    if cache.is_file():
        frame = pl.read_parquet(cache)
        known = dict(zip(frame["key"].to_list(), frame["embedding"].to_numpy(), strict=True))
    missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in known}.items())
    if missing:
        configure_torch_threads(threads)
        tokenizer, model = load_encoder("cpu")
        encoder = SentenceEncoder(tokenizer, model)
        started = time.monotonic()
        for i in range(0, len(missing), batch):
            chunk = missing[i : i + batch]
            vectors = encoder.encode([t for _, t in chunk])
            known.update({k: v for (k, _), v in zip(chunk, vectors, strict=True)})
            done = i + len(chunk)
            log.info("embedded %d/%d new pieces (%.0f/s)", done, len(missing), done / (time.monotonic() - started))
            if done % (batch * 10) == 0 or done == len(missing):  # checkpoint: an interrupted run resumes
                cache.parent.mkdir(parents=True, exist_ok=True)
                pl.DataFrame(
                    {"key": list(known), "embedding": np.stack(list(known.values())).astype(np.float32)}
                ).write_parquet(cache)
    return np.stack([known[k] for k in keys]).astype(np.float32).reshape(len(texts), EMBEDDING_DIM)


def heldout_sample_path(head_path: Path) -> Path:
    return head_path.with_name(head_path.stem + "_heldout_sample.json")


def write_heldout_sample(
    head: AiTextHead,
    corpus: pl.DataFrame,
    style: np.ndarray,
    embedding: np.ndarray,
    path: Path,
    per_class: int = 200,
    seed: int = 0,
    adapter_logit: np.ndarray | None = None,
) -> Path:
    """Evaluate-split pieces, without their text: human tweets vs modern-LLM pieces, for the head's test.

    Per piece: label, generator, the stylometric features and the embedding's contribution to the
    head's raw log-odds (one number: no text and no embedding ship, as with the TweepFake head). Each
    single feature's direction comes from the train split, as a one-feature detector's would.
    """
    from detectors.aitext.corpus import MODERN_FAMILIES
    from detectors.aitext.fit_modern import TWEET_SOURCES
    from detectors.evaluation import auroc

    k = len(head.feature_names)
    texts = corpus["text"].to_list()
    indexed = corpus.with_row_index("_row")
    evaluate = indexed.filter(pl.col("split") == "evaluate")
    humans = evaluate.filter((pl.col("label") == 0) & pl.col("source").is_in(TWEET_SOURCES))
    machine = evaluate.filter((pl.col("label") == 1) & pl.col("generator").is_in(sorted(MODERN_FAMILIES)))
    rows = np.concatenate(
        [
            humans.sample(min(per_class, humans.height), seed=seed)["_row"].to_numpy(),
            machine.sample(min(per_class, machine.height), seed=seed)["_row"].to_numpy(),
        ]
    )
    z_emb = (embedding[rows].astype(np.float64) - np.asarray(head.mean_[k:])) / np.asarray(head.scale_[k:])
    adapter = [] if adapter_logit is None else [adapter_logit[rows]]
    values = np.column_stack([style[rows], *head.extra_features([texts[i] for i in rows]).values(), *adapter])
    train = np.flatnonzero((corpus["split"] == "train").to_numpy())
    train = np.random.default_rng(seed).choice(train, min(5000, len(train)), replace=False)
    train_values = np.column_stack([style[train], *head.extra_features([texts[i] for i in train]).values()])
    y_train = corpus["label"].to_numpy()[train]
    directions = {
        name: 1.0 if auroc(y_train, train_values[:, j]) >= 0.5 else -1.0
        for j, name in enumerate(head.feature_names[: train_values.shape[1]])
    }
    # the adapter is a classifier of machine text: its logit points that way by construction
    directions.update({name: 1.0 for name in head.feature_names[train_values.shape[1] :]})
    data = {
        "what": "evaluate-split pieces (human tweets of held-out accounts vs modern-LLM pieces); no text, no embedding",
        "head_version": head.version,
        "coef_digest": coef_digest(head),
        "feature_names": head.feature_names,
        "direction_on_train": directions,
        "label": corpus["label"].to_numpy()[rows].astype(int).tolist(),
        "generator": corpus["generator"].to_numpy()[rows].tolist(),
        "features": np.round(values, 6).tolist(),
        "embedding_contribution": np.round(z_emb @ np.asarray(head.coef_[k:]), 6).tolist(),
    }
    path.write_text(json.dumps(data) + "\n", encoding="utf-8")
    return path


def adapter_sample(rows: pl.DataFrame, allowed: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Row numbers of up to ``per_class`` machine and ``per_class`` human *train* rows where ``allowed``."""
    y = rows["label"].to_numpy()
    train = (rows["split"] == "train").to_numpy() & allowed
    rng = np.random.default_rng(seed)
    picked = []
    for label in (0, 1):
        idx = np.flatnonzero(train & (y == label))
        picked.append(rng.choice(idx, min(per_class, len(idx)), replace=False))
    return np.sort(np.concatenate(picked))


@dataclass
class AdapterLogits:
    """The adapter fitted on the train sample, its logit on every non-train row, and a refit for leave-outs."""

    adapter: Any  # detectors.aitext.finetune.EncoderAdapter
    logit: np.ndarray  # NaN on train rows (the head never reads them)
    refit: Callable[[np.ndarray], np.ndarray]  # allowed rows -> logit column, the adapter refitted on them
    info: dict[str, Any]


def adapter_logits(
    rows: pl.DataFrame,
    texts: list[str],
    *,
    per_class: int = ADAPTER_ROWS_PER_CLASS,
    epochs: int = 1,
    seed: int = 0,
    threads: int | None = None,
    reuse: Path | None = None,
) -> AdapterLogits:
    """Fine-tune the encoder adapter on a balanced train sample (or ``reuse`` one) and score the other rows.

    MiniLM's bottom layers run once per piece (:func:`detectors.aitext.finetune.compute_trunk`), for the
    sample and for every calibrate and evaluate row; each fit and each refit then runs only the adapted
    top layers. ``reuse``: an adapter file written by an earlier run with the same corpus and seed.
    """
    from detectors.aitext.finetune import AdapterConfig, TrunkCache, compute_trunk, fit_adapter, predict_cached
    from stream.models.threads import configure_torch_threads
    from stream.models.weights import load_encoder, read_adapter

    configure_torch_threads(threads)
    tokenizer, encoder = load_encoder("cpu")
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    config = AdapterConfig(epochs=epochs, seed=seed)
    everything = np.ones(rows.height, dtype=bool)
    sample = adapter_sample(rows, everything, per_class, seed)
    later = np.flatnonzero((rows["split"] != "train").to_numpy())
    need = np.union1d(sample, later)
    started = time.monotonic()
    part = compute_trunk(tokenizer, encoder, [texts[i] for i in need], config.adapted_layers)
    states = [np.zeros((0, 0), np.float16)] * rows.height
    for j, i in enumerate(need):
        states[i] = part.states[j]
    cache = TrunkCache(states)
    trunk_s = time.monotonic() - started
    log.info("adapter: trunk states of %d pieces in %.0f s", len(need), trunk_s)

    def score(module: Any) -> np.ndarray:
        logit = np.full(rows.height, np.nan)
        logit[later] = predict_cached(module, encoder, cache, later)
        return logit

    def fit(train_idx: np.ndarray) -> np.ndarray:
        started = time.monotonic()
        module = fit_adapter(encoder, cache, rows["label"].to_numpy().astype(np.float32), train_idx, config)
        log.info("adapter: fitted on %d pieces in %.0f s", len(train_idx), time.monotonic() - started)
        return score(module)

    def refit(allowed: np.ndarray) -> np.ndarray:
        # the sample less the held-out rows: only its pieces have trunk states
        return fit(sample[allowed[sample]])

    info: dict[str, Any] = {"trunk_seconds": round(trunk_s), "sample_rows": len(sample), "epochs": epochs}
    if reuse is not None:
        adapter = read_adapter(reuse)
        module = adapter.build_module(encoder, merge=False)
        info["reused"] = str(reuse)
        return AdapterLogits(adapter, score(module), refit, info)
    from detectors.aitext.finetune import EncoderAdapter

    fit_started = time.monotonic()
    module = fit_adapter(encoder, cache, rows["label"].to_numpy().astype(np.float32), sample, config)
    info["fit_seconds"] = round(time.monotonic() - fit_started)
    adapter = EncoderAdapter.from_module(
        module, config, {"training_rows": len(sample), "what": "class-balanced sample of the train keys"}
    )
    return AdapterLogits(adapter, score(module), refit, info)
