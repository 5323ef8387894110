"""Fit the fast AI-text head for modern generators, and measure how it generalises.

The head is a logistic regression over the frozen MiniLM embedding and the stylometric features of
a post's *stripped* text (:func:`detectors.aitext.corpus.strip_markers`), so it needs one encoder
call per micro-batch and no language model: fast enough for every post on a CPU.

What is learnt where (splits by account or group, :func:`detectors.aitext.corpus.split_by_key`):

* **weights**: the *train* keys; class-balanced, because the corpus holds more machine than human
  pieces and the stream's prior is unknown.
* **calibration**: class-balanced Platt scaling on the *calibrate* keys.
* **thresholds**: on the *calibrate* keys' human posts (thousands of posts of hundreds of people):
  ``fpr_1pct`` / ``fpr_0.1pct`` at those rates, ``default`` at :data:`DEFAULT_TARGET_FPR`, below 1%
  so that the rate on unseen people, which runs higher than on the people it was set on, stays under 1%.
* **metrics**: the *evaluate* keys only, never seen above; plus leave-one-generator-out and
  leave-one-source-out refits (:mod:`detectors.aitext.generalisation`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl

from detectors.aitext.corpus import MODERN_FAMILIES
from detectors.aitext.features import EMBEDDING_DIM
from detectors.aitext.generalisation import leave_one_out, slice_row, worst_account_fpr
from detectors.aitext.head import AiTextHead
from detectors.aitext.text import STYLE_FEATURE_NAMES
from detectors.aitext.training import Standardiser, fit_platt, sigmoid

HEAD_VERSION = "modern-lr-v1"
#: The default threshold's false-positive rate on the calibrate humans.
DEFAULT_TARGET_FPR = 0.005
TARGET_FPRS: dict[str, float] = {"fpr_1pct": 0.01, "fpr_0.1pct": 0.001}
#: L2 strength of the regression: chosen once on the train keys' leave-one-generator-out AUROC.
REGULARISATION_C = 1.0
#: Corpora of human *tweets*: the false-positive goal is stated on these.
TWEET_SOURCES = ("aigc_election2024", "tweepfake", "tweeteval", "ira_2017")


def lr_fitter(c: float = REGULARISATION_C, seed: int = 0) -> Callable[[np.ndarray, np.ndarray], Callable]:
    """A fitter for :func:`detectors.aitext.generalisation.leave_one_out`: standardise, then balanced LR."""
    from sklearn.linear_model import LogisticRegression

    def fit(x: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        std = Standardiser.fit(x)
        model = LogisticRegression(C=c, max_iter=3000, class_weight="balanced", random_state=seed)
        model.fit(std.transform(x), y)
        return lambda rows: model.decision_function(std.transform(rows))

    return fit


def _threshold(human_scores: np.ndarray, fpr: float) -> float:
    return float(np.quantile(human_scores, 1.0 - fpr, method="higher"))


def fit_modern_head(
    rows: pl.DataFrame,
    style: np.ndarray,
    embedding: np.ndarray,
    *,
    seed: int = 0,
    command: str = "chorus train-aitext-modern",
    leave_out: bool = True,
) -> AiTextHead:
    """Fit, calibrate, threshold and measure the head on the corpus ``rows`` (see the module docstring)."""
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate([style, embedding.astype(np.float64)], axis=1)
    y = rows["label"].to_numpy().astype(int)
    split = rows["split"].to_numpy()
    tr, cal = split == "train", split == "calibrate"
    std = Standardiser.fit(x[tr])
    z = std.transform(x)
    model = LogisticRegression(C=REGULARISATION_C, max_iter=3000, class_weight="balanced", random_state=seed)
    model.fit(z[tr], y[tr])
    coef, intercept = model.coef_[0], float(model.intercept_[0])
    raw = z @ coef + intercept
    weights = np.where(y[cal] == 1, 0.5 / y[cal].sum(), 0.5 / (1 - y[cal]).sum())
    a, b = fit_platt(raw[cal], y[cal], weights=weights)
    log_odds = a * raw + b

    cal_humans = log_odds[cal & (y == 0)]
    thresholds_: dict[str, dict[str, Any]] = {}
    for name, target in {**TARGET_FPRS, "default": DEFAULT_TARGET_FPR}.items():
        t = _threshold(cal_humans, target)
        thresholds_[name] = {
            "log_odds": t,
            "probability": float(sigmoid(np.array([t]))[0]),
            "how": f"{1 - target:.1%} quantile of the {len(cal_humans)} human posts of the calibrate accounts "
            f"and groups (pooled over {rows.filter(pl.lit(cal) & (pl.col('label') == 0))['account'].n_unique()} keys)",
            "achieved_fpr_on_calibrate": float((cal_humans >= t).mean()),
        }
    default = thresholds_["default"]["log_odds"]
    metrics = evaluation_metrics(rows, log_odds, default)
    if leave_out:
        metrics.update(leave_out_tables(rows, x, seed))
    training = {
        "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command,
        "data": "chorus aitext-corpus: modern-LLM and human pieces of 8-60 words; hashtags, emoji, links and "
        "mentions stripped",
        "text_preparation": "strip_markers",
        "lm_statistics": "none",
        "seed": seed,
        "rows_per_split": {s: int((split == s).sum()) for s in ("train", "calibrate", "evaluate")},
        "model": "class-balanced L2 logistic regression (scikit-learn) on standardised stylometry + MiniLM embedding",
        "C": REGULARISATION_C,
        "platt": "class-balanced Platt scaling on calibrate keys",
    }
    return AiTextHead(
        version=HEAD_VERSION,
        feature_names=list(STYLE_FEATURE_NAMES),
        embedding_dim=EMBEDDING_DIM,
        mean_=std.mean.tolist(),
        scale_=std.scale.tolist(),
        coef_=coef.tolist(),
        intercept_=intercept,
        platt_a_=a,
        platt_b_=b,
        thresholds_=thresholds_,
        metrics=metrics,
        training=training,
    )


def evaluation_metrics(rows: pl.DataFrame, log_odds: np.ndarray, default: float) -> dict[str, Any]:
    """Per generator, source and language on the evaluate keys, and the human false-positive rates."""
    y = rows["label"].to_numpy().astype(int)
    ev = rows["split"].to_numpy() == "evaluate"
    generator = rows["generator"].to_numpy()
    source = rows["source"].to_numpy()
    language = rows["language"].to_numpy()
    accounts = rows["account"].to_numpy()
    humans = ev & (y == 0)
    per_generator = [
        slice_row(g, log_odds[humans], log_odds[ev & (generator == g)], default)
        for g in sorted(set(generator[ev & (y == 1)]))
    ]
    per_source = []
    for s in sorted(set(source[ev & (y == 1)])):
        own = humans & (source == s)
        per_source.append(
            slice_row(s, log_odds[own if own.any() else humans], log_odds[ev & (y == 1) & (source == s)], default)
        )
    per_language = []
    for lang in sorted(set(language[ev])):
        mine = ev & (language == lang)
        per_language.append(slice_row(lang, log_odds[mine & (y == 0)], log_odds[mine & (y == 1)], default))
    tweets = humans & np.isin(source, TWEET_SOURCES)
    return {
        "evaluate_per_generator": per_generator,
        "evaluate_per_source": per_source,
        "evaluate_per_language": per_language,
        "evaluate_human_tweets_fpr_at_default": worst_account_fpr(log_odds[tweets], accounts[tweets], default),
        "evaluate_all_humans_fpr_at_default": worst_account_fpr(log_odds[humans], accounts[humans], default),
        "evaluate_modern_pooled": slice_row(
            "modern generators", log_odds[humans], log_odds[ev & np.isin(generator, list(MODERN_FAMILIES))], default
        ),
    }


def leave_out_tables(rows: pl.DataFrame, x: np.ndarray, seed: int) -> dict[str, Any]:
    """Leave-one-generator-out (modern families) and leave-one-source-out refits."""
    y = rows["label"].to_numpy().astype(int)
    split = rows["split"].to_numpy()
    generator = rows["generator"].to_numpy()
    source = rows["source"].to_numpy()
    fit = lr_fitter(seed=seed)
    common = {"is_train": split == "train", "is_eval": split == "evaluate", "is_calibrate": split == "calibrate"}
    modern = sorted(set(generator[y == 1]) & MODERN_FAMILIES)
    sources = sorted(set(source[y == 1]))
    return {
        "leave_one_generator_out": leave_one_out(x, y, generator, keys=modern, fit=fit, **common),
        "leave_one_source_out": leave_one_out(x, y, source, keys=sources, fit=fit, **common),
    }
