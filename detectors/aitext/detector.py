"""``AiTextDetector``: machine-written posts, scored by the trained head over LM and encoder features.

Follows the Chorus detector protocol (:mod:`detectors.base`): ``decision_function`` is the
calibrated log-odds of machine authorship, ``predict_proba`` its sigmoid, ``detect`` adds the
decision at a named threshold (``default``, ``fpr_1pct``, ``fpr_0.1pct``, all chosen on human posts
by ``chorus train-aitext`` and stored with the head) and per-post evidence.

A post that cannot be scored (empty, not text, binary junk, no words) gets score and probability
NaN, is never flagged, and its evidence says ``scored: False`` with the reason. Posts in scripts or
languages the models do not cover are scored and carry a flag saying so.

``detect`` featurises a batch once; :meth:`AiTextDetector.score_posts` also returns the MiniLM
embeddings so the campaign detector can reuse them rather than running the encoder again. The head
names the fine-tuned encoder adapter it was trained with (``artifacts/aitext_encoder_adapter.safetensors``);
the same MiniLM call gives the frozen embedding and the adapter's logit (see
:mod:`detectors.aitext.finetune`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from detectors.aitext.features import BACKENDS, FeatureBatch, FeatureExtractor, top_surprisal_tokens
from detectors.aitext.head import LM_FLOAT32, LM_INT8, AiTextHead
from detectors.aitext.models import resolve_device
from detectors.aitext.onnx_backend import quantize_for_device
from detectors.base import Detections, ScoringDetector

log = logging.getLogger(__name__)

#: The frozen sentence encoder behind ``Detections.embeddings`` (the paraphrase network's vectors).
EMBEDDING_MODEL = "all-MiniLM-L6-v2"


@dataclass
class AiTextScores:
    """One batch's scores with the features they came from (embeddings included, for reuse)."""

    features: FeatureBatch
    score: np.ndarray  # calibrated log-odds, NaN where not scored
    probability: np.ndarray  # NaN where not scored
    values: np.ndarray  # the head's named features, row-aligned (computed once, reused by the evidence)


