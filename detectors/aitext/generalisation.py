"""Does the detector hold on a generator or a corpus it never saw? Leave-one-out tables and slices.

The question that matters is not "how well does it fit my data" but "how well does it catch the next
model": so every modern generator (and every source corpus) is in turn removed from training, the
head refitted on the rest, and the held-out one scored against human posts of held-out accounts.
Pure: arrays in, rows of numbers out; the fitting function is passed in, so the protocol is the
same whatever the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from detectors.evaluation import auroc

#: fit(x_train, y_train) -> score(x) : the model under test, refitted for each held-out slice.
Fitter = Callable[[np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]]


def rate_at(scores: np.ndarray, threshold: float) -> float:
    """Share of ``scores`` at or above ``threshold`` (NaN for none)."""
    return float((scores >= threshold).mean()) if len(scores) else float("nan")


def tpr_at_fpr(human: np.ndarray, machine: np.ndarray, fpr: float) -> float:
    """Share of machine scores above the human score that ``fpr`` of humans exceed."""
    if not len(human) or not len(machine):
        return float("nan")
    threshold = np.quantile(human, 1.0 - fpr, method="higher")
    return float((machine > threshold).mean())


def slice_row(name: str, human: np.ndarray, machine: np.ndarray, default: float) -> dict[str, Any]:
    """One report row: AUROC, TPR at 1% and 0.1% FPR, and the flagged share at the default threshold."""
    y = np.r_[np.zeros(len(human)), np.ones(len(machine))]
    s = np.r_[human, machine]
    return {
        "slice": name,
        "machine_posts": len(machine),
        "human_posts": len(human),
        "auroc": auroc(y, s) if len(human) and len(machine) else float("nan"),
        "tpr_at_1pct_fpr": tpr_at_fpr(human, machine, 0.01),
        "tpr_at_0.1pct_fpr": tpr_at_fpr(human, machine, 0.001),
        "flagged_at_default": rate_at(machine, default),
    }


def leave_one_out(
    x: np.ndarray,
    y: np.ndarray,
    held_key: np.ndarray,
    is_train: np.ndarray,
    is_eval: np.ndarray,
    keys: Sequence[str],
    fit: Fitter,
    fpr_for_threshold: float = 0.01,
    is_calibrate: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """For each key: fit without its rows (any label), score its held-out machine rows vs held-out humans.

    ``held_key`` names each row's generator or source; removing a *source* removes its humans too, so
    the refit never saw that corpus at all, and its machine rows are judged against its own held-out
    humans (the same domain) where it has some, else against all held-out humans. The flagged share
    uses a threshold set at ``fpr_for_threshold`` on the calibrate rows' humans of the same refit
    (never on the held-out ones).
    """
    rows = []
    humans_eval = is_eval & (y == 0)
    for key in keys:
        keep = is_train & (held_key != key)
        score = fit(x[keep], y[keep])
        machine = is_eval & (y == 1) & (held_key == key)
        if not machine.any():
            continue
        # a held-out source is judged against its own humans (same domain) when it has any
        own_humans = humans_eval & (held_key == key)
        human = own_humans if own_humans.any() else humans_eval
        cal_humans = (is_calibrate if is_calibrate is not None else is_train) & (y == 0) & (held_key != key)
        threshold = float(np.quantile(score(x[cal_humans]), 1.0 - fpr_for_threshold, method="higher"))
        rows.append(slice_row(key, score(x[human]), score(x[machine]), threshold))
    return rows


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
