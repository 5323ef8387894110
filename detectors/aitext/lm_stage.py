"""The AI-text detector's second stage: SmolLM2 statistics, run only where they can change the call.

The fast head (MiniLM, stylometry, character n-grams) scores every post. Its log-odds and the
language model's zero-shot statistics (:mod:`detectors.aitext.metrics`: log-likelihood, log-rank,
entropy, the Fast-DetectGPT criterion, the one-model Binoculars ratio, GLTR buckets) go into a
small logistic regression: measured on held-out accounts, the statistics add most where the head
is weakest (older and open models, a model imitating real accounts, and SmolLM2 itself, the
network's own model) and little on the AIGC-Election tweets of GPT-4o, Claude 3 and Gemini 1.5.

SmolLM2 costs about ten times the head per post, so it is run on a post only when its result could
move the post across the default threshold. Each statistic is clipped to the range seen in
calibration, which bounds how far the statistics can lift a score; a post whose fast score is so
low that even the most machine-like statistics could not lift it to the threshold is decided
without them (:attr:`LmStage.promote_from`). Such a post's score is the regression with every
statistic at its calibration mean: the stage's best estimate without the language model, always
below the threshold, so skipping the model never changes a decision at the default threshold.

Pure: arrays in, scores out. Fitting needs scikit-learn (training only).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from detectors.aitext.metrics import LM_FEATURE_NAMES

#: The first input of the regression: the fast head's calibrated log-odds.
STAGE1_FEATURE = "fast_head_log_odds"
#: Appended to the head's version when it serves with this stage (``modern-lr-v2+smollm2-stage-v1``).
STAGE_SUFFIX = "smollm2-stage-v1"


@dataclass
class LmStage:
    """Learnt state; attributes ending in ``_`` were learnt from data."""

    lm_feature_names: list[str]
    mean_: list[float]  # stage-1 log-odds first, then the statistics
    scale_: list[float]
    coef_: list[float]
    intercept_: float
    clip_low_: list[float]  # per statistic
    clip_high_: list[float]
    #: name -> {"log_odds", "probability", "how", ...} on this stage's scale; must hold "default".
    thresholds_: dict[str, dict[str, Any]]
    #: Fast-head log-odds from which SmolLM2 runs (it cannot lift a lower post to "default").
    promote_from: float
    metrics: dict[str, Any]

    def __post_init__(self) -> None:
        width = 1 + len(self.lm_feature_names)
        for name in ("mean_", "scale_", "coef_"):
            if len(getattr(self, name)) != width:
                raise ValueError(f"lm stage: {name} has {len(getattr(self, name))} values, expected {width}")
        if "default" not in self.thresholds_:
            raise ValueError("lm stage: thresholds must include 'default'")
        self._mean = np.asarray(self.mean_, dtype=np.float64)
        self._scale = np.asarray(self.scale_, dtype=np.float64)
        self._coef = np.asarray(self.coef_, dtype=np.float64)
        self._low = np.asarray(self.clip_low_, dtype=np.float64)
        self._high = np.asarray(self.clip_high_, dtype=np.float64)

    @property
    def thresholds(self) -> dict[str, float]:
        return {name: float(t["log_odds"]) for name, t in self.thresholds_.items()}

    @property
    def slope(self) -> float:
        """How much one unit of the fast head's log-odds moves the stage's log-odds."""
        return float(self._coef[0] / self._scale[0])

    def feature_columns(self) -> list[int]:
        """Where this stage's statistics sit in :data:`LM_FEATURE_NAMES` order."""
        return [LM_FEATURE_NAMES.index(n) for n in self.lm_feature_names]

    def _lm_part(self, lm_values: np.ndarray) -> np.ndarray:
        """Each statistic's term, clipped to calibration's range; a missing one counts as its mean."""
        clipped = np.clip(np.asarray(lm_values, dtype=np.float64), self._low, self._high)
        z = (clipped - self._mean[1:]) / self._scale[1:]
        return np.where(np.isfinite(z), z, 0.0) * self._coef[1:]

    def _stage1_part(self, stage1: np.ndarray) -> np.ndarray:
        return (np.asarray(stage1, dtype=np.float64) - self._mean[0]) / self._scale[0] * self._coef[0]

    def decision_function(self, stage1: np.ndarray, lm_values: np.ndarray) -> np.ndarray:
        """Log-odds of machine authorship from the fast score and the statistics (NaN stays NaN)."""
        return self._stage1_part(stage1) + self._lm_part(lm_values).sum(axis=1) + self.intercept_

    def without_language_model(self, stage1: np.ndarray) -> np.ndarray:
        """The score of a post the language model was not run on: every statistic at its mean."""
        return self._stage1_part(stage1) + self.intercept_

    def promote(self, stage1: np.ndarray) -> np.ndarray:
        """Which posts get the language model: those it could still lift to the default threshold."""
        return np.nan_to_num(np.asarray(stage1, dtype=np.float64), nan=-np.inf) >= self.promote_from

    def contributions(self, stage1: float, lm_values: np.ndarray | None) -> dict[str, float]:
        """Each input's share of a post's log-odds (the fast head's, and each statistic's)."""
        out = {STAGE1_FEATURE: round(float(self._stage1_part(np.array([stage1]))[0]), 3)}
        if lm_values is not None:
            for name, part in zip(self.lm_feature_names, self._lm_part(lm_values[None, :])[0], strict=True):
                out[name] = round(float(part), 3)
        return out

    def max_lift(self) -> float:
        """The most the clipped statistics can add to a post's log-odds."""
        ends = np.stack([self._lm_part(self._low[None, :])[0], self._lm_part(self._high[None, :])[0]])
        return float(ends.max(axis=0).sum())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("mean_", "scale_", "coef_", "clip_low_", "clip_high_"):
            data[name] = [float(f"{v:.7g}") for v in data[name]]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LmStage:
        return cls(**data)


