"""The one protocol every Chorus detector follows.

Modelled on scikit-learn's estimator language so that the stream, the notebooks and the
benchmarks can treat the AI-text detector, the campaign detector and any future one the same way:

* ``decision_function(posts)`` -> raw score per post (higher means more suspicious),
* ``predict_proba(posts)`` -> calibrated probability of the positive class per post (NaN where a
  detector has no calibration, so nobody mistakes a raw score for a probability),
* ``detect(posts, threshold=...)`` -> :class:`Detections`: scores, probabilities, the decision at a
  *named* threshold and per-post evidence. Scoring and deciding stay separate steps, as in
  Binoculars, so a policy can pick another named threshold without re-scoring.

A batch of posts is a polars DataFrame with at least the columns of :data:`POST_COLUMNS` (the
validated post schema, see ``stream/kafka/messages.py``). Detectors are pure: frames in, arrays out, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import polars as pl

#: Columns a validated micro-batch of posts always has (optional fields are null when absent).
POST_COLUMNS: tuple[str, ...] = (
    "post_id",
    "account_id",
    "created_at",  # polars Datetime("us", "UTC")
    "text",
    "lang",
    "reply_to",
    "repost_of",
    "quote_of",
    "urls",  # list[str]
    "hashtags",  # list[str]
    "mentions",  # list[str]
)


@dataclass(frozen=True)
class Detections:
    """What one detector said about one batch of posts, row-aligned with ``post_ids``."""

    detector: str
    model_version: str
    threshold_name: str
    threshold: float
    post_ids: list[str]
    score: np.ndarray
    probability: np.ndarray
    flagged: np.ndarray
    evidence: list[dict[str, Any]] = field(default_factory=list)
    #: Per-post sentence embeddings ``[n, dim]`` (float32, NaN rows where none), when the detector
    #: computed them on the way: the AI-text detector's MiniLM vectors, which the coordination
    #: stage's paraphrase network reuses instead of running the encoder again.
    embeddings: np.ndarray | None = None
    embedding_model: str | None = None

    def __post_init__(self) -> None:
        n = len(self.post_ids)
        for name in ("score", "probability", "flagged"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{self.detector}: {name} has {len(getattr(self, name))} rows, expected {n}")
        if self.embeddings is not None and (self.embeddings.ndim != 2 or len(self.embeddings) != n):
            raise ValueError(f"{self.detector}: embeddings have shape {self.embeddings.shape}, expected ({n}, dim)")
        if self.evidence and len(self.evidence) != n:
            raise ValueError(f"{self.detector}: evidence has {len(self.evidence)} rows, expected {n}")

    def __len__(self) -> int:
        return len(self.post_ids)

    def evidence_for(self, row: int) -> dict[str, Any]:
        return self.evidence[row] if self.evidence else {}


@runtime_checkable
class Detector(Protocol):
    """A scorer of post batches with named, documented thresholds."""

    name: str
    model_version: str
    #: threshold name -> value on the ``decision_function`` scale; must contain ``"default"``.
    thresholds: dict[str, float]

    def decision_function(self, posts: pl.DataFrame) -> np.ndarray: ...

    def predict_proba(self, posts: pl.DataFrame) -> np.ndarray: ...

    def detect(self, posts: pl.DataFrame, threshold: str = "default") -> Detections: ...


class ScoringDetector:
    """Mixin that derives ``predict_proba`` and ``detect`` from ``decision_function``.

    Subclasses set ``name``, ``model_version`` and ``thresholds`` and implement
    ``decision_function``; they override ``predict_proba`` when they are calibrated and
    ``explain`` when they can say why a post scored as it did.
    """

    name: str = "unnamed"
    model_version: str = "0"
    thresholds: dict[str, float] = {"default": 0.5}  # noqa: RUF012 - overridden per class

    def decision_function(self, posts: pl.DataFrame) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict_proba(self, posts: pl.DataFrame) -> np.ndarray:
        return np.full(posts.height, np.nan)

    def explain(self, posts: pl.DataFrame, scores: np.ndarray) -> list[dict[str, Any]]:
        return []

    def threshold_value(self, threshold: str) -> float:
        try:
            return self.thresholds[threshold]
        except KeyError:
            known = ", ".join(sorted(self.thresholds))
            raise KeyError(f"detector {self.name!r} has no threshold {threshold!r}; known: {known}") from None

    def detect(self, posts: pl.DataFrame, threshold: str = "default") -> Detections:
        value = self.threshold_value(threshold)
        scores = np.asarray(self.decision_function(posts), dtype=np.float64)
        return Detections(
            detector=self.name,
            model_version=self.model_version,
            threshold_name=threshold,
            threshold=value,
            post_ids=posts.get_column("post_id").to_list(),
            score=scores,
            probability=np.asarray(self.predict_proba(posts), dtype=np.float64),
            flagged=scores >= value,
            evidence=self.explain(posts, scores),
        )
