"""``chorus eval``: how good are the registered detectors on a labelled file, as a report you can send.

Reads labelled posts (JSON lines, CSV or Parquet, gzip or not) with at least an id (``id`` or
``post_id``), ``text`` and ``label`` (0 human, 1 machine; ``human``/``machine`` also read), and
optionally ``dataset``, ``source_model`` or ``generator``, ``group``, ``split`` and ``language``.
It builds the same posts frame the worker builds from Kafka (``stream.kafka.messages.POSTS_FRAME_SCHEMA``),
scores it with each detector's ``detect`` in micro-batches, once on the text as written and once with
links and @mentions replaced by placeholders, and writes into ``--out``:

* ``summary.md``: the headline table alone (what the README shows, between its ``eval`` markers);
* ``report.md``: inputs, per-dataset and per-generator AUROC, average precision, TPR at 1% and 0.1%
  FPR, accuracy at the default threshold, what normalisation changed, what each named threshold does
  on this data, calibration, the surface features of the data and the worst errors to read; and,
  when the posts carry a ``group`` (the account), the accounts: each one's machine-share estimate
  and how well it separates people's accounts from bots' (:func:`detectors.evaluation.account_results`);
* ``roc_<detector>.png``, ``pr_<detector>.png``, ``calibration_<detector>.png`` (the last only for
  detectors with calibrated probabilities), linked from the report;
* ``metrics.csv`` (every number of the report's tables), ``scores.parquet`` (one row per post,
  detector and variant, no text), ``accounts.csv`` (the per-account table) and ``rejected.csv`` when
  some input rows could not be used.

The maths is in :mod:`detectors.evaluation`; this module reads, scores, draws and writes. The
notebooks call the same functions (``read_labelled``, ``score_labelled``, ``evaluate``, the
``*_figure`` functions), so a notebook and a report never disagree.

Which detectors: every name in ``stream.pipeline.detectors.DETECTOR_FACTORIES`` except those in
:data:`NOT_EVALUATED`, unless ``--detectors`` names some. A trained detector registered there later
(``aitext``) is picked up with no change here.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from detectors.base import Detector
from detectors.evaluation import (
    ACCOUNT_LOWER_AT_LEAST,
    ACCOUNT_MIN_POSTS,
    DEFAULT_FPR_TARGETS,
    MENTION_PATTERN,
    TEXT_VARIANTS,
    URL_PATTERN,
    account_results,
    auroc,
    average_precision,
    calibration_bins,
    evaluation_slices,
    metrics_table,
    named_threshold_rates,
    normalisation_effect,
    normalise_links_and_mentions,
    precision_recall_curve,
    roc_curve,
    surface_feature_rates,
    worst_errors,
)
from stream.kafka.messages import POSTS_FRAME_SCHEMA, SCHEMA_VERSION

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from stream.config import ChorusConfig
    from stream.store.database import Store

log = logging.getLogger("chorus.eval")

#: Registered detectors that ``chorus eval`` leaves out unless named: ``noop`` scores every post 0
#: (it measures pipeline overhead), so its AUROC of 0.5 would only clutter the report.
NOT_EVALUATED: frozenset[str] = frozenset({"noop"})

#: Micro-batch size for scoring; the worker's default ``batch_max_posts``, so a detector sees the
#: batch sizes it sees in the stream.
DEFAULT_BATCH_SIZE = 500

#: Labelled corpora carry no posting time and text detectors do not read it; every post gets this one.
EVAL_CREATED_AT = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)

#: The dataset name of posts taken from a demo store (the simulator's ground truth as labels).
DEMO_DATASET = "chorus-demo"

_LABEL_WORDS = {"0": 0, "1": 1, "human": 0, "machine": 1, "false": 0, "true": 1}
_ID_COLUMNS = ("post_id", "id")
_GENERATOR_COLUMNS = ("generator", "source_model")


# --------------------------------------------------------------------------------------------
# Reading labelled posts


@dataclass(frozen=True)
class LabelledPosts:
    """Usable rows and the rows that could not be used, each with its reason (never dropped silently).

    ``posts`` has ``post_id, text, label (Int8), dataset, generator, group, split, lang``.
    """

    posts: pl.DataFrame
    rejected: pl.DataFrame = field(default_factory=pl.DataFrame)

    def counts(self) -> pl.DataFrame:
        """Posts per dataset and class, for the report's inputs table."""
        return (
            self.posts.group_by("dataset")
            .agg(human=(pl.col("label") == 0).sum(), machine=(pl.col("label") == 1).sum(), posts=pl.len())
            .sort("dataset")
        )


def _column_or(frame: pl.DataFrame, names: Iterable[str], default: pl.Expr) -> pl.Expr:
    for name in names:
        if name in frame.columns:
            return pl.col(name).cast(pl.String)
    return default


