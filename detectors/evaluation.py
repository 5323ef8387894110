"""How good is a detector on labelled posts: the metric maths, as pure functions over arrays and frames.

``chorus eval`` (``stream/evaluation/report.py``), the evaluation notebook and the benchmarks all call these,
so a number in the README, in a report and in a notebook is computed one way. Nothing here reads a
file or draws a plot: arrays and polars frames in, numbers and frames out (the Binoculars
``metrics.py`` idea: metric maths you can test on five hand-made scores).

Conventions, chosen once:

* ``labels`` are 1 for machine-written (the positive class) and 0 for human; ``scores`` are a
  detector's ``decision_function`` (higher = more suspicious). A NaN score means the detector did
  not score the post (empty text, binary junk): such rows are *left out of the curves* and counted
  in ``not_scored``, and at a threshold they count as not flagged, as the stream treats them.
* **TPR at a fixed FPR** is the highest true-positive rate of any threshold whose false-positive
  rate is at most the target, with ties never split (every post at one score is flagged or none
  is). It is only *resolvable* when the data hold at least ``1 / target`` human posts: with 300
  human posts, "0.1% FPR" means "no false positive at all", and the tables mark it so.
* Curves per **generator** compare that generator's machine posts with the human posts of the
  datasets the generator appears in (humans have no generator); per **dataset** they use every row
  of the dataset. This is how detection papers (DetectGPT, Binoculars, M4) report per-model numbers.
* Link and @mention normalisation (:func:`normalise_links_and_mentions`) uses the same placeholders
  as the AI-text detector (``URL``, ``@user``): in the development data a link is in 41% of human
  tweets and 2% of machine ones, so a score that moves when links vanish was reading the links.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl

#: Default false-positive rates at which the report reads off the true-positive rate: 1% is a
#: review queue a team can work; 0.1% is what automated action on a large platform can afford.
DEFAULT_FPR_TARGETS: tuple[float, ...] = (0.01, 0.001)

#: Placeholders that replace links and @mentions (the AI-text detector's, ``detectors/aitext/text.py``).
URL_PLACEHOLDER = "URL"
MENTION_PLACEHOLDER = "@user"

# Rust-regex versions of the AI-text detector's patterns (no look-behind there: the character before
# a mention is captured and written back instead).
URL_PATTERN = r"(?i)(?:https?://|www\.)\S*|\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|org|net|co|ly|io)/\S*"
MENTION_PATTERN = r"(^|[^\w@])@\w{1,50}"

#: The text variants a report compares: the post as written, and with links and mentions replaced.
TEXT_VARIANTS: tuple[str, ...] = ("raw", "normalised")


# --------------------------------------------------------------------------------------------
# Text


def normalise_links_and_mentions(text: pl.Expr | str = "text") -> pl.Expr:
    """Every URL to ``URL`` and every @mention to ``@user``, as a polars expression."""
    expr = pl.col(text) if isinstance(text, str) else text
    return expr.str.replace_all(URL_PATTERN, URL_PLACEHOLDER).str.replace_all(
        MENTION_PATTERN, "${1}" + MENTION_PLACEHOLDER
    )


def surface_feature_rates(frame: pl.DataFrame, by: tuple[str, ...] = ("dataset",)) -> pl.DataFrame:
    """Share of human and machine posts with a link, a mention and a hashtag, per ``by`` group.

    The shortcut a detector could learn instead of authorship, measured on the data at hand: when
    these differ much between the classes, compare raw and normalised scores before trusting either.
    """
    text = pl.col("text")
    return (
        frame.group_by(*by, "label")
        .agg(
            posts=pl.len(),
            with_link=text.str.contains(URL_PATTERN).mean(),
            with_mention=text.str.contains(MENTION_PATTERN).mean(),
            with_hashtag=text.str.contains(r"(^|\s)#\w").mean(),
        )
        .sort(*by, "label")
    )


# --------------------------------------------------------------------------------------------
# Arrays


def _clean(labels: np.ndarray | list[int], scores: np.ndarray | list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Labels as 0/1 ints and scores as floats, rows with a NaN score dropped; shapes checked."""
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"labels and scores must be 1-d and the same length, got {y.shape} and {s.shape}")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (human) or 1 (machine)")
    keep = ~np.isnan(s)
    return y[keep].astype(np.int64), s[keep]


