"""Stand-in detectors that need no model: LLM boilerplate phrases, and a no-op for benchmarks.

``LlmBoilerplateDetector`` is real but deliberately simple. Bot accounts driven by chat models
regularly leak the model's refusal and assistant phrasing ("As an AI language model", "I cannot
fulfill that request", "Regenerate response"); researchers have found whole bot networks by
searching for them. It has high precision and low recall, and is the stream's AI-text signal until
the trained detector (``detectors/aitext``) replaces it. It is one polars expression per batch.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import polars as pl

from detectors.base import ScoringDetector

#: Phrases that chat assistants emit and people almost never write in a post (lower-cased).
LLM_BOILERPLATE_PHRASES: tuple[str, ...] = (
    "as an ai language model",
    "as an ai developed by",
    "as a large language model",
    "i cannot fulfill that request",
    "i cannot fulfill this request",
    "i'm sorry, but i can't assist",
    "i am unable to browse the internet",
    "my knowledge cutoff",
    "regenerate response",
    "certainly! here is",
    "certainly! here's",
    "i hope this helps!",
)

_PHRASE_PATTERN = "|".join(re.escape(p) for p in LLM_BOILERPLATE_PHRASES)


class LlmBoilerplateDetector(ScoringDetector):
    """Counts leaked assistant phrases in each post; one hit is enough to flag."""

    name = "llm_boilerplate"
    model_version = "phrases-v1"
    # One leaked phrase flags the post: the phrases are chosen so a single one is near-proof.
    thresholds = {"default": 1.0}  # noqa: RUF012

    def decision_function(self, posts: pl.DataFrame) -> np.ndarray:
        if posts.height == 0:
            return np.zeros(0)
        hits = posts.select(
            pl.col("text")
            .str.to_lowercase()
            .str.count_matches(_PHRASE_PATTERN)
            .fill_null(0)
            .cast(pl.Float64)
        )
        return hits.to_series().to_numpy()

    def explain(self, posts: pl.DataFrame, scores: np.ndarray) -> list[dict[str, Any]]:
        lowered = posts.get_column("text").str.to_lowercase().to_list()
        return [
            {"phrases": [p for p in LLM_BOILERPLATE_PHRASES if p in text]} if score > 0 else {}
            for text, score in zip(lowered, scores, strict=True)
        ]


class NoopDetector(ScoringDetector):
    """Scores every post 0 and flags nothing: measures the pipeline's own overhead in benchmarks."""

    name = "noop"
    model_version = "0"
    thresholds = {"default": 1.0}  # noqa: RUF012

    def decision_function(self, posts: pl.DataFrame) -> np.ndarray:
        return np.zeros(posts.height)
