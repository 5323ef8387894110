"""Per-account running estimate: how much of an account's recent output looks machine-written.

Why: one short post is weak evidence (a tweet is ~30 tokens), and analysts act on accounts. An
account's share of machine-written posts is estimated from its most recent ``window`` scored posts
as the mean calibrated probability, with a Wilson score interval at ``confidence`` computed on the
fractional count ``sum(p)`` of ``n`` posts. The interval narrows as posts accumulate, so a policy
can act on the lower bound ("at least 60% of this account's recent posts, with 95% confidence").

Caveat, stated so nobody over-reads it: posts of one account are not independent draws, so the
interval is a guide to how much evidence there is, not an exact coverage guarantee.

Two forms of the same maths: :func:`account_machine_share` over a frame (notebooks, batch jobs),
and :class:`RunningAccountEstimate` updated per micro-batch (the stream).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import polars as pl

DEFAULT_WINDOW = 50
DEFAULT_CONFIDENCE = 0.95


def _z(confidence: float) -> float:
    """Two-sided normal quantile for ``confidence`` (inverse erf by bisection: no scipy needed)."""
    target = confidence
    lo, hi = 0.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if math.erf(mid / math.sqrt(2)) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def wilson_interval(successes: float, n: float, confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval for a proportion; (0, 1) when ``n`` is 0. Accepts fractional counts."""
    if n <= 0:
        return 0.0, 1.0
    z = _z(confidence)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class AccountEstimate:
    """Machine-likelihood of one account's recent posts."""

    account_id: str
    n_posts: int
    machine_share: float  # mean calibrated probability of the recent scored posts
    lower: float
    upper: float


def account_machine_share(
    posts: pl.DataFrame,
    probability: Iterable[float],
    window: int = DEFAULT_WINDOW,
    confidence: float = DEFAULT_CONFIDENCE,
) -> pl.DataFrame:
    """Per account: its last ``window`` scored posts' mean probability and Wilson interval.

    ``posts`` needs ``account_id`` and ``created_at``; ``probability`` is row-aligned with it (NaN for
    posts that were not scored, which are left out). Returns columns ``account_id, n_posts,
    machine_share, lower, upper``.
    """
    frame = posts.select("account_id", "created_at").with_columns(
        probability=pl.Series(np.asarray(list(probability), dtype=np.float64))
    )
    recent = (
        frame.filter(pl.col("probability").is_not_nan() & pl.col("probability").is_not_null())
        .sort("created_at")
        .group_by("account_id", maintain_order=True)
        .tail(window)
        .group_by("account_id", maintain_order=True)
        .agg(n_posts=pl.len(), machine_share=pl.col("probability").mean(), total=pl.col("probability").sum())
    )
    bounds = [wilson_interval(t, n, confidence) for t, n in zip(recent["total"], recent["n_posts"], strict=True)]
    return recent.with_columns(
        lower=pl.Series([b[0] for b in bounds], dtype=pl.Float64),
        upper=pl.Series([b[1] for b in bounds], dtype=pl.Float64),
    ).select("account_id", "n_posts", "machine_share", "lower", "upper")


class RunningAccountEstimate:
    """Streaming form: keep each account's last ``window`` probabilities, update per micro-batch."""

    def __init__(self, window: int = DEFAULT_WINDOW, confidence: float = DEFAULT_CONFIDENCE) -> None:
        self.window = window
        self.confidence = confidence
        self._recent: dict[str, deque[float]] = {}

    def update(self, account_ids: Iterable[str], probability: Iterable[float]) -> None:
        """Add a batch's probabilities (in time order); NaN (not scored) posts are skipped."""
        for account, p in zip(account_ids, probability, strict=True):
            if p is None or not math.isfinite(p):
                continue
            self._recent.setdefault(account, deque(maxlen=self.window)).append(float(p))

    def estimate(self, account_id: str) -> AccountEstimate:
        recent = self._recent.get(account_id, deque())
        n = len(recent)
        total = float(sum(recent))
        lower, upper = wilson_interval(total, n, self.confidence)
        return AccountEstimate(account_id, n, total / n if n else float("nan"), lower, upper)
