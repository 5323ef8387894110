"""Do trees fitted on several parts of the calibrate keys, averaged, carry better than one half's trees?

A refit of modern-gb-v6's recipe scores the AIGC-Election corpus left out at 0.654, 0.604 or 0.579
depending only on which half of the calibrate keys fits the trees (seeds 0-2): the head learns
something of the particular keys it sees. This script fits the n-gram regressions once per leave-out
(as the shipped recipe does), then the trees on K folds of the calibrate keys (each member on the
other K-1 folds), and compares the AUROC of one member, of one half's trees, and of the members'
mean score on the corpus left out.

    .venv/bin/python docs/eval/experiments/bagged_trees.py --held aigc_election2024,local_models --folds 4
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger("bagged_trees")
CACHE = Path(".cache/aitext")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(CACHE / "corpus.parquet"))
    parser.add_argument("--held", default="aigc_election2024,local_models")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(CACHE / "bagged_trees.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from corpus_columns import load_columns

    from detectors.aitext.char_ngrams import shared_logits
    from detectors.aitext.corpus import stable_unit
    from detectors.aitext.fit_modern import balanced_weights, calibrate_halves, fit_pipeline, fit_trees
    from detectors.evaluation import auroc

    columns = load_columns(args.corpus)
    corpus, texts, y, split, source = columns.corpus, columns.texts, columns.y, columns.split, columns.source
    ev, style, strata = columns.evaluate, columns.style, columns.strata
    fold = np.array([int(stable_unit(k, args.seed + 7) * args.folds) for k in corpus["account"].to_list()])
    later = np.flatnonzero(split != "train")
    results = []
    for held in [s for s in args.held.split(",") if s]:
        use = source != held
        fitted = fit_pipeline(
            corpus, texts, style, np.zeros((corpus.height, 0)), use, args.seed, strata=strata, boosted=True
        )
        x = np.full((corpus.height, style.shape[1] + 2), np.nan)
        x[later] = np.concatenate(
            [style[later], shared_logits([fitted.char_model, fitted.legacy_model], [texts[i] for i in later])], axis=1
        )
        humans = ev & (y == 0) & (source == held)
        humans = humans if humans.any() else ev & (y == 0)
        machine = ev & (y == 1) & (source == held)
        rows = np.r_[np.flatnonzero(humans), np.flatnonzero(machine)]
        labels = y[rows]

        def trees_on(mask: np.ndarray, seed: int, x: np.ndarray = x, rows: np.ndarray = rows) -> np.ndarray:
            trees = fit_trees(x[mask], y[mask], balanced_weights(y[mask], strata[mask]), seed)
            return trees.raw(x[rows])

        calibrate = use & (split == "calibrate")
        scores = {"half (shipped)": trees_on(calibrate & calibrate_halves(corpus, args.seed), args.seed)}
        members = [trees_on(calibrate & (fold != k), args.seed) for k in range(args.folds)]
        for k, member in enumerate(members):
            scores[f"member {k}"] = member
        scores[f"mean of {args.folds}"] = np.mean(members, axis=0)
        scores["all calibrate keys"] = trees_on(calibrate, args.seed)
        for name, score in scores.items():
            results.append({"held": held, "head": name, "auroc": auroc(labels, score)})
            log.info("%s left out, %s: AUROC %.3f", held, name, results[-1]["auroc"])
    Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