def prepare_labelled(frame: pl.DataFrame, *, default_dataset: str) -> LabelledPosts:
    """Columns of any supported layout -> :class:`LabelledPosts`; bad rows go to ``rejected`` with a reason."""
    id_column = next((c for c in _ID_COLUMNS if c in frame.columns), None)
    missing = [name for name, ok in (("id or post_id", id_column), ("text", "text" in frame.columns),
                                     ("label", "label" in frame.columns)) if not ok]  # fmt: skip
    if missing:
        raise ValueError(f"labelled posts lack column(s) {', '.join(missing)}; found {frame.columns}")
    label_text = pl.col("label").cast(pl.String).str.strip_chars().str.to_lowercase()
    label_text = label_text.str.replace(r"^(\d)\.0+$", "$1")  # 1.0 from a CSV or a float column
    unified = frame.select(
        pl.col(id_column).cast(pl.String).alias("post_id"),
        pl.col("text").cast(pl.String),
        label_text.replace_strict(_LABEL_WORDS, default=None, return_dtype=pl.Int8).alias("label"),
        pl.col("label").cast(pl.String).alias("label_as_given"),
        _column_or(frame, ["dataset"], pl.lit(default_dataset)).fill_null(default_dataset).alias("dataset"),
        _column_or(frame, _GENERATOR_COLUMNS, pl.lit(None, dtype=pl.String)).alias("generator"),
        _column_or(frame, ["group"], pl.lit(None, dtype=pl.String)).alias("group"),
        _column_or(frame, ["split"], pl.lit(None, dtype=pl.String)).alias("split"),
        _column_or(frame, ["lang", "language"], pl.lit(None, dtype=pl.String)).alias("lang"),
    )
    # Humans have no generator; a machine post with none is "unknown", never silently a human.
    unified = unified.with_columns(
        generator=pl.when(pl.col("label") == 0)
        .then(pl.lit("human"))
        .otherwise(pl.col("generator").fill_null("unknown"))
    )
    reason = (
        pl.when(pl.col("post_id").is_null() | (pl.col("post_id").str.strip_chars() == ""))
        .then(pl.lit("missing id"))
        .when(pl.col("text").is_null() | (pl.col("text").str.strip_chars() == ""))
        .then(pl.lit("empty text"))
        .when(pl.col("label").is_null())
        .then(pl.lit("label is not 0/1 (human/machine)"))
        .when(pl.col("post_id").is_first_distinct().not_())
        .then(pl.lit("duplicate id (first kept)"))
        .otherwise(None)
    )
    marked = unified.with_columns(reason=reason)
    good = marked.filter(pl.col("reason").is_null()).drop("reason", "label_as_given")
    rejected = marked.filter(pl.col("reason").is_not_null()).select(
        "post_id", "dataset", "label_as_given", "reason", pl.col("text").str.slice(0, 200)
    )
    return LabelledPosts(posts=good, rejected=rejected)


def read_labelled(
    paths: Sequence[Path],
    *,
    split: str | None = None,
    groups: Sequence[str] | None = None,
    sample_per_dataset: int | None = None,
    seed: int = 0,
) -> LabelledPosts:
    """Read and combine labelled files; keep one ``split``, some ``groups`` (e.g. held-out accounts)
    and a seeded sample per dataset if asked."""
    from stream.files.posts import read_posts  # the same reader as `chorus coord`: csv/parquet/jsonl, gzip

    parts, rejected = [], []
    for path in paths:
        if not path.exists():
            raise ValueError(f"{path}: no such file")
        default = path.name.split(".")[0]
        one = prepare_labelled(read_posts(path), default_dataset=default)
        parts.append(one.posts)
        rejected.append(one.rejected.with_columns(file=pl.lit(str(path))))
    posts = pl.concat(parts, how="vertical_relaxed")
    bad = pl.concat(rejected, how="vertical_relaxed")
    duplicate = posts.get_column("post_id").is_duplicated()
    if duplicate.any():
        raise ValueError(
            f"{int(duplicate.sum())} ids occur in more than one input file (e.g. "
            f"{posts.filter(duplicate)['post_id'][0]!r}); give each file's ids a dataset prefix"
        )
    if split is not None:
        posts = posts.filter(pl.col("split") == split)
    if groups:
        posts = posts.filter(pl.col("group").is_in(list(groups)))
    if sample_per_dataset is not None:
        posts = sample_labelled(posts, sample_per_dataset, seed=seed)
    if posts.is_empty():
        where = [f"split {split!r}"] * bool(split) + [f"groups {', '.join(groups or [])}"] * bool(groups)
        raise ValueError("no usable labelled posts" + (f" in {' and '.join(where)}" if where else ""))
    return LabelledPosts(posts=posts, rejected=bad)


