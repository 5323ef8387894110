"""The SmolLM2 second stage: skipping the language model never changes a decision at the default threshold."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detectors.aitext.lm_stage import LmStage, build_lm_stage
from detectors.aitext.metrics import LM_FEATURE_NAMES

NAMES = ["lm_mean_loglik", "lm_fast_detectgpt", "lm_mean_entropy"]


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fast scores and statistics that both separate the classes, a little, with heavy-ish tails."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    stage1 = rng.normal(-2.0 + 2.5 * y, 1.5)
    lm = np.column_stack(
        [rng.normal(-4.0 + 0.8 * y, 0.7), rng.standard_t(4, n) + 1.2 * y, rng.normal(3.0 - 0.5 * y, 0.6)]
    )
    lm[rng.random(n) < 0.01, 1] = np.nan  # a statistic the model could not compute
    return stage1, lm, y


@pytest.fixture(scope="module")
def stage() -> LmStage:
    stage1, lm, y = synthetic(6000, 1)
    half = np.arange(len(y)) % 2 == 0
    return build_lm_stage(
        stage1, lm, y, half, ~half & (y == 0), NAMES, default_fpr=0.005, target_fprs={"fpr_1pct": 0.01}
    )


def test_no_statistics_can_lift_a_post_below_the_promotion_bound_to_the_threshold(stage: LmStage) -> None:
    rng = np.random.default_rng(2)
    below = np.linspace(stage.promote_from - 10, stage.promote_from - 1e-9, 500)
    low, high = np.asarray(stage.clip_low_), np.asarray(stage.clip_high_)
    # every corner of the clip box, and values far outside it (clipped back in), for every post
    corners = np.array([[low[j] if (k >> j) & 1 else high[j] for j in range(len(NAMES))] for k in range(8)])
    extreme = rng.normal(0, 1e6, size=(200, len(NAMES)))
    default = stage.thresholds["default"]
    for values in (*corners, *extreme):
        lifted = stage.decision_function(below, np.tile(values, (len(below), 1)))
        assert (lifted < default).all()
    assert (stage.without_language_model(below) < default).all()
    assert not stage.promote(below).any() and stage.promote(np.array([stage.promote_from]))[0]


def test_the_default_threshold_holds_its_false_positive_rate_on_new_people_as_served(stage: LmStage) -> None:
    stage1, lm, y = synthetic(20000, 3)
    served = stage.without_language_model(stage1)
    promoted = stage.promote(stage1)
    served[promoted] = stage.decision_function(stage1[promoted], lm[promoted])
    fpr = (served[y == 0] >= stage.thresholds["default"]).mean()
    assert fpr <= 0.012  # 0.5% set on ~1,500 people; sampling error allows a little over
    full = stage.decision_function(stage1, lm)
    flagged_full, flagged_served = full >= stage.thresholds["default"], served >= stage.thresholds["default"]
    assert (flagged_full == flagged_served).all()  # the shortcut never changes a default decision


def test_a_stage_survives_its_json_and_reads_statistics_by_name(stage: LmStage) -> None:
    again = LmStage.from_dict(json.loads(json.dumps(stage.to_dict())))
    stage1, lm, _ = synthetic(50, 4)
    assert np.allclose(again.decision_function(stage1, lm), stage.decision_function(stage1, lm), atol=1e-5)
    assert [LM_FEATURE_NAMES[i] for i in again.feature_columns()] == NAMES
    row = int(np.flatnonzero(np.isfinite(lm).all(axis=1))[0])
    parts = again.contributions(float(stage1[row]), lm[row])
    assert set(parts) == {"fast_head_log_odds", *NAMES}
    total = sum(parts.values()) + again.intercept_
    assert total == pytest.approx(again.decision_function(stage1[row : row + 1], lm[row : row + 1])[0], abs=0.01)


def test_a_stage_refuses_a_state_of_the_wrong_shape(stage: LmStage) -> None:
    data = stage.to_dict()
    data["coef_"] = data["coef_"][:-1]
    with pytest.raises(ValueError, match="coef_"):
        LmStage.from_dict(data)
