"""``chorus train-aitext-stage``: fit, threshold and measure the SmolLM2 second stage of the modern head.

SmolLM2 statistics cost ~0.1-0.3 s per post on two shared cores, so the stage is fitted on a
stratified *sample* of the corpus rather than all of it: up to ``per_generator`` machine pieces of
every generator and ``humans`` human pieces, drawn with a fixed seed from the calibrate split (fit on
one half of its accounts and groups, thresholds on the other, the halves the fast head's own
calibration used) and measured on a sample of the evaluate split, which nothing fitted saw. The
statistics are cached by text under ``.cache/aitext/`` so a re-run computes only new pieces.

Measured on the evaluate sample (written into the head and its report): every generator and
source as served (the statistics only where promoted), the same with the fast head alone, the
share of posts that needed the language model, and each generator left out of the *stage*'s fit
(the fast head under it was fitted with every generator, which the report says).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from detectors.aitext.generalisation import slice_row, worst_account_fpr
from detectors.aitext.head import AiTextHead
from detectors.aitext.lm_stage import STAGE_SUFFIX, LmStage, build_lm_stage
from detectors.aitext.metrics import LM_FEATURE_NAMES
from detectors.aitext.text import stylometric_features
from stream.training.modern import DEFAULT_EMBEDDING_CACHE, cached_embeddings, text_key

log = logging.getLogger(__name__)

DEFAULT_LM_CACHE = Path(".cache/aitext/lm-smollm2.parquet")


def stratified_sample(corpus: pl.DataFrame, split: str, per_generator: int, humans: int, seed: int) -> pl.DataFrame:
    """Up to ``per_generator`` machine pieces of each generator and ``humans`` human pieces of ``split``."""
    rows = corpus.filter(pl.col("split") == split)
    machine = (
        rows.filter(pl.col("label") == 1)
        .with_columns(_r=pl.int_range(pl.len()).shuffle(seed=seed).over("generator"))
        .filter(pl.col("_r") < per_generator)
        .drop("_r")
    )
    people = rows.filter(pl.col("label") == 0)
    return pl.concat([machine, people.sample(n=min(humans, people.height), seed=seed)])


def cached_lm_features(texts: list[str], cache: Path, threads: int | None = None) -> np.ndarray:
    """SmolLM2 statistics of ``texts`` (``LM_FEATURE_NAMES`` columns), computing only the uncached ones."""
    keys = [text_key(t) for t in texts]
    known: dict[str, np.ndarray] = {}
    if cache.is_file():
        frame = pl.read_parquet(cache)
        known = dict(zip(frame["key"].to_list(), frame.select(LM_FEATURE_NAMES).to_numpy(), strict=True))
    missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in known}.items())
    if missing:
        from detectors.aitext.features import LanguageModelScorer, TorchCausalLM
        from detectors.aitext.models import SMOLLM2_DOCUMENT_START_ID
        from stream.models.threads import configure_torch_threads
        from stream.models.weights import load_language_model

        configure_torch_threads(threads)
        tokenizer, model = load_language_model("cpu")
        scorer = LanguageModelScorer(tokenizer, TorchCausalLM(model), document_start_id=SMOLLM2_DOCUMENT_START_ID)
        started, batch = time.monotonic(), 500
        for i in range(0, len(missing), batch):
            chunk = missing[i : i + batch]
            result = scorer.score([t for _, t in chunk])
            known.update({k: v for (k, _), v in zip(chunk, result.features, strict=True)})
            done = i + len(chunk)
            log.info(
                "SmolLM2 statistics of %d/%d new pieces (%.1f/s)",
                done,
                len(missing),
                done / (time.monotonic() - started),
            )
            cache.parent.mkdir(parents=True, exist_ok=True)
            values = np.stack(list(known.values()))
            columns = {n: values[:, j] for j, n in enumerate(LM_FEATURE_NAMES)}
            pl.DataFrame({"key": list(known), **columns}).write_parquet(cache)
    return np.stack([known[k] for k in keys]).reshape(len(texts), len(LM_FEATURE_NAMES))


def fast_head_scores(head: AiTextHead, texts: list[str], embedding_cache: Path) -> np.ndarray:
    """The fast head's calibrated log-odds of corpus pieces (their text is already prepared).

    MiniLM runs only for a head that reads its embedding (modern-lr-v4 and v5 read none).
    """
    embedding = cached_embeddings(texts, embedding_cache) if head.embedding_dim else None
    style = np.array([stylometric_features(t) for t in texts])
    values = np.column_stack([style, *head.extra_features(texts).values()])
    return head.decision_function(values, embedding)


def _measure(stage: LmStage, rows: pl.DataFrame, stage1: np.ndarray, lm: np.ndarray) -> dict[str, Any]:
    served = stage.without_language_model(stage1)
    promoted = stage.promote(stage1)
    served[promoted] = stage.decision_function(stage1[promoted], lm[promoted])
    y = rows["label"].to_numpy()
    human = y == 0
    default = stage.thresholds["default"]
    per_generator, per_source = [], []
    for generator in sorted(rows.filter(pl.col("label") == 1)["generator"].unique().to_list()):
        mine = (rows["generator"] == generator).to_numpy()
        per_generator.append(slice_row(generator, served[human], served[mine], default))
    for source in sorted(rows["source"].unique().to_list()):
        mine = (rows["source"] == source).to_numpy()
        if (mine & ~human).any() and (mine & human).any():
            per_source.append(slice_row(source, served[mine & human], served[mine & ~human], default))
    accounts = rows["account"].fill_null("").to_numpy()
    return {
        "pooled": slice_row("all machine pieces", served[human], served[~human], default),
        "human_fpr": worst_account_fpr(served[human], accounts[human], default),
        "per_generator": per_generator,
        "per_source": per_source,
        "promoted_share": {
            "human": float(promoted[human].mean()),
            "machine": float(promoted[~human].mean()),
            "all": float(promoted.mean()),
        },
    }


#: Zero-shot statistics with the direction the literature gives them (+1: higher means machine).
ZERO_SHOT_DIRECTIONS = {
    "lm_fast_detectgpt": 1.0,
    "lm_binoculars": -1.0,
    "lm_mean_loglik": 1.0,
    "lm_mean_logrank": -1.0,
    "lm_mean_entropy": -1.0,
}


def zero_shot_table(rows: pl.DataFrame, stage1: np.ndarray, lm: np.ndarray) -> list[dict[str, Any]]:
    """Per generator, AUROC of the fast head and of each SmolLM2 statistic alone (nothing fitted)."""
    from detectors.evaluation import auroc

    y = rows["label"].to_numpy()
    generators = rows["generator"].to_numpy()
    out = []
    for generator in ["all", *sorted(set(generators[y == 1]))]:
        mine = (y == 1) if generator == "all" else (generators == generator)
        keep = mine | (y == 0)
        row: dict[str, Any] = {
            "slice": generator,
            "machine_posts": int(mine.sum()),
            "fast head": auroc(y[keep], stage1[keep]),
        }
        for name, sign in ZERO_SHOT_DIRECTIONS.items():
            column = sign * lm[:, LM_FEATURE_NAMES.index(name)]
            ok = keep & np.isfinite(column)
            row[name.removeprefix("lm_")] = auroc(y[ok], column[ok])
        out.append(row)
    return out


def train_lm_stage(
    head: AiTextHead,
    corpus: pl.DataFrame,
    *,
    per_generator: int = 100,
    humans: int = 2500,
    eval_per_generator: int = 80,
    eval_humans: int = 1500,
    seed: int = 7,
    lm_cache: Path = DEFAULT_LM_CACHE,
    embedding_cache: Path = DEFAULT_EMBEDDING_CACHE,
    threads: int | None = None,
) -> AiTextHead:
    """The modern ``head`` carrying a fitted, thresholded and measured SmolLM2 stage (see the module docstring)."""
    from detectors.aitext.corpus import stable_unit
    from detectors.aitext.fit_modern import DEFAULT_TARGET_FPR, TARGET_FPRS, calibrate_halves

    started = time.monotonic()
    calibrate = stratified_sample(corpus, "calibrate", per_generator, humans, seed)
    evaluate = stratified_sample(corpus, "evaluate", eval_per_generator, eval_humans, seed)
    texts_c, texts_e = calibrate["text"].to_list(), evaluate["text"].to_list()
    lm_c = cached_lm_features(texts_c, lm_cache, threads)
    lm_e = cached_lm_features(texts_e, lm_cache, threads)
    s1_c = fast_head_scores(head, texts_c, embedding_cache)
    s1_e = fast_head_scores(head, texts_e, embedding_cache)
    names = list(LM_FEATURE_NAMES)
    y_c = calibrate["label"].to_numpy()
    # The fast head's regression was fitted on one half of the calibrate keys (its scores there are
    # optimistic); the stage uses only the other half, cut again by key: fit on one part, thresholds on the other.
    head_half = calibrate_halves(calibrate, seed=head.training.get("seed", 0))
    fit_half = ~head_half & np.array([stable_unit(k, seed) < 0.5 for k in calibrate["account"].to_list()])
    threshold_half = ~head_half & ~fit_half
    ok = np.isfinite(s1_c)
    build: dict[str, Any] = {"default_fpr": DEFAULT_TARGET_FPR, "target_fprs": TARGET_FPRS}
    stage = build_lm_stage(s1_c, lm_c, y_c, ok & fit_half, ok & threshold_half & (y_c == 0), names, **build)
    report = _measure(stage, evaluate, s1_e, lm_e)
    fast_default = head.thresholds["default"]
    y_e = evaluate["label"].to_numpy()
    report["fast_head_alone"] = {
        "pooled": slice_row("all machine pieces", s1_e[y_e == 0], s1_e[y_e == 1], fast_default),
        "per_generator": [
            slice_row(g, s1_e[y_e == 0], s1_e[(evaluate["generator"] == g).to_numpy()], fast_default)
            for g in sorted(evaluate.filter(pl.col("label") == 1)["generator"].unique().to_list())
        ],
        "human_fpr": worst_account_fpr(
            s1_e[y_e == 0], evaluate["account"].fill_null("").to_numpy()[y_e == 0], fast_default
        ),
    }
    # Each generator left out of the stage's fit and thresholds (the fast head under it still saw it).
    logo = []
    gen_c, gen_e = calibrate["generator"].to_numpy(), evaluate["generator"].to_numpy()
    for generator in sorted(set(gen_e[y_e == 1])):
        keep = ok & (gen_c != generator)
        held = build_lm_stage(s1_c, lm_c, y_c, keep & fit_half, keep & threshold_half & (y_c == 0), names, **build)
        served = held.without_language_model(s1_e)
        promoted = held.promote(s1_e)
        served[promoted] = held.decision_function(s1_e[promoted], lm_e[promoted])
        logo.append(slice_row(generator, served[y_e == 0], served[gen_e == generator], held.thresholds["default"]))
    report["leave_one_generator_out"] = logo
    report["zero_shot"] = zero_shot_table(evaluate, s1_e, lm_e)
    stage.metrics = {
        "written": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "calibrate_sample": {
            "pieces": calibrate.height,
            "per_generator": per_generator,
            "humans": humans,
            "fit_rows": int((ok & fit_half).sum()),
            "threshold_humans": int((ok & threshold_half & (y_c == 0)).sum()),
        },
        "evaluate_sample": {"pieces": evaluate.height, "per_generator": eval_per_generator, "humans": eval_humans},
        "seed": seed,
        "seconds": round(time.monotonic() - started, 1),
        **report,
    }
    return dataclasses.replace(head, lm_stage=stage.to_dict(), version=f"{head.version}+{STAGE_SUFFIX}")