def sample_labelled(posts: pl.DataFrame, per_dataset: int, *, seed: int = 0) -> pl.DataFrame:
    """At most ``per_dataset`` posts per dataset, half human and half machine where there are enough.

    Balanced rather than proportional so that a small sample still has humans to measure false
    positives on. Seeded: the same call picks the same posts.
    """
    per_class = max(1, per_dataset // 2)
    shuffled = posts.with_columns(_r=pl.int_range(pl.len()).shuffle(seed=seed))
    return (
        shuffled.sort("_r")
        .group_by("dataset", "label", maintain_order=True)
        .head(per_class)
        .drop("_r")
        .sort("dataset", "post_id")
    )


def labelled_from_store(store: Store, *, limit: int | None = None) -> pl.DataFrame:
    """Posts of a demo store as labelled posts: the simulator's ``meta.sim`` truth is the label.

    Machine posts get the generator ``sim-leaked-boilerplate`` or ``sim-model-output``, so the
    report shows that the boilerplate detector finds the first and is blind to the second. Posts
    without simulator truth (a real store) are left out: there is nothing to compare with.
    """
    posts = store.frame("posts", limit=limit).select("post_id", "account_id", "text", "lang", "meta")
    sim = pl.col("meta").str.json_path_match
    labelled = posts.with_columns(
        machine=sim("$.sim.machine"),
        leaked=sim("$.sim.leaked_boilerplate"),
    ).filter(pl.col("machine").is_not_null())
    return labelled.select(
        "post_id",
        "text",
        (pl.col("machine") == "true").cast(pl.Int8).alias("label"),
        pl.lit(DEMO_DATASET).alias("dataset"),
        pl.when(pl.col("machine") != "true")
        .then(pl.lit("human"))
        .when(pl.col("leaked") == "true")
        .then(pl.lit("sim-leaked-boilerplate"))
        .otherwise(pl.lit("sim-model-output"))
        .alias("generator"),
        pl.col("account_id").alias("group"),  # the leakage key: the account, as in the development data
        pl.lit(None, dtype=pl.String).alias("split"),
        "lang",
    )


# --------------------------------------------------------------------------------------------
# Scoring through the detector protocol


def posts_frame(labelled: pl.DataFrame, variant: str = "raw") -> pl.DataFrame:
    """Labelled posts as the worker's validated posts frame (``POSTS_FRAME_SCHEMA``).

    ``raw``: the text as written, with links, mentions and hashtags pulled out of it as a producer
    would send them. ``normalised``: links and mentions replaced by placeholders in the text and
    absent from the lists, so that no detector can read them from either place.
    """
    if variant not in TEXT_VARIANTS:
        raise ValueError(f"unknown text variant {variant!r}; known: {', '.join(TEXT_VARIANTS)}")
    text = normalise_links_and_mentions("text") if variant == "normalised" else pl.col("text")
    empty = pl.lit([], dtype=pl.List(pl.String))
    raw = variant == "raw"
    frame = labelled.select(
        pl.col("post_id"),
        (pl.col("group").fill_null(pl.col("dataset")) if "group" in labelled.columns else pl.col("dataset")).alias(
            "account_id"
        ),
        pl.lit(EVAL_CREATED_AT).alias("created_at"),
        text.alias("text"),
        (pl.col("lang") if "lang" in labelled.columns else pl.lit(None, dtype=pl.String)).alias("lang"),
        pl.lit(None, dtype=pl.String).alias("reply_to"),
        pl.lit(None, dtype=pl.String).alias("repost_of"),
        pl.lit(None, dtype=pl.String).alias("quote_of"),
        (pl.col("text").str.extract_all(URL_PATTERN) if raw else empty).alias("urls"),
        pl.col("text").str.extract_all(r"#\w+").list.eval(pl.element().str.slice(1)).alias("hashtags"),
        (
            pl.col("text").str.extract_all(MENTION_PATTERN).list.eval(pl.element().str.extract(r"@(\w+)"))
            if raw
            else empty
        ).alias("mentions"),
        pl.lit(SCHEMA_VERSION).alias("schema_version"),
        pl.format("eval:{}", pl.col("dataset")).alias("source_topic"),
        pl.lit(None).alias("source_partition"),
        pl.lit(None).alias("source_offset"),
    )
    return frame.cast(POSTS_FRAME_SCHEMA)  # type: ignore[arg-type]


def evaluable_detectors() -> list[str]:
    """Registered detector names that ``chorus eval`` scores by default (all but :data:`NOT_EVALUATED`)."""
    from stream.pipeline.detectors import DETECTOR_FACTORIES

    return [name for name in DETECTOR_FACTORIES if name not in NOT_EVALUATED]


def build_eval_detectors(
    names: Sequence[str] | None, config: ChorusConfig | None = None
) -> tuple[list[Detector], dict[str, str]]:
    """The detectors to evaluate and, for defaults that could not be built, why (named ones must build).

    A default detector whose model or artifact is missing on this machine is reported and skipped,
    so one missing download never hides every other detector's report; a detector asked for by name
    that cannot be built is an error.
    """
    from stream.config import ChorusConfig
    from stream.pipeline.detectors import DETECTOR_FACTORIES, build_detectors

    config = config or ChorusConfig.load(None)
    if names:
        return build_detectors(list(names), config), {}
    built, skipped = [], {}
    for name in evaluable_detectors():
        try:
            built.append(DETECTOR_FACTORIES[name](config))
        except Exception as exc:  # a model that will not load must not sink the other detectors
            skipped[name] = f"{type(exc).__name__}: {exc}"
    return built, skipped


def _detect_in_batches(detector: Detector, posts: pl.DataFrame, batch_size: int) -> dict[str, np.ndarray]:
    scores, probabilities, flagged = [], [], []
    for start in range(0, posts.height, batch_size):
        batch = posts.slice(start, batch_size)
        found = detector.detect(batch, threshold="default")
        if found.post_ids != batch.get_column("post_id").to_list():
            raise RuntimeError(f"detector {detector.name!r} returned rows out of order")
        scores.append(np.asarray(found.score, dtype=np.float64))
        probabilities.append(np.asarray(found.probability, dtype=np.float64))
        flagged.append(np.asarray(found.flagged, dtype=bool))
    if not scores:
        return {"score": np.zeros(0), "probability": np.zeros(0), "flagged": np.zeros(0, dtype=bool)}
    return {
        "score": np.concatenate(scores),
        "probability": np.concatenate(probabilities),
        "flagged": np.concatenate(flagged),
    }


def score_labelled(
    labelled: pl.DataFrame,
    detectors: Sequence[Detector],
    *,
    variants: Sequence[str] = TEXT_VARIANTS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[str], None] | None = None,
    skipped: dict[str, str] | None = None,
) -> pl.DataFrame:
    """Score every post with every detector on every text variant; long format (``SCORED_COLUMNS`` + more).

    On the normalised variant only posts whose text changed are scored again; the others reuse the
    raw result (the same text gives the same score), which halves the cost of a model-backed detector.

    A model-backed detector may build and only fail when it first loads its model (weights not
    installed). Pass ``skipped`` to record such a detector there and go on with the others, as
    ``chorus eval`` does for detectors it was not asked for by name; without it the error propagates.
    """
    say = progress or log.info
    results: list[pl.DataFrame] = []
    for detector in detectors:
        try:
            results += _score_one(labelled, detector, variants, batch_size, say)
        except Exception as exc:  # recorded and reported, never silent; see the docstring
            if skipped is None:
                raise
            skipped[detector.name] = f"failed while scoring: {type(exc).__name__}: {exc}"
            say(f"{detector.name}: skipped, {skipped[detector.name]}")
    if not results:
        raise ValueError("no detector scored the posts" + (f": {skipped}" if skipped else ""))
    return pl.concat(results)


