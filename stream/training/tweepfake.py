"""``chorus train-aitext``: the TweepFake-trained AI-text head's training protocol and feature cache.

The maths lives in :mod:`detectors.aitext` (pure); this module reads the development data, caches
features on disk and writes the head artifact (its command line is :mod:`stream.cli.aitext`).

Training protocol (see ``detectors/aitext/training.py`` for why):

1. TweepFake's 40 accounts (``group``) are split whole into train / calibrate / evaluate, stratified
   by author kind (human, GPT-2, RNN, other bots), seed fixed.
2. Features are extracted on *normalised* text (URLs and @mentions as placeholders) for a balanced
   sample of train posts, a calibration sample rich in human posts, the evaluate accounts' posts
   and TweepFake's whole validation split; raw text is also featurised for the validation rows so
   the report can show both. Features are cached under ``--cache`` keyed by text, so a re-run only
   computes what is new.
3. A logistic-regression head is fitted on train, Platt-calibrated on calibrate, thresholds are set on
   calibrate's human posts (1% and 0.1% FPR), and metrics are measured on evaluate and validation.

``--backend onnx --quantize`` runs the same protocol on SmolLM2's int8 statistics and writes the int8
serving path's own head (``aitext_head_int8.json``), keeping the encoder adapter the float32 head uses.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from stream.models.artifacts import save_head
from stream.models.weights import read_adapter, save_adapter

log = logging.getLogger(__name__)

DEFAULT_DATA = Path("../shared/data/aitext")
DEFAULT_CACHE = Path(".cache/aitext")
#: Bump when feature extraction changes meaning, so stale cached features are not reused.
FEATURE_CACHE_VERSION = "f1"


# --- feature cache ---------------------------------------------------------------------------------


def _cache_key(text: Any, normalise: bool) -> str:
    """Key on what the models will read, so raw text without links or mentions reuses its
    normalised twin's features instead of running the models twice."""
    from detectors.aitext.text import triage

    prepared = triage(text, normalise=normalise)
    body = f"{prepared.not_scored_reason}|{prepared.text}"
    return hashlib.sha1(f"{FEATURE_CACHE_VERSION}|{body}".encode()).hexdigest()


