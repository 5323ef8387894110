"""Can SmolLM2's zero-shot statistics flag what the fast head misses without costing what it catches?

The learnt second stage (``chorus train-aitext-stage``: one regression over the fast head's log-odds
and SmolLM2's statistics) raised the pooled AUROC but *lowered* the frontier assistant models
(Claude 3 0.850 -> 0.750): one line has to trade the two signals against each other. This script
keeps them apart. Each arm is put on the human scale (its score minus the calibration humans' mean,
over their spread), and a post is scored by the larger of the two ("either arm"), or their sum
("both arms", Stouffer), so a frontier tweet the head catches stays caught. The language-model arm is
zero-shot: nothing is fitted but the humans' mean and spread and the threshold (0.5% of the threshold
half's calibrate humans, as the head's own), so every generator is effectively left out of it.

It measures, on a stratified evaluate sample and on the demo's own stream (5,000 posts, its ground
truth): AUROC and the flagged share per generator and the human false-positive rate, for the fast
head alone, each arm combination, and "either arm" with SmolLM2 run only on posts above a fast-head
band (the cost at serving).

    .venv/bin/python docs/eval/experiments/lm_or_arm.py --threads 2

The fast head is whatever ``load_head()`` serves; cross-corpus.md records the run over modern-gb-v6.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import polars as pl

log = logging.getLogger("lm_or_arm")
CACHE = Path(".cache/aitext")
#: zero-shot statistic -> direction (+1: higher means machine), as published.
STATISTICS = {"lm_fast_detectgpt": 1.0, "lm_binoculars": -1.0}
TARGET_FPR = 0.005
#: Quantiles of the calibration humans' fast-head score above which SmolLM2 runs in the gated variants.
BANDS = (0.5, 0.8, 0.9)


def demo_texts(posts: int) -> tuple[list[str], np.ndarray]:
    """The demo stream's scoreable texts and whether a model wrote each (its ground truth; as the demo's
    summary, people's campaign posts are on neither side)."""
    from detectors.aitext.text import strip_markers
    from stream.simulation.config import SimulationConfig
    from stream.simulation.simulate import simulate_posts

    texts, machine = [], []
    for message in simulate_posts(SimulationConfig(posts=posts)):
        text = message.get("text")
        truth = message["meta"]["sim"]
        if not isinstance(text, str) or not (truth["machine"] or truth.get("kind") == "organic"):
            continue
        prepared = strip_markers(text)
        if prepared:
            texts.append(prepared)
            machine.append(bool(truth["machine"]))
    return texts, np.array(machine)


def on_human_scale(score: np.ndarray, humans: np.ndarray) -> np.ndarray:
    """``score`` in units of the calibration humans' spread above their mean."""
    return (score - np.nanmean(humans)) / np.nanstd(humans)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(CACHE / "corpus.parquet"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--demo-posts", type=int, default=5000)
    parser.add_argument("--calibration-humans", type=int, default=2500)
    parser.add_argument("--per-generator", type=int, default=80)
    parser.add_argument("--evaluate-humans", type=int, default=1500)
    parser.add_argument("--out", default=str(CACHE / "lm_or_arm.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from detectors.aitext.fit_modern import calibrate_halves
    from detectors.aitext.generalisation import slice_row
    from detectors.aitext.metrics import LM_FEATURE_NAMES
    from detectors.aitext.training import threshold_for_fpr
    from stream.models.artifacts import load_head
    from stream.training.lm_stage import DEFAULT_LM_CACHE, cached_lm_features, fast_head_scores, stratified_sample
    from stream.training.modern import DEFAULT_EMBEDDING_CACHE

    head = load_head()
    corpus = pl.read_parquet(args.corpus)
    threshold_half = corpus.filter(pl.col("split") == "calibrate").filter(
        ~pl.Series(calibrate_halves(corpus.filter(pl.col("split") == "calibrate"), 0))
    )
    calibration = threshold_half.filter(pl.col("label") == 0).sample(n=args.calibration_humans, seed=7)
    evaluate = stratified_sample(corpus, "evaluate", args.per_generator, args.evaluate_humans, seed=7)
    demo, demo_machine = demo_texts(args.demo_posts)
    demo_unique = sorted(set(demo))

    def arms(texts: list[str]) -> dict[str, np.ndarray]:
        lm = cached_lm_features(texts, DEFAULT_LM_CACHE, threads=args.threads)
        out = {"fast": fast_head_scores(head, texts, DEFAULT_EMBEDDING_CACHE)}
        for name, sign in STATISTICS.items():
            out[name] = sign * lm[:, LM_FEATURE_NAMES.index(name)]
        return out

    cal = arms(calibration["text"].to_list())
    ev = arms(evaluate["text"].to_list())
    unique = arms(demo_unique)
    where = {t: i for i, t in enumerate(demo_unique)}
    dm = {name: values[[where[t] for t in demo]] for name, values in unique.items()}

    cuts = {band: np.quantile(on_human_scale(cal["fast"], cal["fast"]), band) for band in BANDS}

    def combinations(a: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        z = {name: on_human_scale(a[name], cal[name]) for name in a}
        out = {"fast head alone": z["fast"]}
        for name in STATISTICS:
            short = name.removeprefix("lm_")
            out[f"{short} alone"] = z[name]
            out[f"either arm ({short})"] = np.fmax(z["fast"], z[name])
            out[f"both arms ({short})"] = (z["fast"] + np.nan_to_num(z[name])) / np.sqrt(2)
            for band, cut in cuts.items():
                gated = np.where(z["fast"] >= cut, z[name], -np.inf)
                out[f"either arm ({short}), LM above the humans' {int(band * 100)}th percentile"] = np.fmax(
                    z["fast"], gated
                )
        return out

    cal_c, ev_c, demo_c = combinations(cal), combinations(ev), combinations(dm)
    y = evaluate["label"].to_numpy()
    generators = evaluate["generator"].to_numpy()
    results = []
    for name, score in ev_c.items():
        threshold = threshold_for_fpr(cal_c[name][np.isfinite(cal_c[name])], TARGET_FPR)
        humans = score[y == 0]
        rows = [slice_row("all machine", humans, score[y == 1], threshold)]
        rows += [slice_row(g, humans, score[generators == g], threshold) for g in sorted(set(generators[y == 1]))]
        rows.append(slice_row("demo stream", demo_c[name][~demo_machine], demo_c[name][demo_machine], threshold))
        for row in rows:
            row["human_fpr"] = float((humans >= threshold).mean())
            row["demo_organic_flagged"] = float((demo_c[name][~demo_machine] >= threshold).mean())
            results.append({"combination": name, **row})
        log.info("%s: %s", name, [(r["slice"], round(r["auroc"], 3), round(r["flagged_at_default"], 3)) for r in rows])
    z_fast = on_human_scale(ev["fast"], cal["fast"])
    lm_share = {int(band * 100): float((z_fast >= cut).mean()) for band, cut in cuts.items()}
    log.info("share of the evaluate sample above each band (SmolLM2 runs there): %s", lm_share)
    Path(args.out).write_text(json.dumps({"rows": results, "lm_share": lm_share}, indent=1))
    frame = pl.DataFrame(results)
    with pl.Config(tbl_rows=400, tbl_hide_dataframe_shape=True, tbl_width_chars=250, fmt_str_lengths=80):
        print(frame.pivot(on="slice", index="combination", values="auroc"))
        print(frame.pivot(on="slice", index="combination", values="flagged_at_default"))
        print(frame.filter(pl.col("slice") == "demo stream").select("combination", "human_fpr", "demo_organic_flagged"))


if __name__ == "__main__":
    main()