def _score_one(
    labelled: pl.DataFrame,
    detector: Detector,
    variants: Sequence[str],
    batch_size: int,
    say: Callable[[str], None],
) -> list[pl.DataFrame]:
    base = labelled.select("post_id", "dataset", "generator", "label", "text")
    raw_text = labelled.get_column("text")
    raw_result: dict[str, np.ndarray] | None = None
    frames = []
    for variant in variants:
        posts = posts_frame(labelled, variant)
        started = time.perf_counter()
        if variant != "raw" and raw_result is not None:
            changed = (posts.get_column("text") != raw_text).fill_null(True).to_numpy()
            result = {k: v.copy() for k, v in raw_result.items()}
            if changed.any():
                fresh = _detect_in_batches(detector, posts.filter(pl.Series(changed)), batch_size)
                for key in result:
                    result[key][changed] = fresh[key]
            n_scored = int(changed.sum())
        else:
            result = _detect_in_batches(detector, posts, batch_size)
            n_scored = posts.height
        seconds = time.perf_counter() - started
        if variant == "raw":
            raw_result = result
        say(f"{detector.name} [{variant}]: {n_scored} posts scored in {seconds:.1f}s")
        frames.append(
            base.with_columns(
                variant=pl.lit(variant),
                detector=pl.lit(detector.name),
                model_version=pl.lit(str(detector.model_version)),
                score=pl.Series(result["score"]),
                probability=pl.Series(result["probability"]).fill_nan(None),
                flagged=pl.Series(result["flagged"]),
            )
        )
    return frames


# --------------------------------------------------------------------------------------------
# Evaluating


@dataclass(frozen=True)
class DetectorInfo:
    """What the report says about a detector besides its scores."""

    name: str
    model_version: str
    thresholds: dict[str, float]

    @classmethod
    def of(cls, detector: Detector) -> DetectorInfo:
        return cls(detector.name, str(detector.model_version), dict(detector.thresholds))