class FeatureCache:
    """Features of texts already extracted, in parquet parts under a folder; appends new parts."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._rows: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for part in sorted(folder.glob("part-*.parquet")):
            frame = pl.read_parquet(part)
            for key, values, emb in frame.iter_rows():
                self._rows[key] = (np.asarray(values, dtype=np.float64), np.asarray(emb, dtype=np.float32))

    def __contains__(self, key: str) -> bool:
        return key in self._rows

    def add(self, keys: Sequence[str], values: np.ndarray, embedding: np.ndarray) -> None:
        frame = pl.DataFrame(
            {"key": list(keys), "values": values.tolist(), "embedding": embedding.tolist()},
            schema={"key": pl.String, "values": pl.List(pl.Float64), "embedding": pl.List(pl.Float32)},
        )
        frame.write_parquet(self.folder / f"part-{time.time_ns()}.parquet")
        for k, v, e in zip(keys, values, embedding, strict=True):
            self._rows[k] = (v, e)

    def get(self, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        values = np.stack([self._rows[k][0] for k in keys]) if keys else np.zeros((0, 0))
        emb = np.stack([self._rows[k][1] for k in keys]) if keys else np.zeros((0, 0), dtype=np.float32)
        return values, emb


def cached_features(
    texts: Sequence[str],
    normalise: bool,
    cache: FeatureCache,
    extractor_factory: Any,
    chunk: int = 256,
    label: str = "",
) -> tuple[np.ndarray, np.ndarray]:
    """Features for ``texts``, computing (and caching, chunk by chunk) only the missing ones."""
    from tqdm import tqdm

    from detectors.aitext.features import BASE_FEATURE_NAMES

    keys = [_cache_key(t, normalise) for t in texts]
    missing: dict[str, str] = {}
    for k, t in zip(keys, texts, strict=True):
        if k not in cache and k not in missing:
            missing[k] = t
    if missing:
        extractor = extractor_factory(normalise)
        todo = list(missing.items())
        with tqdm(total=len(todo), desc=f"features {label}", unit="post", file=sys.stderr) as bar:
            for start in range(0, len(todo), chunk):
                part = todo[start : start + chunk]
                batch = extractor.extract([t for _, t in part])
                # only features that do not depend on a learnt adapter are cached
                cache.add([k for k, _ in part], batch.values[:, : len(BASE_FEATURE_NAMES)], batch.embedding)
                bar.update(len(part))
    return cache.get(keys)


# --- development data ---------------------------------------------------------------------------------


def load_tweepfake(data_dir: Path) -> pl.DataFrame:
    """TweepFake rows with a ``stratum`` column (the author kind) for the group split."""
    path = data_dir / "dev_tweepfake_trainval.jsonl.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; pass --data pointing at the shared aitext folder")
    frame = pl.read_ndjson(path)
    return frame.with_columns(stratum=pl.col("meta").struct.field("class_type")).drop("meta")


def plan_training_rows(
    frame: pl.DataFrame,
    n_train: int,
    n_cal_human: int,
    n_cal_machine: int,
    n_eval_extra: int,
    n_validation: int,
    seed: int,
) -> tuple[pl.DataFrame, dict[str, str]]:
    """Assign groups to splits and pick the rows to featurise; adds a ``role`` column.

    Roles: ``train`` (balanced sample of train-split posts of train accounts), ``calibrate``
    (human-rich sample of calibrate accounts: thresholds need many human posts), ``evaluate``
    (every validation-split post of evaluate accounts, plus a sample of their other posts),
    ``validation`` (a balanced sample of the rest of TweepFake's validation split, for the published
    protocol, whose accounts overlap training).
    """
    from detectors.aitext.training import assign_group_splits, balanced_sample

    per_group = frame.group_by("group").agg(pl.len().alias("rows"), pl.col("stratum").first())
    assignment = assign_group_splits(
        dict(zip(per_group["group"], per_group["rows"], strict=True)),
        dict(zip(per_group["group"], per_group["stratum"], strict=True)),
        seed=seed,
    )
    frame = frame.with_columns(group_split=pl.col("group").replace_strict(assignment))
    parts: list[pl.DataFrame] = []

    train = frame.filter((pl.col("group_split") == "train") & (pl.col("split") == "train"))
    parts.append(train[balanced_sample(train["label"].to_numpy(), n_train, seed)].with_columns(role=pl.lit("train")))

    cal = frame.filter(pl.col("group_split") == "calibrate")
    cal_h = cal.filter(pl.col("label") == 0)
    cal_m = cal.filter(pl.col("label") == 1)
    parts.append(cal_h.sample(min(n_cal_human, cal_h.height), seed=seed).with_columns(role=pl.lit("calibrate")))
    parts.append(cal_m.sample(min(n_cal_machine, cal_m.height), seed=seed).with_columns(role=pl.lit("calibrate")))

    ev = frame.filter(pl.col("group_split") == "evaluate")
    parts.append(ev.filter(pl.col("split") == "validation").with_columns(role=pl.lit("evaluate")))
    ev_rest = ev.filter(pl.col("split") == "train")
    parts.append(
        ev_rest[balanced_sample(ev_rest["label"].to_numpy(), n_eval_extra, seed)].with_columns(role=pl.lit("evaluate"))
    )
    val_rest = frame.filter((pl.col("split") == "validation") & (pl.col("group_split") != "evaluate"))
    parts.append(
        val_rest[balanced_sample(val_rest["label"].to_numpy(), n_validation, seed)].with_columns(
            role=pl.lit("validation")
        )
    )
    return pl.concat(parts, how="vertical"), assignment


def _extractor_factory(device: str, backend: str = "torch", quantize: bool = False) -> Any:
    from stream.models.aitext import FeatureExtractor

    def make(normalise: bool) -> Any:
        # the frozen encoder: the adapter is trained afterwards, on these rows' accounts
        return FeatureExtractor.load(
            device=device, normalise=normalise, adapter=None, backend=backend, quantize=quantize
        )

    return make


def features_folder(backend: str, quantize: bool) -> str:
    """The feature cache's sub-folder for one runtime: statistics of another precision never mix."""
    if backend == "torch":
        return "features"  # float32 (the first cache, kept under its first name)
    from stream.models.onnx_export import QUANTIZATION_VERSION

    return f"features-onnx-int8-{QUANTIZATION_VERSION}" if quantize else "features-onnx"


