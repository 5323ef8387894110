"""``AiTextDetector``: machine-written posts, scored by the trained head over LM and encoder features.

Follows the Chorus detector protocol (:mod:`detectors.base`): ``decision_function`` is the
calibrated log-odds of machine authorship, ``predict_proba`` its sigmoid, ``detect`` adds the
decision at a named threshold (``default``, ``fpr_1pct``, ``fpr_0.1pct``, all chosen on human posts
by ``chorus train-aitext`` and stored with the head) and per-post evidence.

A post that cannot be scored (empty, not text, binary junk, no words) gets score and probability
NaN, is never flagged, and its evidence says ``scored: False`` with the reason. Posts in scripts or
languages the models do not cover are scored and carry a flag saying so.

Each scored post's evidence names the words that pushed it towards "machine" (``top_words``: each
word's exact share of the character n-gram feature, in log-odds), so an analyst sees what drove the
call without a language model being run.

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

from detectors.aitext.char_ngrams import shared_word_contributions
from detectors.aitext.features import BACKENDS, FeatureBatch, FeatureExtractor, top_surprisal_tokens
from detectors.aitext.head import CHAR_NGRAM_FEATURE, LEGACY_CHAR_NGRAM_FEATURE, LM_FLOAT32, LM_INT8, AiTextHead
from detectors.aitext.lm_stage import STAGE1_FEATURE
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
    #: With a SmolLM2 second stage: the fast head's log-odds, and the rows the language model read.
    stage1: np.ndarray | None = None
    promoted: np.ndarray | None = None


def _sigmoid(score: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.where(np.isfinite(score), 1.0 / (1.0 + np.exp(-np.nan_to_num(score))), np.nan)


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
        evidence_tokens: with a head that reads no language-model features, run the extractor's
            language model (when it has one) on the posts flagged at the default threshold, so their
            evidence lists the most surprising tokens; scores do not change.
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
        evidence_tokens: bool = False,
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
        self.thresholds = self.head.stage.thresholds if self.head.stage is not None else self.head.thresholds
        self.top_k_tokens = top_k_tokens
        self.evidence_tokens = evidence_tokens
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
        stage = self.head.stage
        features = self.extractor.extract(texts, langs, language_model=self.head.reads_lm_features)
        values = self.head_values(features)
        score = self.head.decision_function(values, features.embedding)
        if stage is None:
            if self.evidence_tokens and not self.head.reads_lm_features:
                # SmolLM2 on the flagged posts only, for their evidence: the scores stay the head's.
                flagged = np.nan_to_num(score, nan=-np.inf) >= self.thresholds["default"]
                self.extractor.add_language_model(features, np.flatnonzero(flagged).tolist())
            return AiTextScores(features, score, self.head.predict_proba(values, features.embedding), values)
        # Second stage: SmolLM2 only on the posts it could lift to the default threshold.
        promoted = np.flatnonzero(stage.promote(score))
        self.extractor.add_language_model(features, promoted.tolist())
        lm = features.values[:, [features.names.index(n) for n in stage.lm_feature_names]]
        final = stage.without_language_model(score)
        final[promoted] = stage.decision_function(score[promoted], lm[promoted])
        return AiTextScores(features, final, _sigmoid(final), values, stage1=score, promoted=promoted)

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
        stage = self.head.stage
        promoted = set(scores.promoted.tolist()) if scores.promoted is not None else set()
        words = self._word_weights(head_values) if len(fb) else None
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
                    "top_words": words(triaged.text, i) if words is not None else [],
                }
            )
            if stage is not None and scores.stage1 is not None:
                # The served log-odds is the stage's: the fast head's features enter it through the
                # stage's slope on the fast log-odds, the statistics through their own terms.
                ran = i in promoted
                lm = fb.values[i, [fb.names.index(n) for n in stage.lm_feature_names]] if ran else None
                stage_parts = stage.contributions(float(scores.stage1[i]), lm)
                out[-1]["contributions"] = {
                    **{name: round(share * stage.slope, 3) for name, share in contributions[i].items()},
                    **{name: share for name, share in stage_parts.items() if name != STAGE1_FEATURE},
                }
                out[-1]["language_model"] = {
                    "ran": ran,
                    "why": "its fast score could reach the threshold with the language model's statistics"
                    if ran
                    else "its fast score is too low for any language-model statistics to reach the threshold",
                    "fast_head_probability": float(_sigmoid(scores.stage1[i : i + 1])[0]),
                    "fast_head_contributions": contributions[i],
                    "stage_contributions": stage_parts,
                }
        return out

    def _word_weights(self, head_values: np.ndarray) -> Callable[[str, int], list[dict[str, Any]]] | None:
        """Per post, the words whose character n-grams moved the head's log-odds most towards machine.

        Each word's share of each n-gram regression's logit (:meth:`CharNgramModel.word_contributions`)
        times the head's slope on that logit at this post (:meth:`AiTextHead.local_slopes`; a linear
        head's coefficient): log-odds the word added through these features, at no model cost. None
        for a head without an n-gram feature.
        """
        models = [
            (name, model)
            for name, model in (
                (CHAR_NGRAM_FEATURE, self.head.char_model),
                (LEGACY_CHAR_NGRAM_FEATURE, self.head.legacy_char_model),
            )
            if model is not None and name in self.head.feature_names
        ]
        if not models:
            return None
        slopes = self.head.local_slopes(head_values, [name for name, _ in models])
        if self.head.stage is not None:
            slopes = slopes * self.head.stage.slope

        def top(text: str, row: int) -> list[dict[str, Any]]:
            words, shares = shared_word_contributions([model for _, model in models], text)
            pushes = list(zip(words, (shares @ slopes[row]).tolist(), strict=True))
            ranked = sorted(range(len(pushes)), key=lambda j: -pushes[j][1])[: self.top_k_tokens]
            return [
                {"word": pushes[j][0], "position": j, "log_odds": round(pushes[j][1], 3)}
                for j in ranked
                if pushes[j][1] > 0
            ]

        return top

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