@dataclass(frozen=True)
class Evaluation:
    """Every table of a report, as frames (the notebook shows them; :func:`write_report` writes them)."""

    scored: pl.DataFrame
    metrics: pl.DataFrame
    normalisation: pl.DataFrame
    thresholds: pl.DataFrame
    calibration: pl.DataFrame
    surface: pl.DataFrame
    errors: pl.DataFrame
    detectors: list[DetectorInfo]
    skipped: dict[str, str] = field(default_factory=dict)
    accounts: pl.DataFrame = field(default_factory=pl.DataFrame)  # per account; empty without groups
    account_summary: pl.DataFrame = field(default_factory=pl.DataFrame)

    def headline(self) -> pl.DataFrame:
        """The README's table: every detector and variant on all posts and on each dataset."""
        keep = ["detector", "variant", "slice", "posts", "auroc", "average_precision"]
        keep += [c for c in self.metrics.columns if c.startswith("tpr_at_") and c.endswith("_fpr")]
        keep += ["accuracy_at_default", "tpr_at_default", "fpr_at_default", "not_scored"]
        return self.metrics.filter(pl.col("slice_kind") != "generator").select(keep)


def evaluate(
    scored: pl.DataFrame,
    detectors: Sequence[Detector | DetectorInfo],
    *,
    labelled: pl.DataFrame | None = None,
    skipped: dict[str, str] | None = None,
    fpr_targets: tuple[float, ...] = DEFAULT_FPR_TARGETS,
    errors_per_detector: int = 5,
) -> Evaluation:
    """All tables from a scored frame: metrics per slice, normalisation effect, thresholds, calibration, errors."""
    scored_names = set(scored.get_column("detector"))
    infos = [d if isinstance(d, DetectorInfo) else DetectorInfo.of(d) for d in detectors]
    infos = [info for info in infos if info.name in scored_names]  # one that failed while scoring has no rows
    metrics = metrics_table(scored, fpr_targets)
    threshold_rows, calibration_rows = [], []
    for info in infos:
        for (variant,), part in scored.filter(pl.col("detector") == info.name).group_by("variant"):
            labels = part["label"].to_numpy()
            scores = part["score"].to_numpy()
            threshold_rows.append(
                named_threshold_rates(labels, scores, info.thresholds).with_columns(
                    detector=pl.lit(info.name), variant=pl.lit(variant)
                )
            )
            for (dataset,), rows in part.group_by("dataset"):
                bins = calibration_bins(rows["label"].to_numpy(), rows["probability"].fill_null(np.nan).to_numpy())
                calibration_rows.append(
                    bins.with_columns(detector=pl.lit(info.name), variant=pl.lit(variant), dataset=pl.lit(dataset))
                )
    posts = labelled if labelled is not None else scored.filter(pl.col("variant") == "raw").unique("post_id")
    accounts, account_summary = pl.DataFrame(), pl.DataFrame()
    if "group" in posts.columns and posts.get_column("group").is_not_null().any():
        accounts, account_summary = account_results(scored, posts.select("post_id", "group"))
    thresholds = pl.concat(threshold_rows) if threshold_rows else pl.DataFrame()
    if thresholds.height:  # raw before normalised, thresholds ascending
        thresholds = thresholds.sort("detector", "variant", "threshold", descending=[False, True, False])
    return Evaluation(
        scored=scored,
        metrics=metrics,
        normalisation=normalisation_effect(metrics) if metrics.height else pl.DataFrame(),
        thresholds=thresholds,
        calibration=pl.concat(calibration_rows) if calibration_rows else pl.DataFrame(),
        surface=surface_feature_rates(posts),
        errors=worst_errors(scored, errors_per_detector),
        detectors=infos,
        skipped=dict(skipped or {}),
        accounts=accounts,
        account_summary=account_summary,
    )


# --------------------------------------------------------------------------------------------
# Figures (matplotlib's object API: no pyplot state, so they work headless and in notebooks alike)


def _new_figure(rows: int, cols: int, width: float, height: float) -> tuple[Figure, Any]:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - matplotlib is in the dev extras
        raise RuntimeError("plots need matplotlib: pip install matplotlib (it is in the dev extras)") from exc
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False)


def _curve_groups(part: pl.DataFrame, by: str) -> Iterable[tuple[str, pl.DataFrame]]:
    """Rows per dataset, or per generator (each generator's machines vs its datasets' humans)."""
    for kind, name, rows in evaluation_slices(part):
        if kind == by:
            yield name, rows


def roc_figure(scored: pl.DataFrame, detector: str) -> Figure:
    """ROC curves (log FPR axis: the low-FPR end is where a platform operates), per dataset and per generator."""
    return _curves_figure(scored, detector, "roc")


def pr_figure(scored: pl.DataFrame, detector: str) -> Figure:
    """Precision-recall curves per dataset and per generator, raw and normalised text."""
    return _curves_figure(scored, detector, "pr")