def run_training(args: argparse.Namespace) -> int:
    from detectors.aitext.head import DEFAULT_ARTIFACT, INT8_ARTIFACT, LM_FLOAT32, LM_INT8
    from stream.models.threads import configure_torch_threads

    configure_torch_threads(args.threads)
    if args.quantize and args.backend != "onnx":
        print("chorus train-aitext: --quantize needs --backend onnx (int8 is an ONNX Runtime path)", file=sys.stderr)
        return 2
    if args.out is None:
        args.out = str(INT8_ARTIFACT if args.quantize else DEFAULT_ARTIFACT)
    if args.quantize and args.finetune and not args.reuse_adapter:
        # the adapter reads MiniLM, which int8 does not touch: retraining it would change the float32 head's too
        log.info("--quantize: keeping the encoder adapter beside %s (as --reuse-adapter)", args.out)
        args.reuse_adapter = True
    frame = load_tweepfake(Path(args.data))
    rows, assignment = plan_training_rows(
        frame, args.n_train, args.n_cal_human, args.n_cal_machine, args.n_eval_extra, args.n_validation, args.seed
    )
    log.info("rows to featurise per role: %s", dict(rows.group_by("role").len().iter_rows()))
    cache = FeatureCache(Path(args.cache) / features_folder(args.backend, args.quantize))
    factory = _extractor_factory(args.device, args.backend, args.quantize)
    texts = rows["text"].to_list()
    started = time.perf_counter()
    for role in ("train", "calibrate", "evaluate", "validation"):
        role_texts = rows.filter(pl.col("role") == role)["text"].to_list()
        cached_features(role_texts, True, cache, factory, label=f"{role} normalised")
    val_texts = rows.filter(pl.col("split") == "validation")["text"].to_list()
    cached_features(val_texts, False, cache, factory, label="validation raw")
    log.info("features ready in %.0f s", time.perf_counter() - started)
    if args.features_only:
        return 0
    from detectors.aitext.fit import fit_and_report

    values, emb = cached_features(texts, True, cache, factory)
    raw_values, raw_emb = cached_features(val_texts, False, cache, factory)
    out = Path(args.out)
    adapter_info: dict[str, Any] | None = None
    if args.finetune:
        logit, raw_logit, adapter_info = _finetune_adapter(args, frame, rows, assignment, out)
    else:
        logit, raw_logit = np.full(rows.height, np.nan), np.full(len(val_texts), np.nan)
    values = np.column_stack([values, logit])
    raw_values = np.column_stack([raw_values, raw_logit])
    artifact = fit_and_report(
        rows=rows,
        values=values,
        embedding=emb,
        raw_values=raw_values,
        raw_embedding=raw_emb,
        group_assignment=assignment,
        seed=args.seed,
        command=" ".join(["chorus", *sys.argv[1:]]) if sys.argv else "chorus train-aitext",
    )
    from detectors.aitext.fit import heldout_sample

    artifact.training["lm_statistics"] = LM_INT8 if args.quantize else LM_FLOAT32
    artifact.training["lm_runtime"] = args.backend
    if args.quantize:
        from stream.models.onnx_export import QUANTIZATION

        artifact.version += "-int8"
        artifact.training["lm_quantization"] = QUANTIZATION
    if adapter_info is not None:
        artifact.encoder_adapter = {"file": adapter_info["file"], "sha256": adapter_info["sha256"]}
        artifact.training["encoder_adapter"] = adapter_info
        artifact.training["model"] += (
            "; enc_adapter_logit: LoRA-fine-tuned MiniLM top layers (out-of-fold on train rows)"
        )
    save_head(artifact, out)
    sample = heldout_sample(artifact, rows, values, emb, assignment, seed=args.seed)
    sample_path = out.with_name(out.stem + "_heldout_sample.json")
    sample_path.write_text(json.dumps(sample) + "\n", encoding="utf-8")
    print(f"wrote {sample_path}")
    print(json.dumps(artifact.metrics, indent=2))
    print(f"wrote {out}")
    return 0


