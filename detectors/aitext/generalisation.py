"""The numbers a detector report is made of: one row per slice of posts, and human false-positive rates.

Every row answers the same questions for one slice (a generator, a source, a language, a held-out
generator's refit): how well are its machine posts ranked above the human ones (AUROC), how many
are caught at 1% and 0.1% false positives, and how many the default threshold flags. Pure: arrays
in, rows of numbers out (:mod:`detectors.aitext.fit_modern` runs the leave-one-out refits).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detectors.evaluation import auroc, tpr_at_fpr


def rate_at(scores: np.ndarray, threshold: float) -> float:
    """Share of ``scores`` at or above ``threshold`` (NaN for none)."""
    return float((scores >= threshold).mean()) if len(scores) else float("nan")


def slice_row(name: str, human: np.ndarray, machine: np.ndarray, default: float) -> dict[str, Any]:
    """One report row: AUROC, TPR at 1% and 0.1% FPR, and the flagged share at the default threshold."""
    y = np.r_[np.zeros(len(human)), np.ones(len(machine))]
    s = np.r_[human, machine]
    both = bool(len(human) and len(machine))
    return {
        "slice": name,
        "machine_posts": len(machine),
        "human_posts": len(human),
        "auroc": auroc(y, s) if both else float("nan"),
        "tpr_at_1pct_fpr": tpr_at_fpr(y, s, 0.01).tpr if both else float("nan"),
        "tpr_at_0.1pct_fpr": tpr_at_fpr(y, s, 0.001).tpr if both else float("nan"),
        "flagged_at_default": rate_at(machine, default),
    }


def worst_account_fpr(
    scores: np.ndarray, accounts: np.ndarray, threshold: float, min_posts: int = 20
) -> dict[str, Any]:
    """Pooled false-positive rate of human posts, and the account with the highest rate (>= ``min_posts``)."""
    pooled = rate_at(scores, threshold)
    worst: dict[str, Any] = {"account": None, "posts": 0, "fpr": float("nan")}
    for account in np.unique(accounts):
        mine = scores[accounts == account]
        if len(mine) >= min_posts:
            rate = rate_at(mine, threshold)
            if worst["account"] is None or rate > worst["fpr"]:
                worst = {"account": str(account), "posts": len(mine), "fpr": rate}
    return {"pooled_fpr": pooled, "human_posts": len(scores), "worst_account": worst}