def _curves_figure(scored: pl.DataFrame, detector: str, kind: str) -> Figure:
    own = scored.filter(pl.col("detector") == detector)
    variants = [v for v in TEXT_VARIANTS if v in set(own["variant"])]
    fig, axes = _new_figure(len(variants), 2, 11, 4.2 * len(variants))
    for r, variant in enumerate(variants):
        part = own.filter(pl.col("variant") == variant)
        for c, by in enumerate(("dataset", "generator")):
            ax = axes[r][c]
            for name, rows in _curve_groups(part, by):
                labels, scores = rows["label"].to_numpy(), rows["score"].to_numpy()
                if kind == "roc":
                    fpr, tpr, _ = roc_curve(labels, scores)
                    if fpr.size:
                        floor = 0.5 / max(1, int((labels == 0).sum()))  # FPR 0 drawn at half a false positive
                        label = f"{name} ({auroc(labels, scores):.2f})"
                        ax.step(np.maximum(fpr, floor), tpr, where="post", label=label)
                else:
                    precision, recall, _ = precision_recall_curve(labels, scores)
                    if recall.size:
                        label = f"{name} ({average_precision(labels, scores):.2f})"
                        ax.step(np.r_[0.0, recall], np.r_[precision[0], precision], where="pre", label=label)
            if kind == "roc":
                chance = np.logspace(-4, 0, 50)
                ax.plot(chance, chance, color="grey", linewidth=0.8, linestyle="--", label="chance")
                ax.set_xscale("log")
                ax.set_xlim(1e-4, 1.0)
                for target in DEFAULT_FPR_TARGETS:
                    ax.axvline(target, color="grey", linewidth=0.6, linestyle=":")
                ax.set_xlabel("false-positive rate (log)")
                ax.set_ylabel("true-positive rate")
            else:
                ax.set_xlabel("recall")
                ax.set_ylabel("precision")
            ax.set_ylim(-0.02, 1.02)
            what = "AUROC" if kind == "roc" else "average precision"
            ax.set_title(f"{detector}, {variant} text, by {by} ({what})", fontsize=10)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7, loc="lower right" if kind == "roc" else "lower left")
    return fig


def has_probabilities(scored: pl.DataFrame, detector: str) -> bool:
    """Whether a detector gave calibrated probabilities (NaN/null everywhere means it has none)."""
    own = scored.filter(pl.col("detector") == detector)
    return bool(own["probability"].drop_nulls().drop_nans().len())


def calibration_figure(evaluation: Evaluation, detector: str) -> Figure:
    """Reliability diagram per dataset, raw and normalised: predicted probability vs observed machine share."""
    bins = evaluation.calibration.filter(pl.col("detector") == detector)
    variants = [v for v in TEXT_VARIANTS if bins.height and v in set(bins["variant"])] or ["raw"]
    fig, axes = _new_figure(1, len(variants), 5.5 * len(variants), 4.5)
    for c, variant in enumerate(variants):
        ax = axes[0][c]
        ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle="--", label="perfect")
        part = bins.filter(pl.col("variant") == variant) if bins.height else bins
        for (dataset,), rows in part.sort("dataset", "bin").group_by("dataset", maintain_order=True):
            ax.plot(rows["mean_predicted"], rows["observed"], marker="o", markersize=3, label=str(dataset))
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("predicted probability (machine)")
        ax.set_ylabel("observed share of machine posts")
        ax.set_title(f"{detector}, {variant} text", fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
    return fig


# --------------------------------------------------------------------------------------------
# The report


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "-" if np.isnan(value) else f"{value:.3f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pl.DataFrame, columns: Sequence[str] | None = None) -> str:
    """A frame as a GitHub Markdown table, floats to three places, pipes and newlines escaped."""
    columns = list(columns or frame.columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(row[c]) for c in columns) + " |" for row in frame.iter_rows(named=True)]
    return "\n".join(lines)


def _tpr_columns(metrics: pl.DataFrame) -> pl.DataFrame:
    """TPR at each target FPR as text, marked † where too few human posts make the rate unresolvable."""
    replaced = []
    for column in metrics.columns:
        if column.startswith("tpr_at_") and column.endswith("_fpr"):
            values = metrics.get_column(column).to_list()
            resolvable = metrics.get_column(f"{column}_resolvable").to_list()
            text = [_fmt(v) + ("" if ok else " †") for v, ok in zip(values, resolvable, strict=True)]
            replaced.append(pl.Series(column, text, dtype=pl.String))
    return metrics.with_columns(replaced)