def _cumulative_counts(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True and false positives when flagging every post scoring at least each distinct score."""
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    # Last index of each run of equal scores: a threshold flags a whole run or none of it.
    ends = np.r_[np.flatnonzero(np.diff(s_sorted)), s_sorted.size - 1] if s_sorted.size else np.zeros(0, dtype=int)
    tp = np.cumsum(y_sorted)[ends]
    fp = (ends + 1) - tp
    return tp.astype(np.float64), fp.astype(np.float64), s_sorted[ends]


def roc_curve(labels: np.ndarray | list[int], scores: np.ndarray | list[float]) -> tuple[np.ndarray, ...]:
    """``(fpr, tpr, thresholds)``, starting at (0, 0) with threshold +inf; NaN scores left out.

    Empty arrays when a class is missing: a curve needs both humans and machines.
    """
    y, s = _clean(labels, scores)
    n_pos, n_neg = int(y.sum()), int(y.size - y.sum())
    if n_pos == 0 or n_neg == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    tp, fp, thresholds = _cumulative_counts(y, s)
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos], np.r_[np.inf, thresholds]


def auroc(labels: np.ndarray | list[int], scores: np.ndarray | list[float]) -> float:
    """Area under the ROC curve (Mann-Whitney U with tied ranks averaged); NaN if a class is missing."""
    y, s = _clean(labels, scores)
    n_pos, n_neg = int(y.sum()), int(y.size - y.sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    first_rank = np.cumsum(counts) - counts + 1  # 1-based rank of the first member of each tie group
    mean_rank = first_rank + (counts - 1) / 2.0
    rank_sum = mean_rank[inverse][y == 1].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def precision_recall_curve(labels: np.ndarray | list[int], scores: np.ndarray | list[float]) -> tuple[np.ndarray, ...]:
    """``(precision, recall, thresholds)`` from the highest threshold down; NaN scores left out.

    Empty arrays when there is no machine post (recall is undefined).
    """
    y, s = _clean(labels, scores)
    if y.sum() == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    tp, fp, thresholds = _cumulative_counts(y, s)
    return tp / (tp + fp), tp / y.sum(), thresholds


def average_precision(labels: np.ndarray | list[int], scores: np.ndarray | list[float]) -> float:
    """Area under the precision-recall curve as a step sum (scikit-learn's definition); NaN without positives."""
    precision, recall, _ = precision_recall_curve(labels, scores)
    if recall.size == 0:
        return float("nan")
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


@dataclass(frozen=True)
class OperatingPoint:
    """The best threshold whose false-positive rate stays within ``target_fpr``."""

    target_fpr: float
    tpr: float
    fpr: float
    threshold: float
    #: False when fewer than ``1 / target_fpr`` human posts were scored: the rate cannot be told apart from 0.
    resolvable: bool


def tpr_at_fpr(labels: np.ndarray | list[int], scores: np.ndarray | list[float], target_fpr: float) -> OperatingPoint:
    """Highest TPR at FPR <= ``target_fpr`` (ties never split; see the module docstring)."""
    if not 0.0 <= target_fpr <= 1.0:
        raise ValueError(f"target_fpr must be between 0 and 1, got {target_fpr}")
    y, _ = _clean(labels, scores)
    n_neg = int(y.size - y.sum())
    fpr, tpr, thresholds = roc_curve(labels, scores)
    if fpr.size == 0:
        return OperatingPoint(target_fpr, float("nan"), float("nan"), float("nan"), False)
    ok = np.flatnonzero(fpr <= target_fpr + 1e-12)
    best = ok[np.argmax(tpr[ok])]  # fpr[0] == 0, so ok is never empty
    return OperatingPoint(
        target_fpr=target_fpr,
        tpr=float(tpr[best]),
        fpr=float(fpr[best]),
        threshold=float(thresholds[best]),
        resolvable=n_neg * target_fpr >= 1.0,
    )


@dataclass(frozen=True)
class Confusion:
    """Counts and rates of one decision rule (flag or not) against the labels."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def accuracy(self) -> float:
        return (self.tp + self.tn) / self.n if self.n else float("nan")

    @property
    def tpr(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")

    @property
    def fpr(self) -> float:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else float("nan")

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")


def confusion(labels: np.ndarray | list[int], flagged: np.ndarray | list[bool]) -> Confusion:
    """Confusion counts of a decision (every row counts: an unscored post is simply not flagged)."""
    y = np.asarray(labels).astype(np.int64)
    f = np.asarray(flagged).astype(bool)
    if y.shape != f.shape:
        raise ValueError(f"labels and flagged differ in length: {y.shape} vs {f.shape}")
    return Confusion(
        tp=int(np.sum(f & (y == 1))),
        fp=int(np.sum(f & (y == 0))),
        tn=int(np.sum(~f & (y == 0))),
        fn=int(np.sum(~f & (y == 1))),
    )


def calibration_bins(
    labels: np.ndarray | list[int], probabilities: np.ndarray | list[float], n_bins: int = 10
) -> pl.DataFrame:
    """Reliability table: equal-width probability bins with mean predicted and observed machine share.

    Rows with a NaN probability (an uncalibrated detector) are left out; empty bins are omitted.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    y, p = _clean(labels, probabilities)
    schema = {"bin": pl.Int64, "lower": pl.Float64, "upper": pl.Float64, "count": pl.Int64,
              "mean_predicted": pl.Float64, "observed": pl.Float64}  # fmt: skip
    if y.size == 0:
        return pl.DataFrame(schema=schema)
    index = np.clip((p * n_bins).astype(np.int64), 0, n_bins - 1)
    frame = pl.DataFrame({"bin": index, "p": p, "y": y.astype(np.float64)})
    return (
        frame.group_by("bin")
        .agg(count=pl.len().cast(pl.Int64), mean_predicted=pl.col("p").mean(), observed=pl.col("y").mean())
        .with_columns(lower=pl.col("bin") / n_bins, upper=(pl.col("bin") + 1) / n_bins)
        .select(list(schema))
        .cast(schema)  # type: ignore[arg-type]
        .sort("bin")
    )


def expected_calibration_error(
    labels: np.ndarray | list[int], probabilities: np.ndarray | list[float], n_bins: int = 10
) -> float:
    """Count-weighted mean gap between predicted and observed share over the bins; NaN without probabilities."""
    bins = calibration_bins(labels, probabilities, n_bins)
    if bins.is_empty():
        return float("nan")
    gap = (bins["mean_predicted"] - bins["observed"]).abs()
    return float((gap * bins["count"]).sum() / bins["count"].sum())


def brier_score(labels: np.ndarray | list[int], probabilities: np.ndarray | list[float]) -> float:
    """Mean squared error of the probabilities; NaN without probabilities."""
    y, p = _clean(labels, probabilities)
    return float(np.mean((p - y) ** 2)) if y.size else float("nan")


# --------------------------------------------------------------------------------------------
# Frames: one row per (post, detector, text variant)

#: Columns of a scored frame, the long format every function below reads.
SCORED_COLUMNS: tuple[str, ...] = (
    "post_id", "dataset", "generator", "label", "variant", "detector", "score", "probability", "flagged",
)  # fmt: skip


def summarise(
    labels: np.ndarray,
    scores: np.ndarray,
    probabilities: np.ndarray,
    flagged: np.ndarray,
    fpr_targets: tuple[float, ...] = DEFAULT_FPR_TARGETS,
) -> dict[str, float | int | bool]:
    """Every headline number of one detector on one slice, as a flat mapping (a row of the table)."""
    y = np.asarray(labels).astype(np.int64)
    s = np.asarray(scores, dtype=np.float64)
    scored = ~np.isnan(s)
    at_default = confusion(y, flagged)
    row: dict[str, float | int | bool] = {
        "posts": int(y.size),
        "machine": int(y.sum()),
        "human": int(y.size - y.sum()),
        "not_scored": int((~scored).sum()),
        "auroc": auroc(y, s),
        "average_precision": average_precision(y, s),
    }
    for target in fpr_targets:
        point = tpr_at_fpr(y, s, target)
        row[f"tpr_at_{_pct(target)}_fpr"] = point.tpr
        row[f"tpr_at_{_pct(target)}_fpr_resolvable"] = point.resolvable
    row |= {
        "accuracy_at_default": at_default.accuracy,
        "tpr_at_default": at_default.tpr,
        "fpr_at_default": at_default.fpr,
        "precision_at_default": at_default.precision,
        "brier": brier_score(y, probabilities),
        "ece": expected_calibration_error(y, probabilities),
    }
    return row


def _pct(rate: float) -> str:
    """0.01 -> '1pct', 0.001 -> '0.1pct': column names that say the rate."""
    return f"{rate * 100:g}pct"


def evaluation_slices(frame: pl.DataFrame) -> Iterator[tuple[str, str, pl.DataFrame]]:
    """``(kind, name, rows)`` for ``all``, each ``dataset`` and each ``generator`` (see module docstring)."""
    yield "all", "all", frame
    for (dataset,) in frame.select("dataset").unique().sort("dataset").iter_rows():
        yield "dataset", str(dataset), frame.filter(pl.col("dataset") == dataset)
    machines = frame.filter(pl.col("label") == 1)
    for (generator,) in machines.select("generator").unique().sort("generator").iter_rows():
        datasets = machines.filter(pl.col("generator") == generator).get_column("dataset").unique()
        rows = frame.filter(
            (pl.col("label") == 1) & (pl.col("generator") == generator)
            | (pl.col("label") == 0) & pl.col("dataset").is_in(datasets.implode())
        )
        yield "generator", str(generator), rows


def metrics_table(scored: pl.DataFrame, fpr_targets: tuple[float, ...] = DEFAULT_FPR_TARGETS) -> pl.DataFrame:
    """One row per (detector, variant, slice) with :func:`summarise`'s numbers.

    ``scored`` has :data:`SCORED_COLUMNS` (one row per post, detector and text variant).
    """
    missing = [c for c in SCORED_COLUMNS if c not in scored.columns]
    if missing:
        raise ValueError(f"scored frame lacks columns {missing}")
    rows: list[dict[str, object]] = []
    groups = scored.partition_by("detector", "variant", as_dict=True, maintain_order=True)
    for (detector, variant), part in sorted(groups.items(), key=lambda kv: _variant_order(*kv[0])):
        for kind, name, rows_ in evaluation_slices(part):
            numbers = summarise(
                rows_["label"].to_numpy(),
                rows_["score"].cast(pl.Float64).fill_null(float("nan")).to_numpy(),
                rows_["probability"].cast(pl.Float64).fill_null(float("nan")).to_numpy(),
                rows_["flagged"].fill_null(False).to_numpy(),
                fpr_targets,
            )
            rows.append({"detector": detector, "variant": variant, "slice_kind": kind, "slice": name, **numbers})
    return pl.DataFrame(rows) if rows else pl.DataFrame()


def _variant_order(detector: object, variant: object) -> tuple[str, int]:
    """Detectors by name, raw text before normalised."""
    return str(detector), TEXT_VARIANTS.index(str(variant)) if variant in TEXT_VARIANTS else len(TEXT_VARIANTS)


def normalisation_effect(metrics: pl.DataFrame, metric: str = "auroc") -> pl.DataFrame:
    """``metric`` on raw and normalised text side by side per detector and slice, with the change."""
    wide = metrics.pivot(on="variant", index=["detector", "slice_kind", "slice"], values=metric)
    for variant in TEXT_VARIANTS:
        if variant not in wide.columns:
            wide = wide.with_columns(pl.lit(None, dtype=pl.Float64).alias(variant))
    return wide.with_columns(change=pl.col("normalised") - pl.col("raw")).select(
        "detector", "slice_kind", "slice", "raw", "normalised", "change"
    )


def named_threshold_rates(labels: np.ndarray, scores: np.ndarray, thresholds: Mapping[str, float]) -> pl.DataFrame:
    """FPR, TPR and precision of each of a detector's named thresholds on these labels.

    A threshold named ``fpr_1pct`` was chosen on someone's calibration data; this says what it does here.
    """
    s = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
    rows = []
    for name, value in sorted(thresholds.items(), key=lambda kv: kv[1]):
        c = confusion(labels, s >= value)
        rows.append({"threshold_name": name, "threshold": float(value), "flagged": c.tp + c.fp,
                     "tpr": c.tpr, "fpr": c.fpr, "precision": c.precision, "accuracy": c.accuracy})  # fmt: skip
    return pl.DataFrame(rows)


def worst_errors(scored: pl.DataFrame, n: int = 5) -> pl.DataFrame:
    """The ``n`` most confident mistakes at the default threshold, per detector and variant.

    False positives (humans flagged) highest score first, false negatives (machines not flagged)
    lowest first: reading them is how one finds what a detector really keys on (a link, a language,
    a template). Ties break by post id so the same data always shows the same posts.
    """
    flagged = pl.col("flagged").fill_null(False)
    false_pos = (
        scored.filter((pl.col("label") == 0) & flagged)
        .sort(["score", "post_id"], descending=[True, False], nulls_last=True)
        .group_by("detector", "variant", maintain_order=True)
        .head(n)
        .with_columns(error=pl.lit("human flagged"))
    )
    false_neg = (
        scored.filter((pl.col("label") == 1) & ~flagged)
        .sort(["score", "post_id"], nulls_last=True)
        .group_by("detector", "variant", maintain_order=True)
        .head(n)
        .with_columns(error=pl.lit("machine missed"))
    )
    return pl.concat([false_pos, false_neg], how="diagonal_relaxed").sort(
        "detector", "variant", "error", maintain_order=True
    )


# --------------------------------------------------------------------------------------------
# Accounts

#: The account rule the report measures: the example policy's rate limit (``policies/example.toml``,
#: ``aitext-account-rate-limit``) acts on an account whose machine share has a lower bound of at
#: least this, over at least :data:`ACCOUNT_MIN_POSTS` scored posts.
ACCOUNT_LOWER_AT_LEAST = 0.6
ACCOUNT_MIN_POSTS = 10


def account_results(
    scored: pl.DataFrame,
    accounts: pl.DataFrame,
    *,
    lower_at_least: float = ACCOUNT_LOWER_AT_LEAST,
    min_posts: int = ACCOUNT_MIN_POSTS,
    confidence: float = 0.95,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Each account's machine-share estimate per detector and variant, and how well it separates accounts.

    Why: analysts and account policies act on accounts, not on single posts, and a per-post AUROC
    does not say how often a person's whole account would be acted on. The estimate is the stream's
    (:func:`detectors.aitext.aggregate.account_machine_share`: mean calibrated probability, Wilson
    interval on the fractional count), over *all* of an account's scored posts here, where the
    stream uses its most recent ones. ``accounts`` maps ``post_id`` to ``group`` (the account);
    posts without a group and detectors without probabilities are left out.

    Returns ``(per_account, summary)``. ``per_account``: ``detector, variant, account, label``
    (``human``, ``machine``, or ``mixed`` when an account's posts carry both labels), ``posts,
    n_posts`` (scored), ``machine_share, lower, upper, flagged_share`` (posts flagged at the default
    threshold) and ``acted`` (the rule above). ``summary``: per detector and variant, the counts of
    accounts by label, ``account_auroc`` (machine share, human vs machine accounts; NaN unless both
    are present) and how many human and machine accounts the rule acts on.
    """
    from detectors.aitext.aggregate import account_machine_share

    joined = scored.join(accounts.select("post_id", "group"), on="post_id", how="inner").filter(
        pl.col("group").is_not_null()
    )
    per_account: list[pl.DataFrame] = []
    for (detector, variant), part in sorted(
        joined.partition_by("detector", "variant", as_dict=True, maintain_order=True).items(),
        key=lambda kv: _variant_order(*kv[0]),
    ):
        if part.get_column("probability").is_null().all():
            continue  # scores that are ranks, not probabilities, have no share to estimate
        described = part.group_by("group", maintain_order=True).agg(
            posts=pl.len(),
            label=pl.when(pl.col("label").n_unique() > 1)
            .then(pl.lit("mixed"))
            .otherwise(pl.when(pl.col("label").first() == 1).then(pl.lit("machine")).otherwise(pl.lit("human"))),
            flagged_share=pl.col("flagged").fill_null(False).mean(),
        )
        shares = account_machine_share(
            part.select(account_id=pl.col("group"), created_at=pl.int_range(pl.len())),
            part.get_column("probability").cast(pl.Float64).fill_null(float("nan")).to_numpy(),
            window=part.height,
            confidence=confidence,
        )
        rows = described.join(shares.rename({"account_id": "group"}), on="group", how="left").with_columns(
            n_posts=pl.col("n_posts").fill_null(0)
        )
        per_account.append(
            rows.select(
                detector=pl.lit(str(detector)),
                variant=pl.lit(str(variant)),
                account=pl.col("group"),
                label="label",
                posts="posts",
                n_posts="n_posts",
                machine_share="machine_share",
                lower="lower",
                upper="upper",
                flagged_share="flagged_share",
                acted=(pl.col("lower") >= lower_at_least).fill_null(False) & (pl.col("n_posts") >= min_posts),
            ).sort("machine_share", "account", descending=[True, False], nulls_last=True)
        )
    if not per_account:
        return pl.DataFrame(), pl.DataFrame()
    table = pl.concat(per_account)
    summary_rows = []
    for (detector, variant), rows in table.group_by("detector", "variant", maintain_order=True):
        pure = rows.filter(pl.col("label") != "mixed", pl.col("machine_share").is_not_null())
        summary_rows.append(
            {
                "detector": detector,
                "variant": variant,
                "human_accounts": int((rows["label"] == "human").sum()),
                "machine_accounts": int((rows["label"] == "machine").sum()),
                "mixed_accounts": int((rows["label"] == "mixed").sum()),
                "account_auroc": auroc(
                    (pure["label"] == "machine").cast(pl.Int8).to_numpy(), pure["machine_share"].to_numpy()
                ),
                "humans_acted": int(rows.filter(pl.col("label") == "human")["acted"].sum()),
                "machines_acted": int(rows.filter(pl.col("label") == "machine")["acted"].sum()),
            }
        )
    return table, pl.DataFrame(summary_rows)