def _finetune_adapter(
    args: argparse.Namespace, frame: pl.DataFrame, rows: pl.DataFrame, assignment: dict[str, str], out: Path
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Fine-tune the MiniLM adapter on the train accounts' train-split posts; its logit per row.

    Returns the final adapter's logit for every planned row and for the raw-text validation rows,
    and the adapter's record for the head's ``training``. Writes the adapter beside the head, or with
    ``--reuse-adapter`` loads the one already there (the head then retrains in about a minute).

    The head's train rows get the final adapter's logit, which has seen their accounts, not the
    out-of-fold logit: measured, stacking on out-of-fold logits fails here, because with 27 training
    accounts the fold models' logits disagree in scale and even sign from fold to fold (one fold's
    held-out accounts scored AUROC 0.26), so the head learnt a *negative* weight for the logit and
    its AUROC on the evaluate accounts fell to 0.62. The in-sample logit makes the head lean on the
    logit too much on its train rows; Platt scaling and the thresholds, fitted on the calibrate
    accounts (never seen by the adapter), correct its scale, and every metric is on unseen rows.
    """
    from tqdm import tqdm

    from detectors.aitext.features import MAX_ENCODER_TOKENS
    from detectors.aitext.finetune import (
        DEFAULT_ADAPTER,
        AdapterConfig,
        compute_trunk,
        cross_fit_adapter,
        predict_cached,
    )
    from detectors.aitext.text import triage
    from stream.models.weights import file_sha256, load_encoder

    config = AdapterConfig(  # max_tokens: the encoder's serving limit
        adapted_layers=args.adapted_layers, seed=args.seed, max_tokens=MAX_ENCODER_TOKENS
    )
    pool = frame.filter(pl.col("group").replace_strict(assignment).eq("train") & pl.col("split").eq("train"))
    if args.finetune_rows and pool.height > args.finetune_rows:
        must = pool["id"].is_in(rows.filter(pl.col("role") == "train")["id"].implode())
        extra = pool.filter(~must).sample(max(0, args.finetune_rows - int(must.sum())), seed=args.seed)
        pool = pl.concat([pool.filter(must), extra])
    val = rows.filter(pl.col("split") == "validation")
    prepared: dict[str, int] = {}  # model-ready text -> trunk row

    def index(texts: list[str], normalise: bool) -> np.ndarray:
        out_idx = np.full(len(texts), -1)
        for j, t in enumerate(texts):
            post = triage(t, normalise=normalise)
            if post.scored:
                out_idx[j] = prepared.setdefault(post.text, len(prepared))
        return out_idx

    path = out.with_name(DEFAULT_ADAPTER.name)
    reuse = args.reuse_adapter and path.is_file()
    row_idx, raw_idx = index(rows["text"].to_list(), True), index(val["text"].to_list(), False)
    pool_idx = np.zeros(0, dtype=int) if reuse else index(pool["text"].to_list(), True)
    tokenizer, encoder = load_encoder("cpu")
    with tqdm(total=len(prepared), desc="adapter: trunk states", unit="post", file=sys.stderr) as bar:
        trunk = compute_trunk(
            tokenizer, encoder, list(prepared), config.adapted_layers, config.max_tokens, progress=bar.update
        )
    if reuse:
        adapter = read_adapter(path)
        module = adapter.build_module(encoder, merge=False)
        log.info("reusing the encoder adapter %s (no fine-tuning)", path)
    else:
        labels = np.zeros(len(prepared))
        groups = np.empty(len(prepared), dtype=object)
        ok = pool_idx >= 0
        labels[pool_idx[ok]] = pool["label"].to_numpy()[ok]
        groups[pool_idx[ok]] = pool["group"].to_numpy()[ok]
        fit = cross_fit_adapter(encoder, trunk, labels, groups, np.unique(pool_idx[ok]), config, log=log.info)
        adapter, module = fit.adapter, fit.module
        save_adapter(adapter, path)
        print(f"wrote {path}")

    def logits(idx: np.ndarray) -> np.ndarray:
        result = np.full(len(idx), np.nan)
        result[idx >= 0] = predict_cached(module, encoder, trunk, idx[idx >= 0])
        return result

    row_logit, raw_logit = logits(row_idx), logits(raw_idx)
    return (
        row_logit,
        raw_logit,
        {"file": path.name, "sha256": file_sha256(path), "config": asdict(adapter.config), **adapter.training},
    )


# --- scoring files ------------------------------------------------------------------------------------


# --- ONNX exports ------------------------------------------------------------------------------------