def plots_available() -> bool:
    """Whether matplotlib is installed (a dev extra): without it the report is written without plots."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def write_figures(evaluation: Evaluation, out_dir: Path) -> dict[str, list[str]]:
    """PNG files per detector (ROC, PR, calibration when it has probabilities): detector -> file names."""
    written: dict[str, list[str]] = {}
    if not plots_available():
        return written
    for info in evaluation.detectors:
        names = []
        figures = [("roc", roc_figure(evaluation.scored, info.name)), ("pr", pr_figure(evaluation.scored, info.name))]
        if has_probabilities(evaluation.scored, info.name):
            figures.append(("calibration", calibration_figure(evaluation, info.name)))
        for kind, fig in figures:
            name = f"{kind}_{info.name}.png"
            fig.savefig(out_dir / name, dpi=110)
            names.append(name)
        written[info.name] = names
    return written


def write_report(
    evaluation: Evaluation,
    labelled: LabelledPosts,
    out_dir: Path,
    *,
    inputs: Sequence[str] = (),
    notes: Sequence[str] = (),
    command: str | None = None,
    include_text: bool = True,
) -> Path:
    """Write ``report.md``, ``summary.md``, the PNGs, ``metrics.csv``, ``scores.parquet`` and ``rejected.csv``.

    ``include_text=False`` leaves every post's text out (the errors table and ``rejected.csv`` show
    ids only), for a report committed next to the code while the data stays where it is.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = write_figures(evaluation, out_dir)
    evaluation.metrics.write_csv(out_dir / "metrics.csv")
    evaluation.scored.drop("text").write_parquet(out_dir / "scores.parquet")
    if evaluation.accounts.height:
        evaluation.accounts.write_csv(out_dir / "accounts.csv")
    if labelled.rejected.height:
        rejected = labelled.rejected if include_text else labelled.rejected.drop("text", strict=False)
        rejected.write_csv(out_dir / "rejected.csv")
    m = _tpr_columns(evaluation.metrics)
    tpr_cols = [c for c in m.columns if c.startswith("tpr_at_") and c.endswith("_fpr")]
    cols = ["detector", "variant", "slice", "posts", "machine", "human", "auroc", "average_precision", *tpr_cols,
            "accuracy_at_default", "fpr_at_default", "not_scored"]  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    (out_dir / "summary.md").write_text(
        summary_markdown(evaluation, labelled, notes=notes, command=command, written=now,
                         report=(out_dir / "report.md").as_posix()),
        encoding="utf-8",
    )
    errors = evaluation.errors.filter(pl.col("variant") == "raw")
    error_columns = ["detector", "error", "dataset", "generator", "post_id", "score"]
    if include_text:
        errors = errors.with_columns(pl.col("text").str.slice(0, 200))
        error_columns.append("text")
    out = [
        "# Detector evaluation",
        "",
        f"Written {now:%Y-%m-%d %H:%M} UTC by `{command or 'chorus eval'}`.",
        "",
        "## Inputs",
        "",
        f"Files: {', '.join(f'`{i}`' for i in inputs) or '(in memory)'}. "
        f"{labelled.posts.height} posts used, {labelled.rejected.height} rejected"
        + (" (reasons in `rejected.csv`)." if labelled.rejected.height else "."),
        *[f"{note}" for note in notes],
        "",
        markdown_table(labelled.counts()),
        "",
        "Detectors:",
        "",
    ]
    for info in evaluation.detectors:
        named = ", ".join(f"`{k}` = {v:g}" for k, v in sorted(info.thresholds.items(), key=lambda kv: kv[1]))
        out.append(f"* `{info.name}` (model `{info.model_version}`), thresholds {named}")
    for name, why in evaluation.skipped.items():
        out.append(f"* `{name}`: **not evaluated**, it could not be built here: {why}")
    out += [
        "",
        "## Results by dataset",
        "",
        "Positive class: machine-written. `raw`: the text as written; `normalised`: links and @mentions "
        "replaced by `URL` and `@user`. TPR at a target FPR is the best true-positive rate of any threshold "
        "whose false-positive rate stays within the target; † marks targets finer than the number of human "
        "posts can resolve (fewer than 1/FPR humans: the figure is the TPR at zero false positives).",
        "",
        markdown_table(m.filter(pl.col("slice_kind") != "generator"), cols),
        "",
        "## Results by generator",
        "",
        "Each generator's machine posts against the human posts of the datasets it appears in.",
        "",
        markdown_table(m.filter(pl.col("slice_kind") == "generator"), cols),
        "",
        *_account_section(evaluation),
        "## What normalising links and mentions changes",
        "",
        "AUROC on raw and on normalised text. A detector whose score moves much here was reading links "
        "or mentions, which separate human from machine posts in some corpora for reasons that have "
        "nothing to do with who wrote them.",
        "",
        markdown_table(evaluation.normalisation),
        "",
        "Surface features of the inputs (share of posts with each, by class; label 1 = machine):",
        "",
        markdown_table(evaluation.surface),
        "",
        "## Named thresholds on this data",
        "",
        markdown_table(evaluation.thresholds, ["detector", "variant", "threshold_name", "threshold", "flagged", "tpr",
                                               "fpr", "precision", "accuracy"]) if evaluation.thresholds.height else "",
        "",
        "## Calibration",
        "",
    ]  # fmt: skip
    calibrated = [i.name for i in evaluation.detectors if has_probabilities(evaluation.scored, i.name)]
    if calibrated:
        out.append("Expected calibration error (10 bins) and Brier score, all posts:")
        out.append("")
        cal = evaluation.metrics.filter(pl.col("slice_kind") == "all", pl.col("detector").is_in(calibrated))
        out.append(markdown_table(cal, ["detector", "variant", "ece", "brier"]))
    else:
        out.append("No detector here gives calibrated probabilities (their `predict_proba` is NaN), so there is no "
                   "calibration plot; their scores are ranks, not probabilities.")  # fmt: skip
    out += ["", "## Plots", ""]
    if not figures:
        out += ["No plots: matplotlib is not installed here (`pip install matplotlib`, or the dev extras).", ""]
    for name, files in figures.items():
        out.append(f"### {name}")
        out.append("")
        out += [f"![{f.removesuffix('.png')}]({f})" for f in files]
        out.append("")
    out += [
        "## Errors to read",
        "",
        "The most confident mistakes of each detector at its default threshold, on raw text"
        + (" (first 200 characters):" if include_text else " (ids only: this report leaves the texts in the data):"),
        "",
        markdown_table(errors, error_columns),
        "",
        "## Caveats",
        "",
        "* A detector trained or calibrated on these files scores them optimistically: evaluate on held-out "
        "groups (`--split`), never on rows its training saw.",
        "* Posts of one account are not independent draws: an account's interval is a guide to how much "
        "evidence there is, not an exact coverage guarantee. Campaign-level detection is not measured here.",
        "",
        "Every number above is in `metrics.csv`; the scores per post are in `scores.parquet`.",
        "",
    ]
    path = out_dir / "report.md"
    path.write_text("\n".join(out), encoding="utf-8")
    return path