class AiTextDetector(ScoringDetector):
    """Probability that each post was written by a language model.

    Pure: it is handed its head and its models (or a callable that loads them on first use) and
    reads no file. :func:`stream.models.aitext.aitext_detector` builds one over the installed models
    and the committed heads, which is what the registry (``worker.detectors = ["aitext"]``) and
    ``chorus score`` serve.

    Args:
        head: the trained head (:mod:`detectors.aitext.head`); the serving default is the modern head,
            ``artifacts/aitext_head_modern.json``, which runs MiniLM alone. A head without LM
            features needs no language model.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        backend: runtime for both models: ``"torch"`` (transformers) or ``"onnx"`` (ONNX Runtime
            sessions; see :mod:`detectors.aitext.onnx_backend`).
        extractor: a ready :class:`FeatureExtractor` (tests pass small fakes).
        top_k_tokens: how many highest-surprisal tokens each post's evidence lists.
        quantize: with ``backend="onnx"`` on CPU, SmolLM2 is served in int8 (faster; the statistics
            move, so the int8 head should score them; see
            :data:`detectors.aitext.onnx_backend.DEFAULT_QUANTIZE`). Never on CUDA.
        load_extractor: called once, on the first batch, when no ``extractor`` is given: builds the
            extractor this head needs (its adapter, with or without SmolLM2, its text preparation) on
            ``device`` and ``backend``, so constructing a detector loads no model.
    """

    name = "aitext"
    #: Its detections carry each post's MiniLM embedding (``Detections.embeddings``).
    provides_embeddings = True

    def __init__(
        self,
        head: AiTextHead,
        device: str = "cpu",
        backend: str = "torch",
        extractor: FeatureExtractor | None = None,
        top_k_tokens: int = 5,
        quantize: bool = False,
        load_extractor: Callable[[], FeatureExtractor] | None = None,
    ) -> None:
        if backend not in BACKENDS:  # fail at construction, not at the first batch
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if quantize and backend != "onnx":
            raise ValueError("quantize=True serves SmolLM2 in int8 through ONNX Runtime; use backend='onnx'")
        if extractor is None and load_extractor is None:
            raise ValueError(
                "AiTextDetector needs an extractor or load_extractor; "
                "stream.models.aitext.aitext_detector builds one over the installed models"
            )
        self.device = resolve_device(device)
        self.quantize = backend == "onnx" and quantize_for_device(quantize, self.device)
        self.backend = backend
        self.head = head
        served = LM_INT8 if self.quantize else LM_FLOAT32
        if self.head.uses_language_model and self.head.lm_statistics != served:
            log.warning(
                "aitext head %s was fitted on %s SmolLM2 statistics but %s ones are served: its probabilities and "
                "thresholds are off their calibration (train one with chorus train-aitext%s)",
                self.head.path, self.head.lm_statistics, served, " --backend onnx --quantize" if self.quantize else "",
            )  # fmt: skip
        self.model_version = f"aitext-{self.head.version}"
        self.thresholds = self.head.thresholds
        self.top_k_tokens = top_k_tokens
        self._extractor = extractor
        self._load_extractor = load_extractor

    @property
    def extractor(self) -> FeatureExtractor:
        if self._extractor is None:
            assert self._load_extractor is not None  # checked at construction
            self._extractor = self._load_extractor()
        return self._extractor

    def score_posts(self, posts: pl.DataFrame) -> AiTextScores:
        """Featurise once and score: the step ``detect``, the stream and the campaign detector share."""
        texts = posts.get_column("text").to_list() if posts.height else []
        langs = posts.get_column("lang").to_list() if "lang" in posts.columns else None
        features = self.extractor.extract(texts, langs)
        values = self.head_values(features)
        score = self.head.decision_function(values, features.embedding)
        probability = self.head.predict_proba(values, features.embedding)
        return AiTextScores(features, score, probability, values)

    def head_values(self, features: FeatureBatch) -> np.ndarray:
        """The head's named features: the extractor's columns, plus those the head computes itself
        (the character n-gram logit) on the scored posts' prepared text; NaN where not scored."""
        scored = features.scored
        prepared = [t.text for t, ok in zip(features.triaged, scored, strict=True) if ok]
        extra = {name: np.full(len(features), np.nan) for name in self.head.feature_names if name not in features.names}
        for name, column in self.head.extra_features(prepared).items():
            extra[name][scored] = column
        return (
            np.column_stack(
                [
                    extra[name] if name in extra else features.values[:, features.names.index(name)]
                    for name in self.head.feature_names
                ]
            )
            if len(features)
            else np.zeros((0, len(self.head.feature_names)))
        )

    def decision_function(self, posts: pl.DataFrame) -> np.ndarray:
        return self.score_posts(posts).score

    def predict_proba(self, posts: pl.DataFrame) -> np.ndarray:
        return self.score_posts(posts).probability

    def evidence(self, scores: AiTextScores) -> list[dict[str, Any]]:
        """Per post: scored or why not, flags, the named features, what pushed the score, surprising tokens.

        ``contributions`` is each feature's (and the embedding's) share of the calibrated log-odds;
        ``top_surprisal_tokens`` needs the language model, so it is empty for a head that runs without.
        """
        fb = scores.features
        tokenizer = self.extractor.lm.tokenizer if self.extractor.lm is not None else None
        head_values = scores.values
        contributions = self.head.contributions(head_values, fb.embedding) if len(fb) else []
        extra_names = [n for n in self.head.feature_names if n not in fb.names]
        out: list[dict[str, Any]] = []
        for i, triaged in enumerate(fb.triaged):
            if not triaged.scored:
                out.append({"scored": False, "not_scored_reason": triaged.not_scored_reason, "flags": []})
                continue
            tokens = (
                top_surprisal_tokens(tokenizer, fb.token_ids[i], fb.surprisal[i], self.top_k_tokens)
                if tokenizer is not None
                else []
            )
            out.append(
                {
                    "scored": True,
                    "not_scored_reason": None,
                    "flags": list(triaged.flags),
                    "probability": float(scores.probability[i]),
                    "features": {
                        n: float(v)
                        for n, v in (
                            *zip(fb.names, fb.values[i], strict=True),
                            *((n, head_values[i, self.head.feature_names.index(n)]) for n in extra_names),
                        )
                        if math.isfinite(v)
                    },
                    "contributions": contributions[i],
                    "top_surprisal_tokens": tokens,
                }
            )
        return out

    def detect(self, posts: pl.DataFrame, threshold: str = "default") -> Detections:
        """Score once, decide at the named threshold, attach evidence (overrides the mixin's three passes)."""
        value = self.threshold_value(threshold)
        scores = self.score_posts(posts)
        return Detections(
            detector=self.name,
            model_version=self.model_version,
            threshold_name=threshold,
            threshold=value,
            post_ids=posts.get_column("post_id").cast(pl.String).to_list() if posts.height else [],
            score=scores.score,
            probability=scores.probability,
            flagged=np.nan_to_num(scores.score, nan=-np.inf) >= value,
            evidence=self.evidence(scores),
            embeddings=scores.features.embedding,
            embedding_model=EMBEDDING_MODEL,
        )
