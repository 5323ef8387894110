"""Fit the fast AI-text head for modern generators, and measure how it generalises.

The default head (:data:`BOOSTED_HEAD_VERSION`) is gradient-boosted trees over features of a post's
*stripped* text (:func:`detectors.aitext.corpus.strip_markers`): twelve stylometric statistics and
the log-odds of two character n-gram regressions over one vocabulary (:mod:`detectors.aitext.char_ngrams`),
one against every machine generator, one against the generators outside :data:`MODERN_FAMILIES`.
The earlier recipes are logistic regressions over the statistics, one n-gram logit and optionally
the logit of MiniLM fine-tuned as a classifier (a LoRA adapter on its top two layers,
:mod:`detectors.aitext.finetune`) and the frozen MiniLM embedding. No language model runs: fast
enough for every post on a CPU.

What is learnt where (keys = accounts or groups, :func:`detectors.aitext.corpus.split_by_key`):

* **character n-gram regressions** and **encoder adapter**: the *train* keys (the adapter on a
  class-balanced sample of them, fitted by the caller, which passes its logit and a way to refit it).
* **head weights or trees**: half of the *calibrate* keys (``fit`` half), where the n-gram logit is out of
  sample, as it will be on new posts; class-balanced, because the stream's prior is unknown.
* **calibration and thresholds**: the other half of the calibrate keys (``threshold`` half):
  class-balanced Platt scaling, then ``fpr_1pct`` / ``fpr_0.1pct`` and ``default`` (at
  :data:`DEFAULT_TARGET_FPR`, below 1% so the rate on unseen people stays under 1%) on its humans.
* **metrics**: the *evaluate* keys only. Leave-one-generator-out and leave-one-source-out runs repeat
  the whole pipeline without the held-out generator's (or source's) rows in any fitted step.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from detectors.aitext.char_ngrams import CharNgramModel, fit_char_ngram_models, shared_logits
from detectors.aitext.corpus import MODERN_FAMILIES, stable_unit
from detectors.aitext.features import ADAPTER_FEATURE_NAMES
from detectors.aitext.generalisation import slice_row, worst_account_fpr
from detectors.aitext.head import CHAR_NGRAM_FEATURE, LEGACY_CHAR_NGRAM_FEATURE, AiTextHead
from detectors.aitext.text import STYLE_FEATURE_NAMES
from detectors.aitext.training import Standardiser, fit_platt, sigmoid, threshold_for_fpr
from detectors.aitext.trees import TreeEnsemble

log = logging.getLogger(__name__)

HEAD_VERSION = "modern-lr-v2"
#: With the fine-tuned encoder's logit as a feature.
ADAPTER_HEAD_VERSION = "modern-lr-v3"
#: Classes balanced inside each register, read by every fitted step (any features): chosen by
#: leave-one-*source*-out, the measure of a corpus the detector never saw (docs/eval/aitext-modern/cross-corpus.md).
#: modern-lr-v4 was the first such head; modern-lr-v5 is its recipe refitted on a corpus that also holds
#: Qwen2.5-Coder tweets generated here (another model family: AIGC-Election left out 0.60 -> 0.63).
REGISTER_HEAD_VERSION = "modern-lr-v5"
#: Gradient-boosted trees over the register-balanced features plus a second n-gram regression (base
#: models and pre-2020 generators against humans): the default since 2026-12-04, chosen by leave-one-
#: source-out (docs/eval/aitext-modern/cross-corpus.md, "A head that is not a line"). v7 is v6's recipe
#: refitted on a corpus with more Qwen2.5-Coder-1.5B tweets ("More local writers").
BOOSTED_HEAD_VERSION = "modern-gb-v7"
#: The trees' settings: shallow, many, slow, fixed (no early stopping, so a refit is deterministic).
BOOSTING = {
    "max_iter": 300,
    "learning_rate": 0.05,
    "max_leaf_nodes": 15,
    "min_samples_leaf": 40,
    "l2_regularization": 1.0,
}
#: The default threshold's false-positive rate on the threshold-half humans.
DEFAULT_TARGET_FPR = 0.005
TARGET_FPRS: dict[str, float] = {"fpr_1pct": 0.01, "fpr_0.1pct": 0.001}
#: L2 strength of the head's regression (397 standardised features, ~10k rows).
REGULARISATION_C = 0.3
#: Corpora of human *tweets*: the false-positive goal is stated on these.
TWEET_SOURCES = ("aigc_election2024", "tweepfake", "tweeteval", "ira_2017")
#: Corpora whose pieces are whole posts: the human tweets and the local models' generated tweets.
TWEET_REGISTER_SOURCES = (*TWEET_SOURCES, "local_models")
FEATURE_NAMES: tuple[str, ...] = (*STYLE_FEATURE_NAMES, CHAR_NGRAM_FEATURE)
BOOSTED_FEATURE_NAMES: tuple[str, ...] = (*FEATURE_NAMES, LEGACY_CHAR_NGRAM_FEATURE)
ADAPTER_FEATURE = ADAPTER_FEATURE_NAMES[0]
#: ``use`` mask (rows a refit may learn from) -> the adapter's logit per row, refitted on those rows.
AdapterRefit = Callable[[np.ndarray], np.ndarray]


@dataclass
class FittedPipeline:
    """One run of the pipeline: its parts and the calibrated log-odds of every non-train row (NaN on train)."""

    char_model: CharNgramModel
    standardiser: Standardiser
    coef: np.ndarray
    intercept: float
    platt: tuple[float, float]
    thresholds: dict[str, float]
    log_odds: np.ndarray
    #: the second n-gram regression and the trees of a boosted head (None for the linear recipe)
    legacy_model: CharNgramModel | None = None
    trees: TreeEnsemble | None = None


def calibrate_halves(rows: pl.DataFrame, seed: int) -> np.ndarray:
    """True for calibrate rows whose key falls in the head-fitting half, False for the threshold half."""
    keys = rows["account"].to_list()
    return np.array([stable_unit(k, seed + 1) < 0.5 for k in keys])


def balanced_weights(label: np.ndarray, stratum: np.ndarray) -> np.ndarray:
    """Sample weights giving every (stratum, class) cell the same total weight (mean weight 1).

    Class balance alone lets a stratum's class mix teach the model: most machine pieces are cut from
    longer texts and most human pieces are tweets, so "reads like a tweet" becomes evidence of a human.
    Balancing the classes inside each stratum (register or source) leaves nothing to learn from it.
    """
    weights = np.zeros(len(label))
    for cell in {(s, int(c)) for s, c in zip(stratum, label, strict=True)}:
        mask = (stratum == cell[0]) & (label == cell[1])
        weights[mask] = 1.0 / mask.sum()
    return weights * len(label) / weights.sum()


def register_of(source: np.ndarray) -> np.ndarray:
    """``tweet`` for corpora of whole tweets (the local models' included), ``text`` for cut longer texts."""
    return np.where(np.isin(source, TWEET_REGISTER_SOURCES), "tweet", "text")


def fit_pipeline(
    rows: pl.DataFrame,
    texts: list[str],
    style: np.ndarray,
    embedding: np.ndarray,
    use: np.ndarray,
    seed: int = 0,
    extra: np.ndarray | None = None,
    strata: np.ndarray | None = None,
    boosted: bool = False,
) -> FittedPipeline:
    """Fit every step on the rows where ``use`` is true (see the module docstring); score all rows.

    ``extra`` ([rows, k], read on calibrate and evaluate rows only) adds features learnt elsewhere on
    the train rows, such as a fine-tuned encoder's logit; they enter after the n-gram logit.
    ``strata`` (one label per row): balance the classes inside each stratum (:func:`balanced_weights`)
    in the n-gram regression and the head, instead of overall.
    ``boosted``: a second n-gram regression (machine pieces of generators outside
    :data:`MODERN_FAMILIES` against humans, same vocabulary) and gradient-boosted trees as the head
    instead of the logistic regression.
    """
    from sklearn.linear_model import LogisticRegression

    y = rows["label"].to_numpy().astype(int)
    split = rows["split"].to_numpy()
    fit_half = calibrate_halves(rows, seed)
    tr = use & (split == "train")
    head_rows = use & (split == "calibrate") & fit_half
    threshold_rows = use & (split == "calibrate") & ~fit_half

    def weights(mask: np.ndarray) -> np.ndarray | None:
        return None if strata is None else balanced_weights(y[mask], strata[mask])

    train_rows = np.flatnonzero(tr)
    subsets = {"main": (np.ones(len(train_rows), dtype=bool), weights(tr))}
    if boosted:
        legacy = tr & ~((y == 1) & np.isin(rows["generator"].to_numpy(), list(MODERN_FAMILIES)))
        keep = legacy[train_rows]
        if len(set(y[legacy].tolist())) < 2:
            raise ValueError(
                "the boosted head's second n-gram regression needs train pieces of a generator outside "
                "MODERN_FAMILIES (base models, pre-2020 generators); pass boosted=False for the linear recipe"
            )
        legacy_weights = None
        if strata is not None:
            legacy_weights = np.zeros(len(train_rows))
            legacy_weights[keep] = balanced_weights(y[legacy], strata[legacy])
        subsets["legacy"] = (keep, legacy_weights)
    models = fit_char_ngram_models([texts[i] for i in train_rows], y[train_rows], subsets, seed=seed)
    char_model, legacy_model = models["main"], models.get("legacy")
    # every later step reads calibrate and evaluate rows only: train rows keep NaN (and cost nothing)
    later = np.flatnonzero(split != "train")
    logits = np.full((len(texts), len(models)), np.nan)
    logits[later] = shared_logits(list(models.values()), [texts[i] for i in later])
    columns = [style, logits, *([] if extra is None else [np.asarray(extra, np.float64)])]
    x = np.concatenate([*columns, embedding.astype(np.float64)], axis=1)
    std = Standardiser.fit(x[head_rows])
    z = np.where(split[:, None] == "train", np.nan, std.transform(x))
    trees = None
    if boosted:
        trees = fit_trees(x[head_rows], y[head_rows], weights(head_rows), seed)
        coef, intercept = np.zeros(x.shape[1]), 0.0
        raw = np.full(len(texts), np.nan)
        raw[later] = trees.raw(x[later])
    else:
        balance = "balanced" if strata is None else None
        model = LogisticRegression(C=REGULARISATION_C, max_iter=3000, class_weight=balance, random_state=seed)
        model.fit(z[head_rows], y[head_rows], sample_weight=weights(head_rows))
        coef, intercept = model.coef_[0], float(model.intercept_[0])
        raw = z @ coef + intercept
    yc = y[threshold_rows]
    a, b = fit_platt(raw[threshold_rows], yc, weights=np.where(yc == 1, 0.5 / yc.sum(), 0.5 / (1 - yc).sum()))
    log_odds = a * raw + b
    humans = log_odds[threshold_rows & (y == 0)]
    targets = {**TARGET_FPRS, "default": DEFAULT_TARGET_FPR}
    thresholds = {name: threshold_for_fpr(humans, fpr) for name, fpr in targets.items()}
    return FittedPipeline(char_model, std, coef, intercept, (a, b), thresholds, log_odds, legacy_model, trees)


def fit_trees(x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None, seed: int) -> TreeEnsemble:
    """scikit-learn's histogram gradient boosting with :data:`BOOSTING`'s settings, as a servable ensemble.

    Without weights the classes are balanced, as the linear head's ``class_weight="balanced"`` does.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    if sample_weight is None:
        share = y.mean()
        sample_weight = np.where(y == 1, 0.5 / share, 0.5 / (1 - share))
    model = HistGradientBoostingClassifier(**BOOSTING, early_stopping=False, random_state=seed)
    model.fit(x, y, sample_weight=sample_weight)
    return TreeEnsemble.from_sklearn(model, x.shape[1])


def fit_modern_head(
    rows: pl.DataFrame,
    texts: list[str],
    style: np.ndarray,
    embedding: np.ndarray,
    *,
    seed: int = 0,
    command: str = "chorus train-aitext-modern",
    leave_out: bool = True,
    leave_out_keys: Collection[str] | None = None,
    adapter_logit: np.ndarray | None = None,
    adapter_refit: AdapterRefit | None = None,
    balance_registers: bool = True,
    boosted: bool = True,
) -> AiTextHead:
    """Fit, calibrate, threshold and measure the head on the corpus ``rows`` (see the module docstring).

    ``embedding`` may have no columns: the head then reads no frozen embedding (``embedding_dim`` 0).
    ``adapter_logit``: the fine-tuned encoder's logit per row (read on calibrate and evaluate rows);
    the leave-one-out refits then call ``adapter_refit`` so that no step saw the held-out rows.
    ``leave_out_keys`` limits the refits to those generators and sources (None: all of them).
    ``balance_registers``: balance the classes inside each register (:func:`register_of`), not overall.
    ``boosted``: the default head (:data:`BOOSTED_HEAD_VERSION`; see :func:`fit_pipeline`); False gives
    the logistic-regression recipes (modern-lr-v2 to v5).
    """
    if adapter_logit is not None and leave_out and adapter_refit is None:
        raise ValueError("leave-one-out refits of a head with an adapter need adapter_refit (or leave_out=False)")
    y = rows["label"].to_numpy().astype(int)
    split = rows["split"].to_numpy()
    everything = np.ones(rows.height, dtype=bool)
    extra = None if adapter_logit is None else np.asarray(adapter_logit, np.float64)[:, None]
    strata = register_of(rows["source"].to_numpy()) if balance_registers else None
    fitted = fit_pipeline(rows, texts, style, embedding, everything, seed, extra=extra, strata=strata, boosted=boosted)
    threshold_humans = (split == "calibrate") & ~calibrate_halves(rows, seed) & (y == 0)
    n_keys = rows.filter(pl.lit(threshold_humans))["account"].n_unique()
    thresholds_: dict[str, dict[str, Any]] = {}
    for name, t in fitted.thresholds.items():
        target = TARGET_FPRS.get(name, DEFAULT_TARGET_FPR)
        thresholds_[name] = {
            "log_odds": t,
            "probability": float(sigmoid(np.array([t]))[0]),
            "how": f"smallest log-odds with at most {target:.1%} of {int(threshold_humans.sum())} human posts of "
            f"{n_keys} calibrate accounts and groups at or above it (the half not used to fit the weights)",
            "achieved_fpr_on_calibrate": float((fitted.log_odds[threshold_humans] >= t).mean()),
        }
    metrics = evaluation_metrics(rows, fitted.log_odds, fitted.thresholds["default"])
    if leave_out:
        metrics.update(
            leave_out_tables(rows, texts, style, embedding, seed, leave_out_keys, adapter_refit, strata, boosted)
        )
    training = {
        "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command,
        "data": "chorus aitext-corpus: modern-LLM and human pieces of 8-60 words; hashtags, emoji, links and "
        "mentions stripped",
        "text_preparation": "strip_markers",
        "lm_statistics": "none",
        "seed": seed,
        "rows_per_split": {s: int((split == s).sum()) for s in ("train", "calibrate", "evaluate")},
        "model": ("register-balanced" if balance_registers else "class-balanced")
        + (
            f" gradient-boosted trees (scikit-learn HistGradientBoosting, {BOOSTING}) on stylometry, a character"
            " n-gram regression's logit, a second n-gram regression's logit (base models and pre-2020 generators"
            " against humans)"
            if boosted
            else " L2 logistic regression (scikit-learn) on standardised stylometry, a character n-gram regression's"
            " logit"
        )
        + (", the fine-tuned MiniLM adapter's logit" if adapter_logit is not None else "")
        + (" and the MiniLM embedding" if embedding.shape[1] else ""),
        "weighting": "classes balanced inside each register (whole tweets; pieces cut from longer texts)"
        if balance_registers
        else "classes balanced overall",
        "char_ngrams": "char_wb 1-4 grams, sublinear tf-idf, 40k features, "
        + ("register-balanced" if balance_registers else "class-balanced")
        + " L2 LR (C=4), train keys",
        **({} if boosted else {"C": REGULARISATION_C}),
        "platt": "class-balanced Platt scaling on the threshold half of the calibrate keys",
    }
    a, b = fitted.platt
    if boosted:
        version = BOOSTED_HEAD_VERSION
    elif balance_registers:
        version = REGISTER_HEAD_VERSION
    else:
        version = HEAD_VERSION if adapter_logit is None else ADAPTER_HEAD_VERSION
    names = BOOSTED_FEATURE_NAMES if boosted else FEATURE_NAMES
    legacy = fitted.legacy_model
    return AiTextHead(
        version=version,
        feature_names=list(names) + ([] if adapter_logit is None else [ADAPTER_FEATURE]),
        embedding_dim=int(embedding.shape[1]),
        mean_=fitted.standardiser.mean.tolist(),
        scale_=fitted.standardiser.scale.tolist(),
        coef_=fitted.coef.tolist(),
        intercept_=fitted.intercept,
        platt_a_=a,
        platt_b_=b,
        thresholds_=thresholds_,
        metrics=metrics,
        training=training,
        char_ngrams=fitted.char_model.to_dict(),
        legacy_char_ngrams=None
        if legacy is None
        else {"coef_": legacy.to_dict()["coef_"], "intercept_": legacy.intercept_},
        trees=None if fitted.trees is None else fitted.trees.to_dict(),
    )


def evaluation_metrics(rows: pl.DataFrame, log_odds: np.ndarray, default: float) -> dict[str, Any]:
    """Per generator, source and language on the evaluate keys, and the human false-positive rates."""
    y = rows["label"].to_numpy().astype(int)
    ev = rows["split"].to_numpy() == "evaluate"
    generator = rows["generator"].to_numpy()
    source = rows["source"].to_numpy()
    language = rows["language"].to_numpy()
    accounts = rows["account"].to_numpy()
    humans = ev & (y == 0)
    per_generator = [
        slice_row(g, log_odds[humans], log_odds[ev & (generator == g)], default)
        for g in sorted(set(generator[ev & (y == 1)]))
    ]
    per_source = []
    for s in sorted(set(source[ev & (y == 1)])):
        own = humans & (source == s)
        machine = ev & (y == 1) & (source == s)
        per_source.append(slice_row(s, log_odds[own if own.any() else humans], log_odds[machine], default))
    per_language = []
    for lang in sorted(set(language[ev])):
        mine = ev & (language == lang)
        per_language.append(slice_row(lang, log_odds[mine & (y == 0)], log_odds[mine & (y == 1)], default))
    tweets = humans & np.isin(source, TWEET_SOURCES)
    modern = ev & np.isin(generator, list(MODERN_FAMILIES))
    return {
        "evaluate_per_generator": per_generator,
        "evaluate_per_source": per_source,
        "evaluate_per_language": per_language,
        "evaluate_human_tweets_fpr_at_default": worst_account_fpr(log_odds[tweets], accounts[tweets], default),
        "evaluate_all_humans_fpr_at_default": worst_account_fpr(log_odds[humans], accounts[humans], default),
        "evaluate_modern_pooled": slice_row("modern generators", log_odds[humans], log_odds[modern], default),
    }


def leave_out_tables(
    rows: pl.DataFrame,
    texts: list[str],
    style: np.ndarray,
    embedding: np.ndarray,
    seed: int,
    keys: Collection[str] | None = None,
    adapter_refit: AdapterRefit | None = None,
    strata: np.ndarray | None = None,
    boosted: bool = False,
) -> dict[str, Any]:
    """The whole pipeline refitted without each modern generator, and without each source.

    A held-out generator's machine pieces are scored against all evaluate humans; a held-out source's
    against its own evaluate humans where it has some (same domain), with that source's humans also
    left out of every fitted step. The flagged share uses the refit's own default threshold. With
    ``adapter_refit`` the encoder adapter is refitted too (the costly part: minutes per key), and
    ``keys`` limits the refits to those generators and sources.
    """
    y = rows["label"].to_numpy().astype(int)
    ev = rows["split"].to_numpy() == "evaluate"
    generator = rows["generator"].to_numpy()
    source = rows["source"].to_numpy()
    tables: dict[str, list[dict[str, Any]]] = {"leave_one_generator_out": [], "leave_one_source_out": []}
    chosen = None if keys is None else set(keys)
    for table, column, candidates in (
        ("leave_one_generator_out", generator, sorted(set(generator[y == 1]) & MODERN_FAMILIES)),
        ("leave_one_source_out", source, sorted(set(source[y == 1]))),
    ):
        for key in [k for k in candidates if chosen is None or k in chosen]:
            log.info("%s: refitting without %s", table, key)
            held = column == key
            extra = None if adapter_refit is None else adapter_refit(~held)[:, None]
            fitted = fit_pipeline(
                rows, texts, style, embedding, ~held, seed, extra=extra, strata=strata, boosted=boosted
            )
            machine = ev & (y == 1) & held
            own_humans = ev & (y == 0) & held
            humans = own_humans if own_humans.any() else ev & (y == 0)
            tables[table].append(
                slice_row(key, fitted.log_odds[humans], fitted.log_odds[machine], fitted.thresholds["default"])
            )
    return tables
