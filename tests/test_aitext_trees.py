"""The boosted head's trees, served with numpy: scikit-learn's scores exactly, and shares that add up.

Seconds, no data or models: a synthetic problem whose classes depend on an interaction and on missing
values, which a linear head could not fit.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from detectors.aitext.trees import TreeEnsemble


@pytest.fixture(scope="module")
def fitted() -> tuple[HistGradientBoostingClassifier, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 5))
    x[rng.random(x.shape) < 0.05] = np.nan  # missing values take each split's learnt branch
    signal = np.nan_to_num(x[:, 0]) * np.nan_to_num(x[:, 1]) + np.nan_to_num(x[:, 2]).clip(-1, 1)
    y = (signal + rng.normal(0, 0.5, len(x)) > 0).astype(int)
    model = HistGradientBoostingClassifier(max_iter=60, max_leaf_nodes=15, early_stopping=False, random_state=0)
    model.fit(x, y, sample_weight=rng.uniform(0.5, 2.0, len(x)))
    return model, x


def test_the_served_trees_score_as_scikit_learn_does_after_a_trip_through_json(fitted) -> None:
    model, x = fitted
    trees = TreeEnsemble.from_dict(json.loads(json.dumps(TreeEnsemble.from_sklearn(model, 5).to_dict())))
    assert np.abs(trees.raw(x) - model.decision_function(x)).max() < 1e-6
    assert np.abs(trees.raw(x[:1]) - model.decision_function(x[:1])).max() < 1e-6  # a batch of one


def test_each_features_share_adds_up_to_the_score_and_an_unused_feature_gets_none(fitted) -> None:
    model, x = fitted
    trees = TreeEnsemble.from_sklearn(model, 5)
    shares = trees.contributions(x)
    assert np.allclose(shares.sum(axis=1) + trees.bias, trees.raw(x), atol=1e-9)
    # features 3 and 4 carry no signal: the trees lean on the three that do
    assert np.abs(shares[:, :3]).mean() > 5 * np.abs(shares[:, 3:]).mean()


def test_a_tree_reading_a_feature_the_head_does_not_have_is_refused(fitted) -> None:
    model, _ = fitted
    data = TreeEnsemble.from_sklearn(model, 5).to_dict()
    with pytest.raises(ValueError, match="reads feature"):
        TreeEnsemble.from_dict({**data, "n_features": 2})
