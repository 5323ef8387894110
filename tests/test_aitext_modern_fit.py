"""The modern head's fit with the fine-tuned encoder's logit: what it reads, and honest leave-one-out refits.

A small synthetic corpus (no models, no data; a second or two): the adapter's logit is the only
feature that separates the classes, so a head that reads it must rank far better than one that does
not, and a leave-one-generator-out refit must refit the adapter without the held-out generator.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from detectors.aitext.features import EMBEDDING_DIM
from detectors.aitext.fit import coef_digest
from detectors.aitext.fit_modern import (
    ADAPTER_FEATURE,
    ADAPTER_HEAD_VERSION,
    BOOSTED_HEAD_VERSION,
    HEAD_VERSION,
    REGISTER_HEAD_VERSION,
    balanced_weights,
    fit_modern_head,
    fit_pipeline,
    register_of,
)
from detectors.aitext.head import CHAR_NGRAM_FEATURE, LEGACY_CHAR_NGRAM_FEATURE, AiTextHead
from detectors.aitext.text import stylometric_features
from stream.training.modern import adapter_sample

WORDS = [
    "the",
    "a",
    "post",
    "about",
    "our",
    "city",
    "and",
    "its",
    "park",
    "on",
    "a",
    "sunny",
    "day",
    "with",
    "friends",
    "today",
]


def synthetic_corpus(n_accounts: int = 480, per_account: int = 8, seed: int = 0) -> pl.DataFrame:
    """Human and machine pieces with the same words; accounts split train/calibrate/evaluate 50/25/25."""
    rng = np.random.default_rng(seed)
    rows = []
    for a in range(n_accounts):
        split = ("train", "train", "calibrate", "evaluate")[(a // 2) % 4]
        machine = a % 2 == 1
        generator = ("gpt-4o", "claude-3", "gpt2")[(a // 8) % 3] if machine else "human"
        for k in range(per_account):
            rows.append(
                {
                    "text": " ".join(rng.choice(WORDS, size=int(rng.integers(8, 20)))),
                    "label": int(machine),
                    "split": split,
                    "account": f"acct{a}",
                    "generator": generator,
                    "source": "aigc_election2024",
                    "language": "en",
                    "id": f"{a}-{k}",
                }
            )
    return pl.DataFrame(rows)


@pytest.fixture(scope="module")
def corpus() -> pl.DataFrame:
    return synthetic_corpus()


def _inputs(corpus: pl.DataFrame, seed: int = 1) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    texts = corpus["text"].to_list()
    style = np.stack([stylometric_features(t) for t in texts])
    embedding = rng.normal(size=(corpus.height, EMBEDDING_DIM)).astype(np.float32)
    y = corpus["label"].to_numpy()
    logit = np.where(corpus["split"] == "train", np.nan, 3.0 * (2 * y - 1) + rng.normal(0, 1.0, corpus.height))
    return texts, style, embedding, logit


def _pooled_auroc(head) -> float:
    return head.metrics["evaluate_modern_pooled"]["auroc"]


def test_the_head_reads_the_adapter_logit_and_ranks_better_with_it(corpus: pl.DataFrame) -> None:
    texts, style, embedding, logit = _inputs(corpus)
    without = fit_modern_head(
        corpus, texts, style, embedding, leave_out=False, balance_registers=False, boosted=False
    )
    with_adapter = fit_modern_head(
        corpus, texts, style, embedding, leave_out=False, adapter_logit=logit, balance_registers=False, boosted=False
    )
    assert without.version == HEAD_VERSION and ADAPTER_FEATURE not in without.feature_names
    assert with_adapter.version == ADAPTER_HEAD_VERSION and with_adapter.feature_names[-1] == ADAPTER_FEATURE
    assert len(with_adapter.coef_) == len(with_adapter.feature_names) + embedding.shape[1]
    assert _pooled_auroc(without) < 0.75 < 0.95 < _pooled_auroc(with_adapter)


def test_leave_one_out_with_an_adapter_refits_it_without_the_held_out_rows(corpus: pl.DataFrame) -> None:
    texts, style, embedding, logit = _inputs(corpus)
    with pytest.raises(ValueError, match="adapter_refit"):
        fit_modern_head(corpus, texts, style, embedding, adapter_logit=logit)  # a refit that saw the held-out rows
    seen: list[np.ndarray] = []

    def refit(allowed: np.ndarray) -> np.ndarray:
        seen.append(allowed.copy())
        return logit

    head = fit_modern_head(
        corpus,
        texts,
        style,
        embedding,
        adapter_logit=logit,
        adapter_refit=refit,
        leave_out_keys=["claude-3"],
        boosted=False,
    )
    assert [row["slice"] for row in head.metrics["leave_one_generator_out"]] == ["claude-3"]
    assert head.metrics["leave_one_source_out"] == []
    assert len(seen) == 1
    claude = (corpus["generator"] == "claude-3").to_numpy()
    assert not seen[0][claude].any() and seen[0][~claude].all()


def test_the_adapter_sample_is_balanced_train_rows_that_are_allowed(corpus: pl.DataFrame) -> None:
    allowed = (corpus["generator"] != "gpt-4o").to_numpy()
    picked = adapter_sample(corpus, allowed, per_class=100, seed=3)
    chosen = corpus[picked]
    assert (chosen["split"] == "train").all() and allowed[picked].all()
    assert chosen["label"].value_counts().sort("label")["count"].to_list() == [100, 100]
    assert np.array_equal(picked, adapter_sample(corpus, allowed, per_class=100, seed=3))


def test_the_default_head_balances_registers_and_may_read_no_embedding(corpus: pl.DataFrame) -> None:
    texts, style, embedding, _ = _inputs(corpus)
    head = fit_modern_head(corpus, texts, style, embedding[:, :0], leave_out=False)
    assert head.version == BOOSTED_HEAD_VERSION and head.embedding_dim == 0
    assert head.feature_names[-2:] == [CHAR_NGRAM_FEATURE, LEGACY_CHAR_NGRAM_FEATURE]
    assert head.trees is not None and not any(head.coef_) and "register" in head.training["weighting"]
    # the second regression reads the first's vocabulary: one count of n-grams serves both
    assert head.legacy_char_model.vocabulary_ is head.char_model.vocabulary_
    extra = head.extra_features(texts[:50])
    assert np.allclose(extra[LEGACY_CHAR_NGRAM_FEATURE], head.legacy_char_model.logit(texts[:50]))
    values = np.column_stack([style[:50], *extra.values()])
    probability = head.predict_proba(values, None)  # served without any embedding
    assert probability.shape == (50,) and ((probability > 0) & (probability < 1)).all()
    # what the analyst reads adds up to the score: the features' shares plus the head's bias
    shares = head.contributions(values, None)
    score = head.decision_function(values, None)
    assert [sum(row.values()) + head.bias for row in shares] == pytest.approx(score.tolist(), abs=1e-2)
    reloaded = AiTextHead.from_json(head.to_json())
    assert np.allclose(reloaded.decision_function(values, None), score, atol=1e-5)
    assert coef_digest(reloaded) == coef_digest(head) != coef_digest(replace(head, trees=None, legacy_char_ngrams=None))


def test_the_linear_recipe_is_kept_and_needs_no_old_generators(corpus: pl.DataFrame) -> None:
    modern_only = corpus.filter(pl.col("generator") != "gpt2")
    texts, style, embedding, _ = _inputs(modern_only)
    with pytest.raises(ValueError, match="outside MODERN_FAMILIES"):
        fit_modern_head(modern_only, texts, style, embedding[:, :0], leave_out=False)
    head = fit_modern_head(modern_only, texts, style, embedding[:, :0], leave_out=False, boosted=False)
    assert head.version == REGISTER_HEAD_VERSION and head.trees is None and head.legacy_char_model is None
    assert len(head.coef_) == len(head.feature_names) and head.feature_names[-1] == CHAR_NGRAM_FEATURE


def test_balanced_weights_give_every_stratum_and_class_the_same_total() -> None:
    label = np.array([0] * 90 + [1] * 10 + [0] * 5 + [1] * 45)
    stratum = np.array(["tweet"] * 100 + ["text"] * 50)
    weights = balanced_weights(label, stratum)
    totals = {(s, c): weights[(stratum == s) & (label == c)].sum() for s in ("tweet", "text") for c in (0, 1)}
    assert np.allclose(list(totals.values()), weights.sum() / 4)
    assert np.isclose(weights.mean(), 1.0)
    assert list(register_of(np.array(["tweeteval", "local_models", "l2r_rewrites"]))) == ["tweet", "tweet", "text"]


def test_register_balancing_stops_the_register_mix_from_teaching_the_head() -> None:
    """Tweets mostly human, longer texts mostly machine: balanced overall, the head learns "a tweet is human";
    balanced inside each register it learns only the feature that separates the classes in both."""
    rng = np.random.default_rng(5)
    n = 4000
    tweet = rng.uniform(size=n) < 0.5
    machine = rng.uniform(size=n) < np.where(tweet, 0.15, 0.85)
    split = np.array(["train", "calibrate", "calibrate", "evaluate"])[rng.integers(0, 4, n)]
    rows = pl.DataFrame(
        {
            "label": machine.astype(int),
            "split": split,
            "account": [f"a{i}" for i in range(n)],
            "source": np.where(tweet, "tweeteval", "l2r_rewrites"),
        }
    )
    texts = [" ".join(rng.choice(WORDS, size=10)) for _ in range(n)]  # the n-grams carry nothing
    signal = machine + rng.normal(0, 1.0, n)  # separates the classes the same way in both registers
    style = np.column_stack([tweet.astype(float), signal])
    use = np.ones(n, dtype=bool)
    empty = np.zeros((n, 0), np.float32)
    overall = fit_pipeline(rows, texts, style, empty, use, seed=0)
    registers = fit_pipeline(rows, texts, style, empty, use, seed=0, strata=register_of(rows["source"].to_numpy()))
    assert overall.coef[0] < -0.5  # "reads like a tweet" pushed towards human
    assert abs(registers.coef[0]) < 0.15 < registers.coef[1]
