"""Fit, calibrate, set thresholds and measure the AI-text head (called by ``chorus train-aitext``).

Pure: arrays and a frame of row metadata in, an :class:`AiTextHead` with its metrics out. Needs
scikit-learn (a training-time dependency only: applying the head is numpy).

How each learnt piece is chosen, and on which rows:

* **regression weights**: L2 logistic regression on the *train* accounts; the feature set (all, or
  scalars without the embedding) and the regularisation strength ``C`` by grouped cross-validation
  (folds hold out whole accounts) on those same accounts.
* **calibration**: Platt scaling of the regression's log-odds on the *calibrate* accounts, with
  class weights so the probability is for a 50/50 prior (the stream's real prior is unknown).
* **thresholds**: on the *calibrate* accounts' human posts. ``fpr_1pct`` / ``fpr_0.1pct`` are the
  smallest log-odds with at most 1% / 0.1% of those posts at or above them; ``default`` is the stricter
  of probability 0.5 and ``fpr_1pct``, because flagging a real person costs more than missing a bot.
* **metrics**: on the *evaluate* accounts (never seen by any step above), and, for comparison with
  published numbers, on TweepFake's whole validation split (whose accounts the published protocol
  also trains on), on normalised and raw text.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import polars as pl

from detectors.aitext.features import EMBEDDING_DIM, FEATURE_NAMES
from detectors.aitext.head import AiTextHead
from detectors.aitext.training import (
    Standardiser,
    binary_report,
    fit_platt,
    per_feature_auroc,
    sigmoid,
    threshold_for_fpr,
)
from detectors.evaluation import auroc, calibration_bins, tpr_at_fpr

HEAD_VERSION = "lr-v1"
C_GRID: tuple[float, ...] = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
TARGET_FPRS: dict[str, float] = {"fpr_1pct": 0.01, "fpr_0.1pct": 0.001}


def _fit_lr(z: np.ndarray, y: np.ndarray, c: float, seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(z, y)


#: Feature sets the grouped cross-validation chooses between: everything, or the scalar features
#: alone (the embedding carries each account's topics, which may not transfer to new accounts).
FEATURE_SETS: tuple[str, ...] = ("all", "scalars")


def feature_columns(feature_set: str, n_scalar: int, n_total: int) -> np.ndarray:
    """Column indices of the design matrix a feature set uses."""
    return np.arange(n_scalar if feature_set == "scalars" else n_total)


def threshold_for_fpr_per_group(
    human_scores: np.ndarray, groups: np.ndarray, target_fpr: float
) -> tuple[float, dict[str, float]]:
    """The strictest of the per-account thresholds at ``target_fpr``, and each account's.

    Why per account: human posts of one account are not independent draws (one person's style),
    so a threshold pooled over a few accounts is set by the most numerous one and fails on the
    next account it meets; requiring the rate on every calibration account is the conservative
    choice for automated actions.
    """
    per_account = {
        str(g): threshold_for_fpr(human_scores[groups == g], target_fpr) for g in sorted(set(groups.tolist()))
    }
    return (max(per_account.values()) if per_account else float("inf")), per_account


def choose_model(
    z: np.ndarray, y: np.ndarray, groups: np.ndarray, n_scalar: int, seed: int, folds: int = 4
) -> tuple[str, float, dict[str, float]]:
    """(feature set, C) with the best mean AUROC over account-grouped folds of the training rows.

    Folds hold out whole accounts, so this scores what matters: posts of accounts never seen.
    """
    from sklearn.model_selection import GroupKFold

    n_folds = min(folds, len(np.unique(groups)))
    scores: dict[str, float] = {}
    for feature_set in FEATURE_SETS:
        cols = feature_columns(feature_set, n_scalar, z.shape[1])
        for c in C_GRID:
            fold_auc = []
            for tr, te in GroupKFold(n_splits=n_folds).split(z, y, groups):
                if len(np.unique(y[te])) < 2:
                    continue
                model = _fit_lr(z[tr][:, cols], y[tr], c, seed)
                fold_auc.append(auroc(y[te], model.decision_function(z[te][:, cols])))
            scores[f"{feature_set}/C={c}"] = float(np.mean(fold_auc)) if fold_auc else float("nan")
    best = max(scores, key=lambda k: np.nan_to_num(scores[k], nan=-1))
    feature_set, c_text = best.split("/C=")
    return feature_set, float(c_text), scores


def evaluation_block(
    y: np.ndarray, score: np.ndarray, thresholds: dict[str, float], strata: np.ndarray | None = None
) -> dict[str, Any]:
    """AUROC, TPR at 1%/0.1% FPR (thresholds re-fit on these rows), and reports at saved thresholds."""
    ok = np.isfinite(score)
    y, score = y[ok], score[ok]
    block: dict[str, Any] = {
        "n": len(y),
        "auroc": auroc(y, score),
        "tpr_at_1pct_fpr_oracle": tpr_at_fpr(y, score, 0.01).tpr,
        "tpr_at_0.1pct_fpr_oracle": tpr_at_fpr(y, score, 0.001).tpr,
        "at_thresholds": {name: binary_report(y, score, t) for name, t in thresholds.items()},
    }
    if strata is not None:
        strata = strata[ok]
        block["recall_by_generator_at_default"] = {
            str(s): float((score[(strata == s) & (y == 1)] >= thresholds["default"]).mean())
            for s in np.unique(strata[y == 1])
        }
    return block


def fit_and_report(
    rows: pl.DataFrame,
    values: np.ndarray,
    embedding: np.ndarray,
    raw_values: np.ndarray,
    raw_embedding: np.ndarray,
    group_assignment: dict[str, str],
    seed: int = 0,
    command: str = "chorus train-aitext",
) -> AiTextHead:
    """Fit the head on the rows' ``role`` column (train / calibrate / evaluate / validation)."""
    role = rows["role"].to_numpy()
    y = rows["label"].to_numpy().astype(int)
    groups = rows["group"].to_numpy()
    strata = rows["stratum"].to_numpy()
    x = np.concatenate([values, embedding.astype(np.float64)], axis=1)
    scored = np.isfinite(values).any(axis=1)
    tr = (role == "train") & scored
    cal = (role == "calibrate") & scored

    std = Standardiser.fit(x[tr])
    z = std.transform(x)
    k = len(FEATURE_NAMES)
    feature_set, c, cv_auroc = choose_model(z[tr], y[tr], groups[tr], k, seed)
    cols = feature_columns(feature_set, k, z.shape[1])
    model = _fit_lr(z[tr][:, cols], y[tr], c, seed)
    coef = np.zeros(z.shape[1])
    coef[cols] = model.coef_[0]  # unused columns weigh 0: the head's layout stays the same
    intercept = float(model.intercept_[0])
    raw = z @ coef + intercept

    # class-balanced Platt: weight each calibration class to half the mass
    a, b = fit_platt(raw[cal], y[cal], weights=np.where(y[cal] == 1, 0.5 / y[cal].sum(), 0.5 / (1 - y[cal]).sum()))
    log_odds = a * raw + b

    human = cal & (y == 0)
    human_cal, human_groups = log_odds[human], groups[human]
    thresholds_: dict[str, dict[str, Any]] = {}
    for name, target in TARGET_FPRS.items():
        t, per_account = threshold_for_fpr_per_group(human_cal, human_groups, target)
        thresholds_[name] = {
            "log_odds": t,
            "probability": float(sigmoid(np.array([t]))[0]),
            "how": f"smallest log-odds with at most {target:.1%} of the human posts of EACH calibrate account "
            f"at or above it ({len(human_cal)} posts of {len(per_account)} accounts; the strictest account "
            "sets it, because accounts differ more than posts and a threshold pooled over accounts let "
            "through 3x its rate on unseen accounts)",
            "per_account_log_odds": per_account,
            "achieved_fpr_on_calibrate": float((human_cal >= t).mean()),
        }
    default = max(0.0, thresholds_["fpr_1pct"]["log_odds"])
    thresholds_["default"] = {
        "log_odds": default,
        "probability": float(sigmoid(np.array([default]))[0]),
        "how": "stricter of calibrated probability 0.5 and the fpr_1pct threshold",
        "achieved_fpr_on_calibrate": float((human_cal >= default).mean()),
    }
    named = {k: v["log_odds"] for k, v in thresholds_.items()}

    ev = role == "evaluate"
    ev_val = ev & (rows["split"].to_numpy() == "validation")
    # TweepFake validation posts (published protocol: its accounts also appear in training), less
    # any post also drawn for calibration. Raw-text features are row-aligned with split == validation.
    in_val = rows["split"].to_numpy() == "validation"
    cal_ids = rows.filter(pl.col("role") == "calibrate")["id"]
    fresh = ~rows["id"].is_in(cal_ids.implode()).to_numpy() & (role != "calibrate")
    keep_raw = fresh[in_val]
    val = in_val & fresh
    seen = np.array([group_assignment.get(g) == "train" for g in groups])
    val_seen = val & seen
    std_raw_x = np.concatenate([raw_values, raw_embedding.astype(np.float64)], axis=1)
    raw_log_odds = a * (std.transform(std_raw_x) @ coef + intercept) + b
    raw_log_odds = np.where(np.isfinite(raw_values).any(axis=1), raw_log_odds, np.nan)
    log_odds = np.where(scored, log_odds, np.nan)

    # a single feature used as a detector must pick its direction before seeing test posts
    directions = {
        name: (1.0 if auroc(y[tr], np.nan_to_num(x[tr][:, j])) >= 0.5 else -1.0) for j, name in enumerate(FEATURE_NAMES)
    }
    metrics: dict[str, Any] = {
        "evaluate_accounts_all_posts_normalised": evaluation_block(y[ev], log_odds[ev], named, strata[ev]),
        "evaluate_accounts_validation_split_normalised": evaluation_block(
            y[ev_val], log_odds[ev_val], named, strata[ev_val]
        ),
        "tweepfake_validation_sample_normalised": evaluation_block(y[val], log_odds[val], named, strata[val]),
        "tweepfake_validation_sample_train_accounts_normalised": evaluation_block(
            y[val_seen], log_odds[val_seen], named, strata[val_seen]
        ),
        "tweepfake_validation_sample_raw": evaluation_block(y[val], raw_log_odds[keep_raw], named, strata[val]),
        "single_feature_auroc_on_evaluate_accounts_direction_from_train": {
            name: auroc(y[ev & scored], directions[name] * np.nan_to_num(x[ev & scored][:, j]))
            for j, name in enumerate(FEATURE_NAMES)
        },
        "single_feature_auroc_on_evaluate_accounts_best_direction": per_feature_auroc(
            x[ev & scored][:, : len(FEATURE_NAMES)], y[ev & scored], FEATURE_NAMES
        ),
        "calibration_reliability_on_evaluate": calibration_bins(
            y[ev & scored], sigmoid(log_odds[ev & scored]), n_bins=5
        ).to_dicts(),
    }
    training = {
        "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command,
        "data": "TweepFake (dev_tweepfake_trainval.jsonl.gz), text normalised (URLs, @mentions)",
        "seed": seed,
        "rows_per_role": {r: int((role == r).sum()) for r in np.unique(role)},
        "accounts_per_split": {
            s: sorted(g for g, v in group_assignment.items() if v == s) for s in ("train", "calibrate", "evaluate")
        },
        "model": "L2 logistic regression (scikit-learn) on standardised features (+ MiniLM embedding)",
        "feature_set": feature_set,
        "C": c,
        "grouped_cv_auroc_on_train_accounts": cv_auroc,
        "platt": "class-balanced Platt scaling on calibrate accounts",
        "single_feature_direction_on_train": directions,
    }
    return AiTextHead(
        version=HEAD_VERSION,
        feature_names=list(FEATURE_NAMES),
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


def heldout_sample(
    head: AiTextHead,
    rows: pl.DataFrame,
    values: np.ndarray,
    embedding: np.ndarray,
    group_assignment: dict[str, str],
    n_per_class: int = 100,
    seed: int = 0,
) -> dict[str, Any]:
    """A small, fixed, text-free sample of held-out TweepFake validation posts for the test suite.

    Two parts, ``n_per_class`` posts of each label each: posts of accounts the head was trained on
    (``seen_account`` true: TweepFake's published protocol, new tweets of known accounts) and posts
    of the evaluate accounts, which no training step saw.

    The suite must run without the development data and the repository must not hold real
    people's posts, so no text and no embedding is kept (sentence embeddings can be inverted back
    towards the text). Per post it keeps the label, the author kind, the scalar features and one
    number: the embedding's contribution to the head's uncalibrated log-odds, ``sum_j coef_j z_j``.
    That is enough to recompute the head's score exactly, and says nothing readable about the post.
    ``coef_digest`` ties the sample to the head it was made with.
    """
    role = rows["role"].to_numpy()
    split = rows["split"].to_numpy()
    y = rows["label"].to_numpy().astype(int)
    seen = np.array([group_assignment.get(g) == "train" for g in rows["group"].to_numpy()])
    base = (split == "validation") & (role != "calibrate") & np.isfinite(values).any(axis=1)
    rng = np.random.default_rng(seed)
    picked_parts = []
    for part in (base & seen, base & (role == "evaluate")):
        for c in (0, 1):
            pool = np.flatnonzero(part & (y == c))
            picked_parts.append(rng.choice(pool, size=min(n_per_class, len(pool)), replace=False))
    picked = np.unique(np.concatenate(picked_parts))
    k = len(head.feature_names)
    x = head.design_matrix(values[picked], embedding[picked])
    z = (x - np.asarray(head.mean_)) / np.asarray(head.scale_)
    z = np.where(np.isfinite(z), z, 0.0)
    emb_contribution = z[:, k:] @ np.asarray(head.coef_)[k:]
    return {
        "what": "held-out TweepFake validation posts (seen and unseen accounts); no text, see fit.heldout_sample",
        "head_version": head.version,
        "coef_digest": coef_digest(head),
        "feature_names": head.feature_names,
        "single_feature_direction_on_train": head.training.get("single_feature_direction_on_train", {}),
        "label": y[picked].tolist(),
        "seen_account": seen[picked].tolist(),
        "author_kind": rows["stratum"].to_numpy()[picked].tolist(),
        "features": [[float(f"{v:.7g}") for v in row] for row in values[picked]],
        "embedding_contribution": [float(f"{v:.7g}") for v in emb_contribution],
    }


def coef_digest(head: AiTextHead) -> str:
    """Short hash of the head's learnt numbers, to tie derived files to the head they came from."""
    import hashlib
    import json

    numbers = [*head.mean_, *head.scale_, *head.coef_, head.intercept_]
    text = ",".join(f"{v:.7g}" for v in numbers)
    if head.trees:  # a linear head's digest stays what it was
        text += "|" + json.dumps(head.trees, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]
