"""The trained, calibrated head over the AI-text features, and its committed artifact.

The head is a linear score over standardised features (LM statistics, stylometry, n-gram logits, the
MiniLM embedding) plus, for the modern default, gradient-boosted trees over the same features
(:mod:`detectors.aitext.trees`; its linear part is then zero), followed by Platt scaling fitted on
accounts the head never saw. Its ``decision_function`` is the *calibrated* log-odds of machine
authorship, so the probability is just ``sigmoid(score)`` and every named threshold is a log-odds
value with a probability beside it; :meth:`AiTextHead.contributions` splits it by feature.

Applying it needs numpy only. Fitting it (``chorus train-aitext``, ``chorus train-aitext-modern``)
uses scikit-learn; the learnt state is a JSON file, committed as :data:`DEFAULT_ARTIFACT` and
:data:`MODERN_ARTIFACT`, which also records how each threshold was chosen and the metrics measured
when it was written.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detectors.aitext.char_ngrams import CharNgramModel, shared_logits
from detectors.aitext.lm_stage import LmStage
from detectors.aitext.training import sigmoid
from detectors.aitext.trees import TreeEnsemble

#: The feature the head's own character n-gram regression gives (see :meth:`AiTextHead.extra_features`).
CHAR_NGRAM_FEATURE = "char_ngram_logit"
#: A second regression over the same n-grams: base models and pre-2020 generators against humans.
LEGACY_CHAR_NGRAM_FEATURE = "legacy_char_ngram_logit"

#: The head trained on TweepFake (2019 GPT-2/RNN bots) over SmolLM2 statistics, stylometry and MiniLM;
#: served only when named (``[aitext] artifact``), since the modern head replaced it as the default.
DEFAULT_ARTIFACT = Path(__file__).resolve().parent / "artifacts" / "aitext_head.json"
#: The head trained on SmolLM2's int8 statistics (ONNX Runtime on a CPU, ``quantize=True``): int8
#: moves the statistics, so a head fitted on float32 ones would score them off its calibration.
INT8_ARTIFACT = DEFAULT_ARTIFACT.with_name("aitext_head_int8.json")
#: The fast head for modern generators (stylometry, a character n-gram logit and the MiniLM embedding;
#: no language model), written by ``chorus train-aitext-modern`` from ``chorus aitext-corpus``'s pieces.
MODERN_ARTIFACT = DEFAULT_ARTIFACT.with_name("aitext_head_modern.json")
#: What ``training["lm_statistics"]`` says of a head's LM features (absent: float32).
LM_FLOAT32, LM_INT8 = "float32", "int8"


@dataclass
class AiTextHead:
    """Learnt state of the head; attributes ending in ``_`` were learnt from data."""

    version: str
    feature_names: list[str]
    embedding_dim: int
    mean_: list[float]
    scale_: list[float]
    coef_: list[float]
    intercept_: float
    platt_a_: float
    platt_b_: float
    #: name -> {"log_odds": float, "probability": float, "how": str, ...}; must hold "default".
    thresholds_: dict[str, dict[str, Any]]
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    #: File name (beside the head JSON) of the fine-tuned encoder adapter that computes the
    #: ``enc_adapter_logit`` feature, with its SHA-256; None for a head without that feature.
    encoder_adapter: dict[str, str] | None = None
    #: The character n-gram regression behind the ``char_ngram_logit`` feature
    #: (:class:`detectors.aitext.char_ngrams.CharNgramModel` as a dict); None for heads without it.
    char_ngrams: dict[str, Any] | None = field(default=None, repr=False)
    #: The SmolLM2 second stage (:class:`detectors.aitext.lm_stage.LmStage` as a dict) run on the posts
    #: this head scores high enough; None for a head served alone.
    lm_stage: dict[str, Any] | None = field(default=None, repr=False)
    #: The ``legacy_char_ngram_logit`` regression over ``char_ngrams``'s vocabulary and idf
    #: (``{"coef_": [...], "intercept_": ...}``); None for heads without that feature.
    legacy_char_ngrams: dict[str, Any] | None = field(default=None, repr=False)
    #: Gradient-boosted trees over the named features (:class:`detectors.aitext.trees.TreeEnsemble` as a
    #: dict), added to the linear part (zero for a tree head); None for a purely linear head.
    trees: dict[str, Any] | None = field(default=None, repr=False)
    #: Where the head was loaded from (not saved), to find the adapter beside it.
    path: Path | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        width = len(self.feature_names) + self.embedding_dim
        for name in ("mean_", "scale_", "coef_"):
            if len(getattr(self, name)) != width:
                raise ValueError(
                    f"aitext head {self.version}: {name} has {len(getattr(self, name))} values, expected {width}"
                )
        if "default" not in self.thresholds_:
            raise ValueError(f"aitext head {self.version}: thresholds must include 'default'")
        self._mean = np.asarray(self.mean_, dtype=np.float64)
        self._scale = np.asarray(self.scale_, dtype=np.float64)
        self._coef = np.asarray(self.coef_, dtype=np.float64)
        self._trees = TreeEnsemble.from_dict(self.trees) if self.trees else None
        if self._trees is not None and self._trees.n_features != width:
            raise ValueError(f"aitext head {self.version}: trees read {self._trees.n_features} features, not {width}")

    def design_matrix(self, values: np.ndarray, embedding: np.ndarray | None) -> np.ndarray:
        """Features side by side, as the head was trained on them."""
        parts = [np.asarray(values, dtype=np.float64)]
        if self.embedding_dim:
            if embedding is None:
                raise ValueError("this head uses MiniLM embeddings; pass them")
            parts.append(np.asarray(embedding, dtype=np.float64))
        return np.concatenate(parts, axis=1)

    def raw_score(self, x: np.ndarray) -> np.ndarray:
        """Uncalibrated log-odds; in the linear part a missing feature (NaN) counts as at its training mean,
        in the trees it takes each split's missing-value branch."""
        z = (x - self._mean) / self._scale
        z = np.where(np.isfinite(z), z, 0.0)
        linear = z @ self._coef + self.intercept_
        return linear if self._trees is None else linear + self._trees.raw(x)

    @property
    def bias(self) -> float:
        """The calibrated log-odds no feature moved: what :meth:`contributions` add up to the score from."""
        trees = 0.0 if self._trees is None else self._trees.bias
        return self.platt_a_ * (self.intercept_ + trees) + self.platt_b_

    def local_slopes(self, values: np.ndarray, names: list[str], step: float = 0.5) -> np.ndarray:
        """[rows, names]: how much the calibrated log-odds moves per unit of each named feature, at each row.

        The words an analyst sees are shares of an n-gram logit; this turns them into the head's
        log-odds. A linear head's slope is its coefficient everywhere; a tree head's is the central
        difference over +-``step`` around the row's value.
        """
        x = np.asarray(values, dtype=np.float64)
        out = np.zeros((len(x), len(names)))
        for j, name in enumerate(names):
            k = self.feature_names.index(name)
            out[:, j] = self._coef[k] / self._scale[k] * self.platt_a_
            if self._trees is not None:
                up, down = x.copy(), x.copy()
                up[:, k] += step
                down[:, k] -= step
                out[:, j] += self.platt_a_ * (self._trees.raw(up) - self._trees.raw(down)) / (2 * step)
        return out

    def decision_function(self, values: np.ndarray, embedding: np.ndarray | None = None) -> np.ndarray:
        """Calibrated log-odds of machine authorship per row; NaN for rows with no features at all."""
        x = self.design_matrix(values, embedding)
        if x.shape[0] == 0:
            return np.zeros(0)
        score = self.platt_a_ * self.raw_score(x) + self.platt_b_
        nothing = ~np.isfinite(np.asarray(values, dtype=np.float64)).any(axis=1)
        return np.where(nothing, np.nan, score)

    def contributions(self, values: np.ndarray, embedding: np.ndarray | None = None) -> list[dict[str, float]]:
        """Per row, each named feature's share of the calibrated log-odds, and the embedding's as one.

        The evidence an analyst reads: which surface statistics pushed a post towards "machine"
        (positive) or "human" (negative), and how much the encoder's view of the wording added.
        """
        x = self.design_matrix(values, embedding)
        z = (x - self._mean) / self._scale
        z = np.where(np.isfinite(z), z, 0.0)
        parts = z * self._coef * self.platt_a_
        if self._trees is not None:
            parts = parts + self._trees.contributions(x) * self.platt_a_
        k = len(self.feature_names)
        out = []
        for row in parts:
            named = {name: round(float(v), 3) for name, v in zip(self.feature_names, row[:k], strict=True)}
            if self.embedding_dim:
                named["embedding"] = round(float(row[k:].sum()), 3)
            out.append(named)
        return out

    def predict_proba(self, values: np.ndarray, embedding: np.ndarray | None = None) -> np.ndarray:
        """Calibrated probability of machine authorship per row (NaN where not scored)."""
        score = self.decision_function(values, embedding)
        return np.where(np.isfinite(score), sigmoid(np.nan_to_num(score)), np.nan)

    @property
    def thresholds(self) -> dict[str, float]:
        """Named thresholds on the ``decision_function`` (log-odds) scale."""
        return {name: float(t["log_odds"]) for name, t in self.thresholds_.items()}

    @property
    def lm_statistics(self) -> str:
        """The precision of the SmolLM2 statistics this head was fitted on (:data:`LM_FLOAT32` or :data:`LM_INT8`)."""
        return str(self.training.get("lm_statistics", LM_FLOAT32))

    @functools.cached_property
    def char_model(self) -> CharNgramModel | None:
        """The character n-gram regression this head reads (``char_ngram_logit``), or None."""
        return CharNgramModel.from_dict(self.char_ngrams) if self.char_ngrams else None

    @functools.cached_property
    def legacy_char_model(self) -> CharNgramModel | None:
        """The second n-gram regression (``legacy_char_ngram_logit``) over the first's vocabulary, or None."""
        model = self.char_model
        if model is None or not self.legacy_char_ngrams:
            return None
        return model.with_weights(self.legacy_char_ngrams["coef_"], self.legacy_char_ngrams["intercept_"])

    def extra_features(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Features the head computes itself from the prepared texts (not the extractor): the n-gram logits,
        every regression's from one count of each post's n-grams."""
        models = {CHAR_NGRAM_FEATURE: self.char_model, LEGACY_CHAR_NGRAM_FEATURE: self.legacy_char_model}
        present = {name: m for name, m in models.items() if m is not None}
        if not present:
            return {}
        logits = shared_logits(list(present.values()), texts)
        return {name: logits[:, j] for j, name in enumerate(present)}

    @property
    def uses_language_model(self) -> bool:
        """Whether SmolLM2 is needed to score: the head reads its statistics, or carries a second stage."""
        return self.reads_lm_features or self.lm_stage is not None

    @property
    def reads_lm_features(self) -> bool:
        """Whether the head's own regression reads SmolLM2 statistics (the TweepFake heads)."""
        from detectors.aitext.metrics import LM_FEATURE_NAMES

        return bool(set(self.feature_names) & set(LM_FEATURE_NAMES))

    @functools.cached_property
    def stage(self) -> LmStage | None:
        """The SmolLM2 second stage, when the head carries one."""
        return LmStage.from_dict(self.lm_stage) if self.lm_stage else None

    @property
    def strips_markers(self) -> bool:
        """Whether the head was trained on text without hashtags, emoji, links and mentions."""
        return self.training.get("text_preparation") == "strip_markers"

    def to_json(self) -> str:
        """The artifact's text: every learnt number at 7 significant digits (not where it was loaded from)."""
        data = asdict(self)
        data.pop("path")
        for optional in ("char_ngrams", "lm_stage", "legacy_char_ngrams", "trees"):
            if data.get(optional) is None:
                data.pop(optional, None)
        for name in ("mean_", "scale_", "coef_"):
            data[name] = [float(f"{v:.7g}") for v in data[name]]
        return json.dumps(data, indent=1, allow_nan=True) + "\n"

    @classmethod
    def from_json(cls, text: str, path: Path | None = None) -> AiTextHead:
        """A head from its artifact's text; ``path`` is where the text was read (its adapter lies beside it)."""
        return cls(**json.loads(text), path=path)
