"""The reviewers' verdicts as labels: the training export, and how often reviewers agree with each detector.

Only *standing* decisions count: a flag's latest decision unless that one is a reversal, so an
appeal upheld takes its label out of training data and precision at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
import sqlalchemy as sa

from stream.review.vocabulary import DECISIONS, REVERSE
from stream.store.database import Store
from stream.store.reading import read_frame
from stream.store.tables import TABLES

posts_t = TABLES["posts"]
flags_t = TABLES["flags"]
decisions_t = TABLES["review_decisions"]


def labelled_decisions(store: Store, *, include_text: bool = False, labelled_only: bool = True) -> pl.DataFrame:
    """The reviewers' verdicts as training and calibration data: one row per flag still decided.

    A flag's *standing* decision is its latest decision row unless that row is a reversal.
    ``label`` is 1 when the reviewer agreed with the detector (confirm or an action), 0 on a
    dismissal, null on an escalation (left out when ``labelled_only``). The detector's score,
    probability, threshold and model version are as they were flagged.
    """
    latest = (
        sa.select(decisions_t.c.subject_id, sa.func.max(decisions_t.c.decision_id).label("decision_id"))
        .where(decisions_t.c.subject_type == "flag")
        .group_by(decisions_t.c.subject_id)
        .subquery()
    )
    columns = [
        flags_t.c.flag_id,
        flags_t.c.post_id,
        flags_t.c.account_id,
        flags_t.c.detector,
        flags_t.c.model_version,
        flags_t.c.score,
        flags_t.c.probability,
        flags_t.c.threshold_name,
        flags_t.c.threshold,
        flags_t.c.post_created_at,
        flags_t.c.flagged_at,
        decisions_t.c.decision_id,
        decisions_t.c.decision,
        decisions_t.c.reason_code,
        decisions_t.c.reviewer,
        decisions_t.c.decided_at,
    ]
    if include_text:
        columns.append(posts_t.c.text)
    query = (
        sa.select(*columns)
        .select_from(
            latest.join(decisions_t, decisions_t.c.decision_id == latest.c.decision_id)
            .join(flags_t, flags_t.c.flag_id == latest.c.subject_id)
            .join(posts_t, posts_t.c.post_id == flags_t.c.post_id)
        )
        .where(decisions_t.c.decision != REVERSE)
        .order_by(decisions_t.c.decision_id)
    )
    with store.engine.connect() as conn:
        frame = read_frame(conn, query)
    labels = {name: kind.label for name, kind in DECISIONS.items()}
    frame = frame.with_columns(label=pl.col("decision").replace_strict(labels, default=None, return_dtype=pl.Int8))
    if labelled_only:
        frame = frame.filter(pl.col("label").is_not_null())
    return frame


def detector_precision(store: Store, *, cutoffs: Sequence[float] = ()) -> pl.DataFrame:
    """How often reviewers agree with each detector: precision by detector and threshold.

    Precision = confirmed / (confirmed + dismissed) among standing decisions. With ``cutoffs``,
    adds one row per cutoff with the precision among decided flags scoring at least that much
    (``threshold_name = ">= cutoff"``), which shows where a higher threshold would have helped.
    """
    data = labelled_decisions(store)
    schema = {
        "detector": pl.String,
        "threshold_name": pl.String,
        "threshold": pl.Float64,
        "decided": pl.UInt32,
        "confirmed": pl.Int64,
        "dismissed": pl.Int64,
        "precision": pl.Float64,
    }
    if data.is_empty():
        return pl.DataFrame(schema=schema)

    def agg(frame: pl.DataFrame, by: list[str]) -> pl.DataFrame:
        return frame.group_by(by).agg(
            decided=pl.len(),
            confirmed=pl.col("label").cast(pl.Int64).sum(),
            dismissed=(pl.col("label") == 0).cast(pl.Int64).sum(),
            precision=pl.col("label").cast(pl.Float64).mean(),
        )

    rows = [agg(data, ["detector", "threshold_name", "threshold"])]
    for cutoff in cutoffs:
        above = data.filter(pl.col("score") >= cutoff)
        if above.height:
            rows.append(
                agg(above, ["detector"]).with_columns(
                    threshold_name=pl.lit(f">= {cutoff:g}"), threshold=pl.lit(float(cutoff))
                )
            )
    return pl.concat([r.select(list(schema)).cast(schema) for r in rows]).sort(["detector", "threshold"])  # type: ignore[arg-type]
