"""A fitted gradient-boosted tree ensemble, applied with numpy alone, with each feature's share of a score.

Why: the modern head's features (stylometry and two n-gram logits) interact: "polished" points to an
assistant model, "garbled and repetitive" to a base model sampling freely, and a linear score can
only pick one direction per feature. scikit-learn's ``HistGradientBoostingClassifier`` fits the
trees; serving must need neither scikit-learn nor pickles (as for :mod:`detectors.aitext.char_ngrams`),
so the nodes are stored as JSON and walked here, all rows of a micro-batch at once.

Why the shares by hand: an analyst must see what pushed a post towards "machine". Each split moves the
expected score from a node to the child a post takes; crediting that move to the split's feature
(Saabas's path attribution) gives shares that add up exactly to the score less the ensemble's bias.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class TreeEnsemble:
    """Learnt state: one dict of equal-length node lists per tree, and the ensemble's baseline."""

    n_features: int
    baseline_: float
    #: per tree: feature (-1 at a leaf), threshold, missing_left (NaN goes left), left, right, value
    trees_: list[dict[str, list[Any]]]
    _arrays: list[tuple[np.ndarray, ...]] = field(init=False, repr=False)
    _depth: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._arrays = []
        depth = 0
        for tree in self.trees_:
            feature = np.asarray(tree["feature"], dtype=np.int64)
            if feature.max(initial=-1) >= self.n_features:
                raise ValueError(f"tree ensemble: a split reads feature {feature.max()} of {self.n_features}")
            arrays = (
                feature,
                np.asarray(tree["threshold"], dtype=np.float64),
                np.asarray(tree["missing_left"], dtype=bool),
                np.asarray(tree["left"], dtype=np.int64),
                np.asarray(tree["right"], dtype=np.int64),
                np.asarray(tree["value"], dtype=np.float64),
            )
            if len({len(a) for a in arrays}) != 1:
                raise ValueError("tree ensemble: a tree's node lists differ in length")
            self._arrays.append(arrays)
            depth = max(depth, _depth(arrays[0], arrays[3], arrays[4]))
        self._depth = depth

    @property
    def bias(self) -> float:
        """The score of a post no split has moved: the baseline plus every root's expected value."""
        return self.baseline_ + sum(float(a[5][0]) for a in self._arrays)

    def raw(self, x: np.ndarray) -> np.ndarray:
        """The ensemble's log-odds per row (NaN features follow each split's missing-value branch)."""
        x = np.asarray(x, dtype=np.float64)
        out = np.full(len(x), self.baseline_)
        for arrays in self._arrays:
            out += arrays[5][self._leaves(arrays, x)]
        return out

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """[rows, features]: each feature's share of :meth:`raw` less :attr:`bias` (they add up exactly)."""
        x = np.asarray(x, dtype=np.float64)
        shares = np.zeros((len(x), self.n_features))
        rows = np.arange(len(x))
        for feature, threshold, missing_left, left, right, value in self._arrays:
            node = np.zeros(len(x), dtype=np.int64)
            for _ in range(self._depth):
                inner = feature[node] >= 0
                if not inner.any():
                    break
                child = self._step(node, x, feature, threshold, missing_left, left, right)
                f = np.where(inner, feature[node], 0)
                np.add.at(shares, (rows[inner], f[inner]), value[child[inner]] - value[node[inner]])
                node = child
        return shares

    def _leaves(self, arrays: tuple[np.ndarray, ...], x: np.ndarray) -> np.ndarray:
        feature, threshold, missing_left, left, right, _ = arrays
        node = np.zeros(len(x), dtype=np.int64)
        for _ in range(self._depth):
            node = self._step(node, x, feature, threshold, missing_left, left, right)
        return node

    @staticmethod
    def _step(
        node: np.ndarray,
        x: np.ndarray,
        feature: np.ndarray,
        threshold: np.ndarray,
        missing_left: np.ndarray,
        left: np.ndarray,
        right: np.ndarray,
    ) -> np.ndarray:
        """Every row one level down (rows at a leaf stay there)."""
        f = feature[node]
        inner = f >= 0
        v = x[np.arange(len(x)), np.where(inner, f, 0)]
        go_left = np.where(np.isnan(v), missing_left[node], v <= threshold[node])
        return np.where(inner, np.where(go_left, left[node], right[node]), node)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_features": self.n_features,
            "baseline_": float(f"{self.baseline_:.9g}"),
            "trees_": [
                {
                    **{k: tree[k] for k in ("feature", "missing_left", "left", "right")},
                    # thresholds at full precision: they sit between two training values, so rounding flips posts
                    "threshold": [float(v) for v in tree["threshold"]],
                    "value": [float(f"{v:.9g}") for v in tree["value"]],
                }
                for tree in self.trees_
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TreeEnsemble:
        return cls(n_features=int(data["n_features"]), baseline_=float(data["baseline_"]), trees_=data["trees_"])

    @classmethod
    def from_sklearn(cls, model: Any, n_features: int) -> TreeEnsemble:
        """The trees of a fitted binary ``HistGradientBoostingClassifier`` (numeric features only).

        Reads its fitted predictors; an inner node's value is the count-weighted mean of its children's
        (the expected score of the posts that reach it), which the shares need and the leaves define.
        """
        trees = []
        for predictors in model._predictors:
            (predictor,) = predictors  # one tree per iteration for a binary classifier
            nodes = predictor.nodes
            if nodes["is_categorical"].any():
                raise ValueError("tree ensemble: categorical splits are not supported")
            leaf = nodes["is_leaf"].astype(bool)
            value = _expected_values(
                nodes["value"].astype(np.float64),
                nodes["count"].astype(np.float64),
                leaf,
                nodes["left"],
                nodes["right"],
            )
            trees.append(
                {
                    "feature": np.where(leaf, -1, nodes["feature_idx"]).astype(int).tolist(),
                    "threshold": np.where(leaf, 0.0, nodes["num_threshold"]).astype(float).tolist(),
                    "missing_left": nodes["missing_go_to_left"].astype(bool).tolist(),
                    "left": np.where(leaf, 0, nodes["left"]).astype(int).tolist(),
                    "right": np.where(leaf, 0, nodes["right"]).astype(int).tolist(),
                    "value": value.tolist(),
                }
            )
        baseline = float(np.asarray(model._baseline_prediction).ravel()[0])
        return cls(n_features=n_features, baseline_=baseline, trees_=trees)


def _expected_values(
    value: np.ndarray, count: np.ndarray, leaf: np.ndarray, left: np.ndarray, right: np.ndarray
) -> np.ndarray:
    """Leaves keep their value; an inner node gets its children's count-weighted mean (children first)."""
    out = value.copy()
    weight = count.copy()
    # scikit-learn numbers a node before its children, so walking the nodes backwards sees children first
    for i in range(len(value) - 1, -1, -1):
        if not leaf[i]:
            lw, rw = weight[left[i]], weight[right[i]]
            total = lw + rw
            out[i] = (
                (out[left[i]] * lw + out[right[i]] * rw) / total if total > 0 else 0.5 * (out[left[i]] + out[right[i]])
            )
            weight[i] = total
    return out


def _depth(feature: np.ndarray, left: np.ndarray, right: np.ndarray) -> int:
    """Longest root-to-leaf path (edges)."""
    deepest, stack = 0, [(0, 0)]
    while stack:
        node, d = stack.pop()
        if feature[node] < 0:
            deepest = max(deepest, d)
        else:
            stack.extend(((int(left[node]), d + 1), (int(right[node]), d + 1)))
    return deepest
