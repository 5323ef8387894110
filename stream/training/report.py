"""The modern AI-text head's report: markdown tables from the metrics stored in the head artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from detectors.aitext.head import AiTextHead

COLUMNS = (
    "slice",
    "machine_posts",
    "human_posts",
    "auroc",
    "tpr_at_1pct_fpr",
    "tpr_at_0.1pct_fpr",
    "flagged_at_default",
)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.3f}"
    return str(value)


def table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of slice rows (:func:`detectors.aitext.generalisation.slice_row`)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def _fpr_line(name: str, block: dict[str, Any]) -> str:
    worst = block["worst_account"]
    return (
        f"- {name}: pooled false-positive rate **{block['pooled_fpr']:.2%}** over {block['human_posts']} posts; "
        f"worst account (>= 20 posts) `{worst['account']}` at {_cell(worst['fpr'])} over {worst['posts']} posts"
    )


def modern_report(head: AiTextHead) -> str:
    m, t = head.metrics, head.training
    default = head.thresholds_["default"]
    parts = [
        f"# AI-text head `{head.version}`: modern generators, post-length pieces",
        "",
        f"Written by `{t.get('command')}` at {t.get('written_at')}; {t.get('corpus_rows')} pieces "
        f"({t.get('rows_per_split')}). Model: {t.get('model')}, C={t.get('C')}. Text: {t.get('data')}.",
        f"Default threshold: probability {default['probability']:.3f} ({default['how']}).",
        "Every number below is on the *evaluate* accounts and groups, which no fitting, calibration or "
        "threshold step saw; leave-one-out rows come from refits without the held-out generator or source.",
        "",
        "## Human false-positive rate at the default threshold",
        _fpr_line(
            "human tweets (AIGC-Election, TweepFake, TweetEval, IRA 2017)", m["evaluate_human_tweets_fpr_at_default"]
        ),
        _fpr_line("all human pieces", m["evaluate_all_humans_fpr_at_default"]),
        "",
        "## Per generator (evaluate split; against all held-out human pieces)",
        table(m["evaluate_per_generator"]),
        "",
        "## Per source (machine pieces against the same source's held-out humans)",
        table(m["evaluate_per_source"]),
        "",
        "## Per language",
        table(m["evaluate_per_language"]),
    ]
    if "leave_one_generator_out" in m:
        parts += [
            "",
            "## Leave one generator out (the whole pipeline refitted without it; flagged at the refit's "
            "default threshold)",
            table(m["leave_one_generator_out"]),
            "",
            "## Leave one source out (refit without the corpus, humans included)",
            table(m["leave_one_source_out"]),
        ]
    return "\n".join(parts) + "\n"


def write_modern_report(head: AiTextHead, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(modern_report(head), encoding="utf-8")
    return path
