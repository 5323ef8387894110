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


def free_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of rows with their own columns (the first row's keys)."""
    if not rows:
        return ""
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]
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
        f"({t.get('rows_per_split')}). Model: {t.get('model')}"
        + (f", C={t['C']}" if "C" in t else "")
        + f". Text: {t.get('data')}.",
        f"Default threshold: probability {default['probability']:.3f} ({default['how']}).",
        "Every number below is on the *evaluate* accounts and groups, which no fitting, calibration or "
        "threshold step saw; leave-one-out rows come from refits without the held-out generator or source.",
        *_adapter_lines(t),
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
            *(
                [f"Refitted only for: {', '.join(t['leave_out_keys'])} (each refit fine-tunes the adapter again)."]
                if t.get("leave_out_keys")
                else []
            ),
            table(m["leave_one_generator_out"]),
            "",
            "## Leave one source out (refit without the corpus, humans included)",
            table(m["leave_one_source_out"]) if m["leave_one_source_out"] else "Not refitted for this version.",
        ]
    return "\n".join(parts) + "\n"


def _adapter_lines(training: dict[str, Any]) -> list[str]:
    """How the fine-tuned encoder was trained, when the head reads its logit."""
    adapter = training.get("encoder_adapter")
    if not adapter:
        return []
    return [
        f"Encoder adapter `{adapter.get('file')}`: rank-8 LoRA on MiniLM's top two layers plus a classifier, "
        f"fine-tuned for {adapter.get('epochs')} epoch on {adapter.get('training_rows')} pieces "
        "(a class-balanced sample of the train keys); its logit is one feature of the head, read out of "
        "sample on calibrate and evaluate keys."
    ]


def write_modern_report(head: AiTextHead, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(modern_report(head), encoding="utf-8")
    return path


def stage_report(head: AiTextHead) -> str:
    """The SmolLM2 stage's report: as served, against the fast head alone, and each generator left out."""
    stage = head.stage
    if stage is None:
        raise ValueError(f"head {head.version} has no SmolLM2 stage")
    m = stage.metrics
    fast = m["fast_head_alone"]
    promoted = m["promoted_share"]
    cal, ev = m["calibrate_sample"], m["evaluate_sample"]
    default = stage.thresholds_["default"]
    return "\n\n".join(
        [
            f"# AI-text head `{head.version}`: the fast head and its SmolLM2 second stage",
            f"Written by `chorus train-aitext-stage` at {m['written']} in {m['seconds']} s. The stage is a "
            "class-balanced logistic regression over the fast head's log-odds and SmolLM2's zero-shot statistics "
            f"({', '.join(stage.lm_feature_names)}), each clipped to its calibration range. Fitted on "
            f"{cal['fit_rows']} pieces and thresholded on {cal['threshold_humans']} human pieces of a stratified "
            f"calibrate sample ({cal['per_generator']} machine pieces per generator, {cal['humans']} human; the "
            "half of the calibrate accounts and groups the fast head's regression never saw, cut again by key). "
            f"Measured on a stratified *evaluate* sample ({ev['per_generator']} per generator, {ev['humans']} "
            "human pieces) that no fitting step saw.",
            f"Default threshold: probability {default['probability']:.3f} ({default['how']}). SmolLM2 runs only on "
            f"posts whose fast log-odds is at least {stage.promote_from:.2f}: below it, no statistics could lift a "
            f"post to the default threshold. On the evaluate sample that is {promoted['all']:.1%} of pieces "
            f"({promoted['human']:.1%} of human, {promoted['machine']:.1%} of machine pieces).",
            "## Pooled (machine pieces of every generator against the human pieces)",
            table([{**fast["pooled"], "slice": "fast head alone"}, {**m["pooled"], "slice": "with the SmolLM2 stage"}]),
            _fpr_line("human pieces, fast head alone", fast["human_fpr"]),
            _fpr_line("human pieces, with the stage", m["human_fpr"]),
            "## Per generator, with the stage (as served)",
            table(m["per_generator"]),
            "## Per generator, fast head alone (its own default threshold)",
            table(fast["per_generator"]),
            "## Per source, with the stage",
            table(m["per_source"]),
            "## Each generator left out of the stage's fit and thresholds",
            "The fast head under the stage was fitted with every generator; only the stage is refitted here.",
            table(m["leave_one_generator_out"]),
            "## Zero-shot: each SmolLM2 statistic alone (no fitting at all), AUROC against the human pieces",
            "Directions as published (Fast-DetectGPT and log-likelihood higher, Binoculars, log-rank and entropy "
            "lower for machine text). The statistics of a 135M-parameter model rank the older and open models' "
            "text well and the AIGC-Election tweets of GPT-4o, Claude 3, Gemini 1.5 and Llama 3 near chance.",
            free_table(m["zero_shot"]),
        ]
    ) + "\n"


def write_stage_report(head: AiTextHead, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(stage_report(head), encoding="utf-8")
    return path