#: Accounts listed per detector and variant in the report (all of them are in ``accounts.csv``).
REPORT_ACCOUNTS = 40


def _account_section(evaluation: Evaluation) -> list[str]:
    """The report's "Results by account" lines (a short note when the posts name no accounts)."""
    out = ["## Results by account", ""]
    if not evaluation.accounts.height:
        return [*out, "No account-level results: the posts carry no `group` (account) column, or no detector "
                "here gives probabilities.", ""]  # fmt: skip
    out += [
        "Analysts and account policies act on accounts. Each account's machine share is the mean calibrated "
        "probability of all its scored posts here, with a 95% Wilson interval (the stream's per-account "
        f"estimate, over its recent posts). `acted` (counted in `humans_acted` / `machines_acted`): the example "
        f"policy's account rule, lower bound at least {ACCOUNT_LOWER_AT_LEAST:g} over at least {ACCOUNT_MIN_POSTS} "
        "scored posts. `flagged_share`: the account's posts flagged at the default threshold. `account_auroc` ranks "
        "human against machine accounts by machine share; `mixed` accounts (posts of both labels) are listed but "
        "not ranked.",
        "",
        markdown_table(evaluation.account_summary),
        "",
    ]  # fmt: skip
    shown = evaluation.accounts.group_by("detector", "variant", maintain_order=True).head(REPORT_ACCOUNTS)
    if shown.height < evaluation.accounts.height:
        out += [f"The {REPORT_ACCOUNTS} accounts with the highest machine share per detector and variant "
                "(every account is in `accounts.csv`):", ""]  # fmt: skip
    return [*out, markdown_table(shown), ""]


def summary_markdown(
    evaluation: Evaluation,
    labelled: LabelledPosts,
    *,
    notes: Sequence[str] = (),
    command: str | None = None,
    written: dt.datetime | None = None,
    report: str = "report.md",
) -> str:
    """The headline numbers alone (what the README shows): inputs, command, one table, a link to the rest."""
    written = written or dt.datetime.now(dt.UTC)
    head = _tpr_columns(evaluation.metrics).filter(pl.col("slice_kind") != "generator")
    tpr_cols = [c for c in head.columns if c.startswith("tpr_at_") and c.endswith("_fpr")]
    cols = ["detector", "variant", "slice", "posts", "machine", "human", "auroc", "average_precision", *tpr_cols,
            "accuracy_at_default", "tpr_at_default", "fpr_at_default"]  # fmt: skip
    machine = int((labelled.posts["label"] == 1).sum())
    lines = [
        "# Detector quality",
        "",
        f"`{command or 'chorus eval'}` ({written:%Y-%m-%d}): {labelled.posts.height} labelled posts "
        f"({machine} machine, {labelled.posts.height - machine} human).",
        *[f"{note}" for note in notes],
        "",
        markdown_table(head, [c for c in cols if c in head.columns]),
        "",
        "Positive class: machine-written; `raw` is the text as written, `normalised` has links and @mentions "
        "replaced by placeholders. † marks a TPR target finer than the number of human posts can resolve. "
        f"Per generator, thresholds, calibration and plots: [{report}]({report}).",
    ]
    if evaluation.account_summary.height:
        lines += [
            "",
            "Accounts: AUROC of each account's machine share (mean probability of its posts here), human against "
            "machine accounts; `humans_acted` / `machines_acted`: accounts the example policy's account rule acts "
            f"on (lower bound of the share >= {ACCOUNT_LOWER_AT_LEAST:g}, >= {ACCOUNT_MIN_POSTS} scored posts).",
            "",
            markdown_table(evaluation.account_summary),
        ]
    return "\n".join(lines) + "\n"


