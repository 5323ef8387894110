"""Embeddings cached by text and the held-out sample of the modern-LLM head (``chorus train-aitext-modern``).

The recipe and its timings are in :mod:`stream.cli.aitext_modern`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import polars as pl

from detectors.aitext.fit import coef_digest
from detectors.aitext.head import AiTextHead

log = logging.getLogger(__name__)

DEFAULT_DATA = Path("../shared/data")
DEFAULT_EMBEDDING_CACHE = Path(".cache/aitext/embeddings-minilm.parquet")


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
    values = np.column_stack([style[rows], *head.extra_features([texts[i] for i in rows]).values()])
    train = np.flatnonzero((corpus["split"] == "train").to_numpy())
    train = np.random.default_rng(seed).choice(train, min(5000, len(train)), replace=False)
    train_values = np.column_stack([style[train], *head.extra_features([texts[i] for i in train]).values()])
    y_train = corpus["label"].to_numpy()[train]
    directions = {
        name: 1.0 if auroc(y_train, train_values[:, j]) >= 0.5 else -1.0 for j, name in enumerate(head.feature_names)
    }
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


