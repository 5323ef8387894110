"""Normalisation, triage of bad input, batching helpers, training maths and account aggregation."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from detectors.aitext.aggregate import RunningAccountEstimate, account_machine_share, wilson_interval
from detectors.aitext.features import length_batches, pad_batch
from detectors.aitext.text import (
    MAX_TEXT_CHARS,
    STYLE_FEATURE_NAMES,
    normalise_text,
    stylometric_features,
    triage,
)
from detectors.aitext.training import (
    assign_group_splits,
    balanced_sample,
    fit_platt,
    threshold_for_fpr,
)
from detectors.evaluation import auroc


def test_normalise_urls_mentions_and_entities() -> None:
    text = "Read this https://t.co/AbC123 and www.example.com/x &amp; thanks @jack_99, cc @Some1!"
    assert normalise_text(text) == "Read this URL and URL & thanks @user, cc @user!"
    assert normalise_text("mail me at bob@example.com") == "mail me at bob@example.com"  # not a mention
    assert normalise_text("truncated https://t.co/LiAs…") == "truncated URL"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "empty"),
        ("", "empty"),
        ("   \n\t ", "empty"),
        (b"bytes are not text", "not_text"),
        (12345, "not_text"),
        ("".join(chr(c) for c in range(1, 32)) * 5, "binary"),
        ("\x00\x01\x02\ufffd\ufffd\x7f junk \x03\x04", "binary"),
        ("😀🔥🔥 🙏", "no_words"),
        ("!!! ... ???", "no_words"),
        ("https://t.co/abc", None),  # becomes "URL": a word, scored (and weak evidence)
    ],
)
def test_triage_not_scored_reasons(value: object, reason: str | None) -> None:
    assert triage(value).not_scored_reason == reason


def test_triage_flags_long_and_unsupported_posts() -> None:
    long = triage("word " * 20_000)  # 100 kB
    assert long.scored and "truncated_chars" in long.flags and len(long.text) <= MAX_TEXT_CHARS
    for rtl in ("مرحبا بكم في هذا الاختبار", "שלום עולם, זה מבחן"):
        post = triage(rtl)
        assert post.scored and "unsupported_script" in post.flags
    assert "unsupported_language" in triage("Bonjour à tous", lang="fr").flags
    assert triage("Hello there", lang="en").flags == ()
    assert triage("Hi @bob", normalise=False).text == "Hi @bob"


def test_stylometric_features_ignore_links_and_mentions() -> None:
    plain = stylometric_features(normalise_text("Great game tonight!"))
    linked = stylometric_features(normalise_text("Great game tonight! https://t.co/x @team"))
    assert plain.shape == (len(STYLE_FEATURE_NAMES),)
    np.testing.assert_allclose(plain, linked)
    assert np.isfinite(stylometric_features("")).all()


def test_length_batches_respect_budget_and_cover_every_row() -> None:
    lengths = [5, 100, 3, 7, 50, 2, 300]
    batches = length_batches(lengths, token_budget=120)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) == 1 or max(lengths[i] for i in b) * len(b) <= 120
    assert length_batches([], 10) == []
    ids, mask = pad_batch([[1, 2, 3], [4]], pad_id=0)
    assert ids.tolist() == [[1, 2, 3], [4, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def test_auroc_thresholds_and_platt() -> None:
    y = np.array([0, 0, 1, 1])
    assert auroc(y, np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert auroc(y, np.array([1, 1, 1, 1])) == pytest.approx(0.5)
    assert math.isnan(auroc(np.array([1, 1]), np.array([0.2, 0.3])))
    human = np.arange(1000, dtype=float)
    t = threshold_for_fpr(human, 0.01)
    assert (human >= t).sum() == 10
    assert (human >= threshold_for_fpr(human, 0.001)).sum() == 1
    rng = np.random.default_rng(0)
    s = rng.normal(size=20_000)
    labels = rng.random(20_000) < 1 / (1 + np.exp(-(2.0 * s - 0.5)))
    a, b = fit_platt(s, labels)
    assert a == pytest.approx(2.0, abs=0.1) and b == pytest.approx(-0.5, abs=0.1)
    # the same calibration from any affine rescaling of the scores: Newton with backtracking does not
    # run off to a ~ 1e10 when the sigmoid saturates at the start (scores far from zero)
    for scale, offset in ((10.0, 0.0), (1.0, 5.0), (30.0, -150.0)):
        a2, b2 = fit_platt(scale * s + offset, labels)
        assert a2 * scale == pytest.approx(a, rel=1e-6) and b2 + a2 * offset == pytest.approx(b, abs=1e-6)


def test_group_splits_are_disjoint_and_cover_every_stratum() -> None:
    rows = {f"h{i}": 100 * (i + 1) for i in range(9)} | {f"b{i}": 50 for i in range(6)}
    stratum = {g: g[0] for g in rows}
    split = assign_group_splits(rows, stratum, seed=3)
    assert set(split) == set(rows)
    for kind in "hb":
        assert {split[g] for g in rows if g.startswith(kind)} == {"train", "calibrate", "evaluate"}
    labels = np.array([0] * 90 + [1] * 10)
    picked = balanced_sample(labels, 20, seed=1)
    assert (labels[picked] == 1).sum() == 10 and (labels[picked] == 0).sum() == 10


def test_account_aggregate_frame_and_stream_agree() -> None:
    t0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    posts = pl.DataFrame(
        {
            "account_id": ["a"] * 6 + ["b"] * 2,
            "created_at": [t0 + dt.timedelta(minutes=i) for i in range(8)],
        }
    )
    prob = [0.1, 0.9, 0.9, float("nan"), 0.9, 0.9, 0.2, 0.1]
    frame = account_machine_share(posts, prob, window=4)
    a = frame.filter(pl.col("account_id") == "a").row(0, named=True)
    assert a["n_posts"] == 4 and a["machine_share"] == pytest.approx(0.9)
    assert a["lower"] < 0.9 < a["upper"]
    running = RunningAccountEstimate(window=4)
    running.update(posts["account_id"].to_list(), prob)
    est = running.estimate("a")
    assert est.n_posts == 4 and est.machine_share == pytest.approx(a["machine_share"])
    assert (est.lower, est.upper) == pytest.approx((a["lower"], a["upper"]))
    assert running.estimate("nobody").n_posts == 0
    lo, hi = wilson_interval(45, 50)
    lo_small, hi_small = wilson_interval(4.5, 5)
    assert hi_small - lo_small > hi - lo  # more posts, narrower interval
