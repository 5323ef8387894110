"""``chorus aitext-generate``, ``aitext-corpus`` and ``train-aitext-modern``: the modern-LLM detector.

    chorus aitext-generate --seed 202 --prompts 600 --out .cache/aitext/generated-smollm2-train.jsonl
    chorus aitext-corpus --data ../shared/data            # pieces -> .cache/aitext/corpus.parquet (~30 s)
    chorus train-aitext-modern                            # embed (cached), fit, measure, write the head

The generations, the corpus and the embedding cache live under ``.cache/`` and never enter the
repository; the head (weights, thresholds, the 40k-n-gram vocabulary: ~1.8 MB of JSON), a text-free
held-out sample and the report do. Embeddings are cached by the SHA-1 of each piece's text, so a
rebuilt corpus only embeds new pieces (~100 pieces/s on 2 cores with the frozen MiniLM). The whole
fit with its 18 leave-one-out refits takes ~12 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import polars as pl

from detectors.aitext.fit import coef_digest
from detectors.aitext.head import AiTextHead
from stream.aitext_corpus import DEFAULT_CORPUS, DEFAULT_GENERATED, build_corpus, summary

log = logging.getLogger(__name__)

DEFAULT_DATA = Path("../shared/data")
DEFAULT_EMBEDDING_CACHE = Path(".cache/aitext/embeddings-minilm.parquet")


def text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def cached_embeddings(texts: list[str], cache: Path, batch: int = 2000, threads: int | None = None) -> np.ndarray:
    """Frozen MiniLM embeddings of ``texts``, computing only those not yet in the ``cache`` parquet."""
    from detectors.aitext.features import EMBEDDING_DIM, SentenceEncoder
    from detectors.aitext.models import configure_torch_threads, load_encoder

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


def _corpus(args: argparse.Namespace) -> int:
    started = time.monotonic()
    corpus = build_corpus(Path(args.data), seed=args.seed, generated=[Path(g) for g in args.generated])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    corpus.write_parquet(out)
    with pl.Config(tbl_rows=100, tbl_hide_dataframe_shape=True):
        print(summary(corpus))
    print(f"{corpus.height} pieces -> {out} in {time.monotonic() - started:.0f} s")
    return 0


def _train(args: argparse.Namespace) -> int:
    from detectors.aitext.fit_modern import fit_modern_head
    from detectors.aitext.text import stylometric_features
    from stream.aitext_report import write_modern_report

    corpus = pl.read_parquet(args.corpus)
    if args.max_rows and corpus.height > args.max_rows:
        corpus = corpus.sample(args.max_rows, seed=args.seed).sort("source", "id", "piece")
    texts = corpus["text"].to_list()
    embedding = cached_embeddings(texts, Path(args.embedding_cache), threads=args.threads)
    style = np.stack([stylometric_features(t) for t in texts])
    started = time.monotonic()
    head = fit_modern_head(corpus, texts, style, embedding, seed=args.seed, leave_out=not args.no_leave_out)
    head.training["corpus_rows"] = corpus.height
    head.training["fit_seconds"] = round(time.monotonic() - started, 1)
    out = Path(args.out)
    head.save(out)
    write_heldout_sample(head, corpus, style, embedding, heldout_sample_path(out), seed=args.seed)
    report = write_modern_report(head, Path(args.report))
    print(json.dumps(head.metrics.get("evaluate_modern_pooled"), indent=1))
    print(f"head -> {out}; report -> {report}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from detectors.aitext.models import configure_torch_threads
    from stream.aitext_generate import write_generations

    configure_torch_threads(args.threads)
    stats = write_generations(Path(args.out), n=args.prompts, seed=args.seed)
    print(json.dumps({"out": args.out, **stats}))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``aitext-corpus``, ``aitext-generate`` and ``train-aitext-modern`` to the ``chorus`` command."""
    from detectors.aitext.head import MODERN_ARTIFACT

    p = subparsers.add_parser(
        "aitext-corpus",
        help="build the modern-LLM training corpus (post-length pieces, split by account) from the dev data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", default=str(DEFAULT_DATA), help="folder with aitext/ and coordination/ (shared data)")
    p.add_argument("--out", default=str(DEFAULT_CORPUS), help="parquet file to write")
    p.add_argument("--seed", type=int, default=0, help="sampling and split seed")
    p.add_argument(
        "--generated",
        nargs="*",
        default=[str(p) for p in DEFAULT_GENERATED],
        help="JSONL files of chorus aitext-generate to add as machine pieces (never the demo's sample)",
    )
    p.set_defaults(func=_corpus)

    p = subparsers.add_parser(
        "aitext-generate",
        help="write tweets with the local language models (SmolLM2) from seeded personas, topics and registers",
    )
    p.add_argument("--out", default=".cache/aitext/generated-smollm2.jsonl", help="JSONL file to write")
    p.add_argument("--prompts", type=int, default=400, help="prompts to run (a few are dropped as unusable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.set_defaults(func=_generate)

    p = subparsers.add_parser(
        "train-aitext-modern",
        help="fit, calibrate and measure the fast modern-LLM AI-text head on the aitext-corpus pieces",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="parquet written by chorus aitext-corpus")
    p.add_argument("--embedding-cache", default=str(DEFAULT_EMBEDDING_CACHE), help="parquet of embeddings by text")
    p.add_argument("--out", default=str(MODERN_ARTIFACT), help="head artifact to write (JSON)")
    p.add_argument("--report", default="docs/eval/aitext-modern/report.md", help="markdown report to write")
    p.add_argument("--max-rows", type=int, default=0, help="sample the corpus down to this many pieces (0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads for embedding")
    p.add_argument("--no-leave-out", action="store_true", help="skip the leave-one-out refits (faster)")
    p.set_defaults(func=_train)
