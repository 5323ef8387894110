"""Does a more constrained tree head carry to a corpus left out better than the shipped one?

modern-gb-v6's trees may split anywhere on both n-gram logits, so a region where one corpus's
humans happen to have high logits can be learnt as "human" although a higher machine logit should
never lower the machine probability. This script refits the shipped pipeline
(``fit_pipeline(boosted=True)``) with other settings of the trees (monotone in both logits; fewer,
smaller trees) for several seeds of the calibrate halves and prints AUROC and TPR at 1% FPR on each
held-out source, as ``lexical_frequency.py`` does for features.

    .venv/bin/python docs/eval/experiments/tree_constraints.py --held aigc_election2024,local_models --seeds 0,1,2

Results: docs/eval/aitext-modern/cross-corpus.md ("word frequencies and tighter trees").
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import polars as pl

log = logging.getLogger("tree_constraints")
CACHE = Path(".cache/aitext")
N_STYLE = 12
#: Settings over the shipped BOOSTING; the two n-gram logits are the last two columns.
VARIANTS: dict[str, dict] = {
    "shipped": {},
    "monotone": {"monotonic_cst": [0] * N_STYLE + [1, 1]},
    "monotone_small": {"monotonic_cst": [0] * N_STYLE + [1, 1], "max_leaf_nodes": 7, "max_iter": 200},
    "small": {"max_leaf_nodes": 7, "max_iter": 200},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(CACHE / "corpus.parquet"))
    parser.add_argument("--held", default="aigc_election2024,local_models")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--variants", default="shipped,monotone,monotone_small")
    parser.add_argument("--out", default=str(CACHE / "tree_constraints.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from corpus_columns import load_columns
    from nonlinear_head import human_threshold

    import detectors.aitext.fit_modern as fit_modern
    from detectors.aitext.generalisation import slice_row

    columns = load_columns(args.corpus)
    corpus, texts, y, source = columns.corpus, columns.texts, columns.y, columns.source
    ev, style, strata = columns.evaluate, columns.style, columns.strata
    no_embedding = np.zeros((corpus.height, 0), np.float32)
    shipped = dict(fit_modern.BOOSTING)
    results = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for held in ["", *[s for s in args.held.split(",") if s]]:
            out = source == held
            for name in args.variants.split(","):
                started = time.monotonic()
                fit_modern.BOOSTING = {**shipped, **VARIANTS[name]}
                fitted = fit_modern.fit_pipeline(
                    corpus, texts, style, no_embedding, ~out, seed, strata=strata, boosted=True
                )
                threshold = human_threshold(corpus, fitted.log_odds, ~out, seed)
                s = held or "pooled"
                humans = ev & (y == 0) & (source == s) if held else ev & (y == 0)
                humans = humans if humans.any() else ev & (y == 0)
                machine = ev & (y == 1) & (source == s) if held else ev & (y == 1)
                row = slice_row(s, fitted.log_odds[humans], fitted.log_odds[machine], threshold)
                results.append({"seed": seed, "variant": name, **row})
                log.info("seed %d %s %s: AUROC %.3f TPR@1%% %.3f (%.0f s)", seed, name, s, row["auroc"],
                         row["tpr_at_1pct_fpr"], time.monotonic() - started)
    fit_modern.BOOSTING = shipped
    Path(args.out).write_text(json.dumps(results, indent=1))
    frame = pl.DataFrame(results)
    with pl.Config(tbl_rows=200, tbl_hide_dataframe_shape=True, tbl_width_chars=200):
        print(frame.pivot(on="variant", index=["slice", "seed"], values="auroc"))
        means = frame.group_by("slice", "variant").agg(pl.col("auroc", "tpr_at_1pct_fpr").mean())
        print(means.sort("slice", "variant"))


if __name__ == "__main__":
    main()