def promotion_bound(
    coef: np.ndarray, mean: np.ndarray, scale: np.ndarray, intercept: float, threshold: float, max_lift: float
) -> float:
    """The lowest fast-head log-odds at which the statistics could still reach ``threshold``."""
    slope = coef[0] / scale[0]
    if slope <= 0:
        return -np.inf  # a stage that does not rise with the fast score: always run the model
    return float(mean[0] + (threshold - intercept - max_lift) / slope)


def fit_lm_stage(
    stage1: np.ndarray,
    lm_values: np.ndarray,
    y: np.ndarray,
    lm_feature_names: list[str],
    *,
    c: float = 0.3,
    clip_quantiles: tuple[float, float] = (0.005, 0.995),
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, np.ndarray, np.ndarray]:
    """(mean, scale, coef, intercept, clip_low, clip_high) of the regression, class-balanced.

    Rows with a missing statistic are fitted with it at its mean, as they are scored.
    """
    from sklearn.linear_model import LogisticRegression

    lm_values = np.asarray(lm_values, dtype=np.float64)
    low = np.nanquantile(lm_values, clip_quantiles[0], axis=0)
    high = np.nanquantile(lm_values, clip_quantiles[1], axis=0)
    x = np.column_stack([stage1, np.clip(lm_values, low, high)])
    mean = np.nanmean(x, axis=0)
    scale = np.nanstd(x, axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    z = np.where(np.isfinite(x), (x - mean) / scale, 0.0)
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(z, y)
    return mean, scale, model.coef_[0], float(model.intercept_[0]), low, high


def build_lm_stage(
    stage1: np.ndarray,
    lm_values: np.ndarray,
    y: np.ndarray,
    fit_rows: np.ndarray,
    threshold_humans: np.ndarray,
    lm_feature_names: list[str],
    *,
    default_fpr: float,
    target_fprs: dict[str, float],
    c: float = 0.3,
) -> LmStage:
    """Fit on ``fit_rows``; set the thresholds on the human posts of ``threshold_humans`` (other keys).

    Threshold rows are scored exactly as served: with the language model where the post is promoted,
    without it elsewhere, so the false-positive rate set here is the served one.
    """
    from detectors.aitext.training import threshold_for_fpr

    mean, scale, coef, intercept, low, high = fit_lm_stage(
        stage1[fit_rows], lm_values[fit_rows], y[fit_rows], lm_feature_names, c=c
    )

    def stage(thresholds: dict[str, dict[str, Any]], promote_from: float) -> LmStage:
        fitted = (mean.tolist(), scale.tolist(), coef.tolist(), intercept, low.tolist(), high.tolist())
        return LmStage(lm_feature_names, *fitted, thresholds, promote_from, {})

    provisional = stage({"default": {"log_odds": 0.0}}, -np.inf)
    full = provisional.decision_function(stage1, lm_values)
    # The threshold depends on which posts are promoted and promotion on the threshold: iterate to a
    # fixed point (two or three rounds; the bound only moves the posts far below the threshold).
    default = threshold_for_fpr(full[threshold_humans], default_fpr)
    for _ in range(5):
        promote_from = promotion_bound(coef, mean, scale, intercept, default, provisional.max_lift())
        served = np.where(stage1 >= promote_from, full, provisional.without_language_model(stage1))
        new_default = threshold_for_fpr(served[threshold_humans], default_fpr)
        if new_default == default:
            break
        default = new_default
    humans = served[threshold_humans]
    thresholds: dict[str, dict[str, Any]] = {}
    for name, target in {"default": default_fpr, **target_fprs}.items():
        t = threshold_for_fpr(humans, target)
        thresholds[name] = {
            "log_odds": t,
            "probability": float(1.0 / (1.0 + np.exp(-t))),
            "how": f"smallest log-odds with at most {target:.1%} of {len(humans)} human posts (threshold half of "
            "the calibrate sample, scored as served) at or above it",
            "achieved_fpr_on_calibrate": float((humans >= t).mean()),
        }
    thresholds["default"]["log_odds"] = default
    return stage(thresholds, float(promote_from))
