"""Pure training and evaluation maths for the AI-text head: group splits, ROC, thresholds, fitting.

No file is read here: ``stream/training/tweepfake.py`` loads the data, caches the features and calls these
functions. Everything random takes a ``seed``.

Why split by group: ``group`` is the leakage key of the development data (the account a tweet came
from, the prompt pair of a generated text). A head evaluated on posts of accounts it was trained on
learns each account's topics and style and overstates what it does on a new account, so train,
calibration and evaluation posts come from disjoint groups.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from detectors.evaluation import auroc

SPLITS: tuple[str, ...] = ("train", "calibrate", "evaluate")


def assign_group_splits(
    group_rows: Mapping[str, int],
    group_stratum: Mapping[str, str],
    fractions: Mapping[str, float] | None = None,
    seed: int = 0,
) -> dict[str, str]:
    """Assign whole groups to train / calibrate / evaluate, per stratum, to approach row fractions.

    Within each stratum (e.g. human accounts, GPT-2 bots, RNN bots) groups are shuffled with
    ``seed`` and each goes to the split whose share of the stratum's rows is furthest below its
    target, so every split sees every kind of author even though group sizes differ 60-fold. A
    stratum with fewer groups than splits fills calibrate and evaluate first, as those need every
    kind to measure anything; train is then filled by the larger strata.
    """
    fractions = dict(fractions or {"train": 0.6, "calibrate": 0.2, "evaluate": 0.2})
    rng = np.random.default_rng(seed)
    by_stratum: dict[str, list[str]] = {}
    for group in sorted(group_rows):
        by_stratum.setdefault(group_stratum[group], []).append(group)
    assignment: dict[str, str] = {}
    for stratum in sorted(by_stratum):
        groups = by_stratum[stratum]
        order = [groups[i] for i in rng.permutation(len(groups))]
        total = sum(group_rows[g] for g in order)
        filled = dict.fromkeys(fractions, 0)
        for position, group in enumerate(order):
            if position < len(fractions) and len(order) >= len(fractions):
                # one group each first (the largest-deficit rule could leave a split empty)
                split = ("train", "calibrate", "evaluate")[position]
            else:
                split = max(fractions, key=lambda s: fractions[s] - filled[s] / max(total, 1))
            assignment[group] = split
            filled[split] += group_rows[group]
    return assignment


def balanced_sample(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices of up to ``n`` rows with as equal a count of each label as the data allows."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    if n >= len(labels) or len(classes) == 0:
        return np.arange(len(labels))
    per_class = n // len(classes)
    picked: list[np.ndarray] = []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        picked.append(rng.choice(idx, size=min(per_class, len(idx)), replace=False))
    return np.sort(np.concatenate(picked))


def threshold_for_fpr(human_scores: np.ndarray, target_fpr: float) -> float:
    """Smallest threshold with at most ``target_fpr`` of human posts scoring ``>=`` it.

    With ``n`` human posts the achieved rate is ``floor(target * n) / n``; the caller records ``n``
    so a reader knows how many human posts a 0.1% threshold actually rests on.
    """
    s = np.sort(np.asarray(human_scores, dtype=np.float64))[::-1]
    allowed = int(np.floor(target_fpr * len(s)))
    if len(s) == 0:
        return float("inf")
    if allowed >= len(s):
        return float(s[-1])
    # scores strictly above s[allowed] are at most `allowed` posts; nudge above it
    return float(np.nextafter(s[allowed], np.inf))


def binary_report(y_true: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, TPR (recall), FPR and counts when flagging ``score >= threshold``."""
    y = np.asarray(y_true, dtype=bool)
    flagged = np.asarray(score) >= threshold
    return {
        "n": len(y),
        "n_machine": int(y.sum()),
        "n_human": int((~y).sum()),
        "accuracy": float((flagged == y).mean()) if len(y) else float("nan"),
        "tpr": float(flagged[y].mean()) if y.any() else float("nan"),
        "fpr": float(flagged[~y].mean()) if (~y).any() else float("nan"),
    }


@dataclass(frozen=True)
class Standardiser:
    """Column means and scales learnt on training rows; NaN inputs become the mean (0 after)."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardiser:
        mean = np.nanmean(x, axis=0)
        scale = np.nanstd(x, axis=0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        scale = np.where(np.isfinite(scale) & (scale > 1e-9), scale, 1.0)
        return cls(mean, scale)

    def transform(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, dtype=np.float64) - self.mean) / self.scale
        return np.where(np.isfinite(z), z, 0.0)


def fit_platt(
    score: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None, iterations: int = 200
) -> tuple[float, float]:
    """Platt scaling ``p = sigmoid(a * score + b)`` by Newton's method on the (weighted) log-loss.

    Uses Platt's smoothed targets ((n+ + 1)/(n+ + 2), 1/(n- + 2)) so a separable calibration set
    does not push ``a`` to infinity. ``weights`` per row (e.g. class-balancing) default to 1.

    Each Newton step is halved until the loss does not rise (Lin, Lin and Weng's backtracking,
    "A note on Platt's probabilistic outputs", 2007): a full step from ``a = 1, b = 0`` on scores
    far from zero saturates the sigmoid, the curvature vanishes and plain Newton runs off to
    ``a ~ 1e10`` (measured on scores offset by 5).
    """
    s = np.asarray(score, dtype=np.float64)
    y = np.asarray(y, dtype=bool)
    r = np.ones_like(s) if weights is None else np.asarray(weights, dtype=np.float64)
    r = r / r.mean() if len(r) else r
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    t = np.where(y, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))

    def loss(a: float, b: float) -> float:
        z = a * s + b
        return float(np.sum(r * (np.logaddexp(0.0, z) - t * z)))  # cross-entropy against t, stable

    a, b = 1.0, 0.0
    current = loss(a, b)
    for _ in range(iterations):
        p = sigmoid(a * s + b)
        w = r * np.maximum(p * (1 - p), 1e-12)
        g = np.array([np.sum(r * (p - t) * s), np.sum(r * (p - t))])
        h = np.array([[np.sum(w * s * s), np.sum(w * s)], [np.sum(w * s), np.sum(w)]]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(h, g)
        scale = 1.0
        while scale > 1e-12 and loss(a - scale * step[0], b - scale * step[1]) > current:
            scale /= 2
        a, b = a - scale * step[0], b - scale * step[1]
        current = loss(a, b)
        if np.abs(scale * step).max() < 1e-10:
            break
    return float(a), float(b)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1 / (1 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1 + ex)
    return out


def per_feature_auroc(x: np.ndarray, y: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """AUROC of each single feature, oriented the better way (so it is >= 0.5 up to noise).

    The orientation is a choice made on the data it is measured on, so this flatters single
    features slightly — a conservative baseline for "the head beats every single feature".
    """
    out: dict[str, float] = {}
    for j, name in enumerate(names):
        col = np.nan_to_num(np.asarray(x[:, j], dtype=np.float64), nan=np.nanmedian(x[:, j]))
        a = auroc(y, col)
        out[name] = float(max(a, 1 - a)) if np.isfinite(a) else float("nan")
    return out
