"""``chorus aitext-generate``, ``aitext-corpus``, ``train-aitext-modern``, ``train-aitext-stage``: modern LLMs.

    chorus aitext-generate --seed 202 --prompts 900 --imitate-share 0.5 \\
        --out .cache/aitext/generated-smollm2-train.jsonl    # 761 posts in 24.5 min on 2 cores
    chorus aitext-generate --seed 203 --prompts 900 --imitate-share 0.8 \\
        --out .cache/aitext/generated-smollm2-imitate-train.jsonl   # 743 posts, 27 min
    bash .ci/install --generators                         # Qwen2.5-Coder 0.5B/1.5B, Gemma-3-270M weights
    chorus aitext-generate --model qwen2.5-coder-0.5b --imitate-share 0.5 --seed 301 --prompts 480 \\
        --out .cache/aitext/generated-qwen2.5-coder-0.5b-train.jsonl   # 408 posts, 51 min (beside other work)
    chorus aitext-generate --model qwen2.5-coder-1.5b --imitate-share 0.5 --seed 302 --prompts 240 \\
        --out .cache/aitext/generated-qwen2.5-coder-1.5b-train.jsonl   # ~25 s a post beside other work: stopped at 15
    chorus aitext-generate --model qwen2.5-coder-1.5b --imitate-share 0.5 --seed 303 --prompts 240 --threads 1 \\
        --out .cache/aitext/generated-qwen2.5-coder-1.5b-303-train.jsonl   # ~8 s a post: stopped at 158 (23 min)
    chorus aitext-generate --model qwen2.5-coder-1.5b --imitate-share 0.5 --seed 304 --prompts 300 --threads 1 \\
        --out .cache/aitext/generated-qwen2.5-coder-1.5b-304-train.jsonl   # stopped at 134 (20 min)
    chorus aitext-generate --model gemma-3-270m --seed 401 --prompts 800 --threads 1 \\
        --out .cache/aitext/generated-gemma-3-270m-train.jsonl   # 733 posts, 32 min; measured, left out of the
        # default corpus (add with aitext-corpus --generated): see stream/training/corpus.py
    chorus aitext-corpus --data ../shared/data            # pieces -> .cache/aitext/corpus.parquet (~30 s)
    chorus train-aitext-modern                            # fit, measure, write the head (modern-gb-v7, 8.5 min)
    chorus train-aitext-stage                             # optional SmolLM2 second stage (sampled; ~25 min)

The generations, the corpus and the embedding cache live under ``.cache/`` and never enter the
repository; the head (trees, thresholds, the 40k-n-gram vocabulary and two regressions' weights:
~3 MB of JSON), a text-free held-out sample and the report do. Embeddings are cached by the SHA-1
of each piece's text, so a rebuilt corpus only embeds new pieces (~100 pieces/s on 2 cores with the frozen MiniLM); only
``--embedding`` and ``--adapter`` (the modern-lr-v2/v3 recipes) need them. The whole fit with its
leave-one-out refits takes ~9 minutes on 2 cores without the adapter.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import polars as pl

from stream.models.artifacts import LM_STAGE_ARTIFACT, load_head, save_head
from stream.training.corpus import DEFAULT_CORPUS, DEFAULT_GENERATED, build_corpus, summary
from stream.training.modern import (
    ADAPTER_ROWS_PER_CLASS,
    DEFAULT_DATA,
    DEFAULT_EMBEDDING_CACHE,
    cached_embeddings,
    heldout_sample_path,
    write_heldout_sample,
)


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
    from detectors.aitext.features import EMBEDDING_DIM
    from detectors.aitext.fit_modern import fit_modern_head
    from detectors.aitext.text import stylometric_features
    from stream.models.weights import file_sha256, save_adapter
    from stream.training.modern import MODERN_ADAPTER_FILE, adapter_logits
    from stream.training.report import write_modern_report

    corpus = pl.read_parquet(args.corpus)
    if args.max_rows and corpus.height > args.max_rows:
        corpus = corpus.sample(args.max_rows, seed=args.seed).sort("source", "id", "piece")
    texts = corpus["text"].to_list()
    out = Path(args.out)
    started = time.monotonic()
    adapter = None
    if args.adapter or args.reuse_adapter:  # an adapter file to reuse asks for the adapter
        adapter = adapter_logits(
            corpus,
            texts,
            per_class=args.adapter_rows_per_class,
            epochs=args.adapter_epochs,
            seed=args.seed,
            threads=args.threads,
            reuse=Path(args.reuse_adapter) if args.reuse_adapter else None,
        )
    # the head never reads a train row's embedding (the n-gram regression and the adapter learn there)
    later = np.flatnonzero((corpus["split"] != "train").to_numpy())
    embedding = np.zeros((corpus.height, EMBEDDING_DIM if args.embedding else 0), np.float32)
    if args.embedding:
        embedding[later] = cached_embeddings(
            [texts[i] for i in later], Path(args.embedding_cache), threads=args.threads
        )
    style = np.stack([stylometric_features(t) for t in texts])
    leave_out_keys = [k for k in args.leave_out.split(",") if k]
    head = fit_modern_head(
        corpus,
        texts,
        style,
        embedding,
        seed=args.seed,
        leave_out=not args.no_leave_out,
        leave_out_keys=leave_out_keys or None,
        adapter_logit=None if adapter is None else adapter.logit,
        adapter_refit=None if adapter is None else adapter.refit,
        balance_registers=not args.class_balanced,
        # the recipes of modern-lr-v2 to v5 (any older flag) are logistic regressions
        boosted=not (args.linear or args.embedding or args.class_balanced or adapter is not None),
    )
    head.training["corpus_rows"] = corpus.height
    if leave_out_keys and not args.no_leave_out:
        head.training["leave_out_keys"] = leave_out_keys
    head.training["fit_seconds"] = round(time.monotonic() - started, 1)
    if adapter is not None:
        adapter_path = save_adapter(adapter.adapter, out.with_name(MODERN_ADAPTER_FILE))
        head.encoder_adapter = {"file": adapter_path.name, "sha256": file_sha256(adapter_path)}
        head.training["encoder_adapter"] = {**adapter.info, **adapter.adapter.training, "file": adapter_path.name}
    save_head(head, out)
    write_heldout_sample(
        head,
        corpus,
        style,
        embedding,
        heldout_sample_path(out),
        seed=args.seed,
        adapter_logit=None if adapter is None else adapter.logit,
    )
    report = write_modern_report(head, Path(args.report))
    print(json.dumps(head.metrics.get("evaluate_modern_pooled"), indent=1))
    print(f"head -> {out}; report -> {report}")
    return 0


def _train_stage(args: argparse.Namespace) -> int:
    from stream.models.artifacts import save_lm_stage
    from stream.training.lm_stage import train_lm_stage
    from stream.training.report import write_stage_report

    head = load_head(args.head)
    corpus = pl.read_parquet(args.corpus)
    staged = train_lm_stage(
        head,
        corpus,
        per_generator=args.per_generator,
        humans=args.humans,
        eval_per_generator=args.eval_per_generator,
        eval_humans=args.eval_humans,
        seed=args.seed,
        lm_cache=Path(args.lm_cache),
        embedding_cache=Path(args.embedding_cache),
        threads=args.threads,
    )
    out = save_lm_stage(head, staged.stage, Path(args.out))
    report = write_stage_report(staged, Path(args.report))
    print(json.dumps(staged.stage.metrics["pooled"], indent=1))
    print(f"SmolLM2 stage over head {head.version} -> {out}; report -> {report}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from stream.models.threads import configure_torch_threads
    from stream.training.corpus import imitation_accounts
    from stream.training.generate import draw_prompts, write_generations
    from stream.training.generator_weights import GENERATORS

    configure_torch_threads(args.threads)
    base = args.model in GENERATORS and GENERATORS[args.model].kind == "base"
    share = 1.0 if base else args.imitate_share
    accounts = imitation_accounts(pl.read_parquet(args.corpus), seed=args.seed) if share > 0 else None
    prompts = draw_prompts(args.prompts, args.seed, accounts=accounts, imitate_share=share)
    stats = write_generations(
        Path(args.out),
        n=args.prompts,
        seed=args.seed,
        model=args.model,
        prompts=prompts,
        weights=Path(args.weights) if args.weights else None,
        models_dir=Path(args.models_dir),
    )
    print(json.dumps({"out": args.out, "model": args.model, **stats}))
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
        help="write tweets with a local language model from seeded personas, topics, registers and imitation",
    )
    p.add_argument("--model", default="smollm2", help="smollm2, qwen2.5-coder-0.5b, qwen2.5-coder-1.5b or gemma-3-270m")
    p.add_argument("--weights", default=None, help="your own copy of the model's GGUF file (checked by SHA-256)")
    p.add_argument("--models-dir", default=".cache/models", help="where the part packages' files are joined")
    p.add_argument("--out", default=".cache/aitext/generated-smollm2.jsonl", help="JSONL file to write")
    p.add_argument("--prompts", type=int, default=400, help="prompts to run (a few are dropped as unusable)")
    p.add_argument(
        "--imitate-share",
        type=float,
        default=0.0,
        help="share of prompts imitating a train-split human account from its real tweets (base models: all)",
    )
    p.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="corpus whose train-split humans are imitated")
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
    p.add_argument(
        "--leave-out",
        default="",
        help="refit without only these generators and sources, comma-separated (default: every one; with the "
        "adapter each refit fine-tunes it again, 5-12 minutes on 2 cores)",
    )
    p.add_argument(
        "--adapter",
        action="store_true",
        help="also read MiniLM fine-tuned as a classifier (modern-lr-v3; ranks a corpus it never saw worse)",
    )
    p.add_argument(
        "--embedding",
        action="store_true",
        help="also read the frozen MiniLM embedding (modern-lr-v2/v3; ranks a corpus it never saw worse)",
    )
    p.add_argument(
        "--linear",
        action="store_true",
        help="a logistic regression over stylometry and one n-gram logit (modern-lr-v5), not the boosted trees",
    )
    p.add_argument(
        "--class-balanced",
        action="store_true",
        help="balance the classes overall, not inside each register (modern-lr-v2/v3)",
    )
    p.add_argument("--reuse-adapter", default=None, help="the adapter file of an earlier run (implies --adapter)")
    p.add_argument("--adapter-rows-per-class", type=int, default=ADAPTER_ROWS_PER_CLASS)
    p.add_argument("--adapter-epochs", type=int, default=1)
    p.set_defaults(func=_train)

    p = subparsers.add_parser(
        "train-aitext-stage",
        help="fit, threshold and measure the SmolLM2 second stage of the modern head (on a stratified sample)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--head", default=None, help="modern head to extend (default: the committed one)")
    p.add_argument("--out", default=str(LM_STAGE_ARTIFACT), help="where to write the stage (JSON)")
    p.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="parquet written by chorus aitext-corpus")
    p.add_argument("--embedding-cache", default=str(DEFAULT_EMBEDDING_CACHE), help="parquet of embeddings by text")
    p.add_argument("--lm-cache", default=".cache/aitext/lm-smollm2.parquet", help="parquet of SmolLM2 statistics")
    p.add_argument("--per-generator", type=int, default=100, help="calibrate machine pieces per generator")
    p.add_argument("--humans", type=int, default=5000, help="calibrate human pieces")
    p.add_argument("--eval-per-generator", type=int, default=80, help="evaluate machine pieces per generator")
    p.add_argument("--eval-humans", type=int, default=1500, help="evaluate human pieces")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads for SmolLM2")
    p.add_argument("--report", default="docs/eval/aitext-modern/stage.md", help="markdown report to write")
    p.set_defaults(func=_train_stage)
