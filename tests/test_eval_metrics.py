"""The evaluation maths (``detectors/evaluation.py``) on scores small enough to check by hand.

Where scikit-learn is installed, AUROC, average precision and the ROC curve are also compared with
it on random tied scores, the way the coordination tests compare edges with QUT's toolkit.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from detectors.evaluation import (
    account_results,
    auroc,
    average_precision,
    brier_score,
    calibration_bins,
    confusion,
    evaluation_slices,
    expected_calibration_error,
    metrics_table,
    named_threshold_rates,
    normalisation_effect,
    normalise_links_and_mentions,
    precision_recall_curve,
    roc_curve,
    surface_feature_rates,
    tpr_at_fpr,
    worst_errors,
)


def test_auroc_by_hand_with_ties_and_nan() -> None:
    # Pairs (machine, human): (0.9 > 0.1), (0.9 > 0.5), (0.5 = 0.5 counts half), (0.5 > 0.1): 3.5 / 4.
    assert auroc([1, 1, 0, 0], [0.9, 0.5, 0.5, 0.1]) == pytest.approx(0.875)
    # A NaN score is an unscored post: left out, not ranked.
    assert auroc([1, 1, 0, 0, 1], [0.9, 0.5, 0.5, 0.1, np.nan]) == pytest.approx(0.875)
    assert auroc([1, 0], [0.0, 1.0]) == 0.0
    assert math.isnan(auroc([1, 1], [0.2, 0.3]))


def test_roc_curve_never_splits_ties() -> None:
    fpr, tpr, thresholds = roc_curve([1, 0, 1, 0], [0.8, 0.8, 0.3, 0.1])
    assert thresholds.tolist() == [np.inf, 0.8, 0.3, 0.1]
    assert fpr.tolist() == [0.0, 0.5, 0.5, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 1.0, 1.0]


def test_precision_recall_and_average_precision_by_hand() -> None:
    precision, recall, thresholds = precision_recall_curve([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1])
    assert thresholds.tolist() == [0.9, 0.8, 0.7, 0.1]
    assert precision.tolist() == pytest.approx([1.0, 0.5, 2 / 3, 0.5])
    assert recall.tolist() == [0.5, 0.5, 1.0, 1.0]
    assert average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)
    assert math.isnan(average_precision([0, 0], [0.1, 0.2]))


def test_tpr_at_fpr_takes_the_best_threshold_within_the_target() -> None:
    labels = [1] * 10 + [0] * 100
    scores = list(np.linspace(1.0, 0.91, 10)) + [0.955] + [0.0] * 99  # one human scores among the machines
    at_1pct = tpr_at_fpr(labels, scores, 0.01)
    assert at_1pct.resolvable
    assert at_1pct.tpr == 1.0 and at_1pct.fpr == 0.01  # flagging all ten machines costs that one human
    at_0 = tpr_at_fpr(labels, scores, 0.001)
    assert not at_0.resolvable  # 100 humans cannot resolve 0.1%
    assert at_0.fpr == 0.0 and at_0.tpr == 0.5  # the five machines above the human's 0.955


def test_tpr_at_fpr_rejects_a_rate_outside_zero_one() -> None:
    with pytest.raises(ValueError, match="target_fpr"):
        tpr_at_fpr([0, 1], [0.0, 1.0], 1.5)


def test_confusion_counts_unscored_posts_as_not_flagged() -> None:
    c = confusion([1, 1, 0, 0, 1], [True, False, True, False, False])
    assert (c.tp, c.fp, c.tn, c.fn) == (1, 1, 1, 2)
    assert c.accuracy == pytest.approx(0.4)
    assert c.tpr == pytest.approx(1 / 3)
    assert c.fpr == 0.5
    assert c.precision == 0.5


def test_calibration_of_a_perfectly_calibrated_detector() -> None:
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 1, 20_000)
    y = (rng.uniform(0, 1, p.size) < p).astype(int)
    bins = calibration_bins(y, p, n_bins=10)
    assert bins.height == 10
    assert (bins["observed"] - bins["mean_predicted"]).abs().max() < 0.05
    assert expected_calibration_error(y, p) < 0.02
    assert brier_score(y, p) == pytest.approx(1 / 6, abs=0.01)  # E[p(1-p)] for uniform p


def test_calibration_without_probabilities_is_empty_not_an_error() -> None:
    nan = [float("nan")] * 3
    assert calibration_bins([0, 1, 1], nan).is_empty()
    assert math.isnan(expected_calibration_error([0, 1, 1], nan))
    assert math.isnan(brier_score([0, 1, 1], nan))


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="same length"):
        auroc([0, 1], [0.1])
    with pytest.raises(ValueError, match="0 \\(human\\) or 1"):
        auroc([0, 2], [0.1, 0.2])


def test_normalise_links_and_mentions_uses_the_aitext_placeholders() -> None:
    texts = pl.DataFrame(
        {
            "text": [
                "read https://t.co/abc and www.example.com/x now",
                "@alice hi @bob_2, see bit.ly/xyz",
                "mail me at someone@example.com",
                "no links here",
            ]
        }
    )
    out = texts.select(normalise_links_and_mentions()).to_series().to_list()
    assert out == ["read URL and URL now", "@user hi @user, see URL", "mail me at someone@example.com", "no links here"]


def test_surface_feature_rates_show_the_link_shortcut() -> None:
    frame = pl.DataFrame(
        {
            "dataset": ["d"] * 4,
            "label": [0, 0, 1, 1],
            "text": ["look https://x.co/a", "hi @bob #tag", "plain text", "more plain text"],
        }
    )
    rates = surface_feature_rates(frame)
    human = rates.filter(pl.col("label") == 0).row(0, named=True)
    machine = rates.filter(pl.col("label") == 1).row(0, named=True)
    assert human["with_link"] == 0.5 and human["with_mention"] == 0.5 and human["with_hashtag"] == 0.5
    assert machine["with_link"] == 0.0


def _scored() -> pl.DataFrame:
    """Two datasets, two generators in one of them, one detector on two variants."""
    rows = []
    for variant, shift in (("raw", 0.0), ("normalised", 0.3)):
        for post_id, dataset, generator, label, score in [
            ("a1", "A", "human", 0, 0.1),
            ("a2", "A", "human", 0, 0.4),
            ("a3", "A", "gpt", 1, 0.9),
            ("a4", "A", "rnn", 1, 0.3),
            ("b1", "B", "human", 0, 0.2),
            ("b2", "B", "gpt", 1, 0.8),
        ]:
            s = score - shift if label == 1 else score
            rows.append(
                {"post_id": post_id, "dataset": dataset, "generator": generator, "label": label,
                 "variant": variant, "detector": "d", "score": s, "probability": None, "flagged": s >= 0.5,
                 "text": f"text {post_id}"}
            )  # fmt: skip
    return pl.DataFrame(rows, schema_overrides={"probability": pl.Float64})


def test_slices_compare_each_generator_with_its_datasets_humans() -> None:
    raw = _scored().filter(pl.col("variant") == "raw")
    slices = {(kind, name): set(rows["post_id"]) for kind, name, rows in evaluation_slices(raw)}
    assert slices[("all", "all")] == {"a1", "a2", "a3", "a4", "b1", "b2"}
    assert slices[("dataset", "B")] == {"b1", "b2"}
    assert slices[("generator", "rnn")] == {"a1", "a2", "a4"}  # only dataset A's humans
    assert slices[("generator", "gpt")] == {"a1", "a2", "a3", "b1", "b2"}


def test_metrics_table_and_normalisation_effect() -> None:
    metrics = metrics_table(_scored())
    assert set(metrics["variant"]) == {"raw", "normalised"}
    raw_all = metrics.filter(pl.col("variant") == "raw", pl.col("slice") == "all").row(0, named=True)
    # machines 0.9, 0.3, 0.8 vs humans 0.1, 0.4, 0.2: 0.3 loses to 0.4 only -> 8/9
    assert raw_all["auroc"] == pytest.approx(8 / 9)
    assert raw_all["accuracy_at_default"] == pytest.approx(5 / 6)
    assert raw_all["not_scored"] == 0
    assert math.isnan(raw_all["ece"])  # no probabilities
    assert "tpr_at_1pct_fpr" in metrics.columns and "tpr_at_0.1pct_fpr_resolvable" in metrics.columns
    effect = normalisation_effect(metrics).filter(pl.col("slice") == "all").row(0, named=True)
    assert effect["change"] == pytest.approx(effect["normalised"] - effect["raw"])
    assert effect["change"] < 0  # machines scored lower once links were gone


def test_named_threshold_rates_and_worst_errors() -> None:
    raw = _scored().filter(pl.col("variant") == "raw")
    rates = named_threshold_rates(raw["label"].to_numpy(), raw["score"].to_numpy(), {"default": 0.5, "lax": 0.25})
    lax = rates.filter(pl.col("threshold_name") == "lax").row(0, named=True)
    assert lax["tpr"] == 1.0 and lax["fpr"] == pytest.approx(1 / 3)
    errors = worst_errors(raw, n=5)
    assert set(errors["error"]) == {"machine missed"}  # no human reaches 0.5
    assert errors["post_id"].to_list() == ["a4"]


@pytest.mark.parametrize("seed", range(5))
def test_against_scikit_learn(seed: int) -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    y[:2] = [0, 1]
    s = rng.integers(0, 12, 300).astype(float)  # heavy ties
    assert auroc(y, s) == pytest.approx(metrics.roc_auc_score(y, s), abs=1e-12)
    assert average_precision(y, s) == pytest.approx(metrics.average_precision_score(y, s), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, s)
    theirs_fpr, theirs_tpr, _ = metrics.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, theirs_fpr)
    np.testing.assert_allclose(tpr, theirs_tpr)


def _wilson_by_hand(p: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def test_account_results_by_hand() -> None:
    """Per-account shares, intervals and the policy rule; a person's account can be acted on, and is counted."""
    spec = {  # account: (label, probability, posts)
        "h_quiet": (0, 0.1, 12),
        "h_loud": (0, 0.92, 12),  # a person whose posts all look machine-written
        "m_busy": (1, 0.9, 12),
        "m_new": (1, 0.95, 3),  # too few posts for the rule
    }
    rows = [
        {"post_id": f"{account}-{i}", "label": label, "probability": p, "group": account}
        for account, (label, p, n) in spec.items()
        for i in range(n)
    ]
    rows += [
        {"post_id": "m_busy-unscored", "label": 1, "probability": None, "group": "m_busy"},
        {"post_id": "mix-0", "label": 0, "probability": 0.2, "group": "mix"},
        {"post_id": "mix-1", "label": 1, "probability": 0.6, "group": "mix"},
        {"post_id": "orphan", "label": 1, "probability": 0.99, "group": None},
    ]
    base = pl.DataFrame(rows, schema_overrides={"label": pl.Int8, "probability": pl.Float64})
    scored = pl.concat(
        [
            base.with_columns(detector=pl.lit("d"), variant=pl.lit("normalised")),
            base.with_columns(detector=pl.lit("d"), variant=pl.lit("raw")),
            base.with_columns(detector=pl.lit("ranks_only"), variant=pl.lit("raw"), probability=pl.lit(None)),
        ]
    ).with_columns(score=pl.col("probability"), flagged=pl.col("probability") > 0.5)
    per_account, summary = account_results(scored, base.select("post_id", "group"))

    assert set(per_account["detector"]) == {"d"}  # no probabilities, no share to estimate
    assert per_account.filter(pl.col("variant") == "raw")["account"].to_list() == [
        "m_new", "h_loud", "m_busy", "mix", "h_quiet"  # highest share first
    ]  # fmt: skip
    row = {r["account"]: r for r in per_account.filter(pl.col("variant") == "raw").iter_rows(named=True)}
    assert row["m_busy"]["posts"] == 13 and row["m_busy"]["n_posts"] == 12  # the unscored post is not evidence
    for account, (_, p, n) in spec.items():
        lower, upper = _wilson_by_hand(p, n)
        assert row[account]["machine_share"] == pytest.approx(p)
        assert (row[account]["lower"], row[account]["upper"]) == (pytest.approx(lower), pytest.approx(upper))
    assert row["mix"]["label"] == "mixed" and row["mix"]["machine_share"] == pytest.approx(0.4)
    assert row["mix"]["flagged_share"] == pytest.approx(0.5)
    # lower bounds: h_loud 0.650, m_busy 0.626 (acted); m_new has 3 posts; h_quiet 0.03
    assert {a for a, r in row.items() if r["acted"]} == {"h_loud", "m_busy"}

    assert summary["variant"].to_list() == ["raw", "normalised"]
    first = summary.row(0, named=True)
    assert (first["human_accounts"], first["machine_accounts"], first["mixed_accounts"]) == (2, 2, 1)
    # machines 0.9 and 0.95 against humans 0.1 and 0.92: three of four pairs ordered right
    assert first["account_auroc"] == pytest.approx(0.75)
    assert (first["humans_acted"], first["machines_acted"]) == (1, 1)


def test_account_results_without_groups_or_probabilities_is_empty() -> None:
    scored = pl.DataFrame({"post_id": ["a"], "label": [1], "probability": [None], "score": [1.0], "flagged": [True],
                           "detector": ["d"], "variant": ["raw"]})  # fmt: skip
    per_account, summary = account_results(scored, pl.DataFrame({"post_id": ["a"], "group": ["g"]}))
    assert per_account.is_empty() and summary.is_empty()
