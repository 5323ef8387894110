"""Do word-frequency statistics carry to a corpus left out better than the surface statistics alone?

The assistant models write in a narrow band of the vocabulary: no misspellings, few words of the
street, many mid-frequency "educated" words (navigating, fostering, resilience). How often each word
of a post is used in general English (wordfreq's Zipf scale, from Wikipedia, subtitles, news, books,
the web and Twitter) says that without naming a topic. This script refits the shipped pipeline
(``fit_pipeline(boosted=True)``) with and without a few such statistics beside the stylometry, for
several seeds of the calibrate halves, and prints AUROC and TPR at 1% FPR on each held-out source.

    .venv/bin/pip install wordfreq   # not a dependency of Chorus: nothing shipped reads it
    .venv/bin/python docs/eval/experiments/lexical_frequency.py --held aigc_election2024,local_models --seeds 0,1

Results: docs/eval/aitext-modern/cross-corpus.md ("word frequencies and tighter trees").
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from pathlib import Path

import numpy as np
import polars as pl

log = logging.getLogger("lexical_frequency")
CACHE = Path(".cache/aitext")
_WORD_RE = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?", re.U)

LEX_NAMES = (
    "lex_mean_zipf",
    "lex_std_zipf",
    "lex_unknown_frac",
    "lex_rare_frac",
    "lex_mid_frac",
    "lex_common_frac",
    "lex_min_zipf",
)


def lexical_features(texts: list[str], zipf: dict[str, float]) -> np.ndarray:
    """Per post: statistics of its words' Zipf frequencies (0 for a word not in the list)."""
    out = np.zeros((len(texts), len(LEX_NAMES)))
    for i, text in enumerate(texts):
        words = _WORD_RE.findall(text.replace("\u2019", "'").lower())
        if not words:
            continue
        z = np.fromiter((zipf.get(w, 0.0) for w in words), float, len(words))
        known = z[z > 0]
        out[i] = (
            z.mean(),
            z.std(),
            float((z == 0).mean()),
            float(((z > 0) & (z < 3.0)).mean()),
            float(((z >= 3.0) & (z < 4.5)).mean()),
            float((z >= 6.0).mean()),
            known.min() if len(known) else 0.0,
        )
    return out


def zipf_table(languages: list[str]) -> dict[str, float]:
    """Word -> the highest Zipf frequency over ``languages`` (wordfreq's large lists where they exist)."""
    import wordfreq

    table: dict[str, float] = {}
    for lang in languages:
        kind = "large" if lang in wordfreq.available_languages("large") else "best"
        for word, freq in wordfreq.get_frequency_dict(lang, wordlist=kind).items():
            z = float(np.log10(freq) + 9.0)
            if z > table.get(word, 0.0):
                table[word] = z
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(CACHE / "corpus.parquet"))
    parser.add_argument("--held", default="aigc_election2024,local_models")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--languages", default="en")
    parser.add_argument("--variants", default="base,lex")
    parser.add_argument("--out", default=str(CACHE / "lexical_frequency.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from corpus_columns import load_columns
    from nonlinear_head import human_threshold

    from detectors.aitext.fit_modern import fit_pipeline
    from detectors.aitext.generalisation import slice_row
    from detectors.evaluation import auroc

    columns = load_columns(args.corpus)
    corpus, texts, y, source = columns.corpus, columns.texts, columns.y, columns.source
    ev, style, strata = columns.evaluate, columns.style, columns.strata
    started = time.monotonic()
    lex = lexical_features(texts, zipf_table(args.languages.split(",")))
    log.info("lexical statistics of %d pieces in %.1f s", len(texts), time.monotonic() - started)
    aigc = source == "aigc_election2024"
    for j, name in enumerate(LEX_NAMES):
        value = auroc(y[aigc], lex[aigc, j])
        log.info("%s alone, AIGC-Election machine vs its humans: AUROC %.3f", name, value)
    no_embedding = np.zeros((corpus.height, 0), np.float32)
    variants = {"base": style, "lex": np.concatenate([style, lex], axis=1)}
    results = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for held in ["", *[s for s in args.held.split(",") if s]]:
            out = source == held
            for name in args.variants.split(","):
                started = time.monotonic()
                fitted = fit_pipeline(
                    corpus, texts, variants[name], no_embedding, ~out, seed, strata=strata, boosted=True
                )
                log_odds = fitted.log_odds
                threshold = human_threshold(corpus, log_odds, ~out, seed)
                slices = [held] if held else ["pooled"]
                for s in slices:
                    if s == "pooled":
                        humans, machine = ev & (y == 0), ev & (y == 1)
                    else:
                        humans = ev & (y == 0) & (source == s)
                        humans = humans if humans.any() else ev & (y == 0)
                        machine = ev & (y == 1) & (source == s)
                    row = slice_row(s, log_odds[humans], log_odds[machine], threshold)
                    results.append({"seed": seed, "variant": name, **row})
                    log.info("seed %d %s %s: %s (%.0f s)", seed, name, s, row, time.monotonic() - started)
    Path(args.out).write_text(json.dumps(results, indent=1))
    frame = pl.DataFrame(results)
    with pl.Config(tbl_rows=200, tbl_hide_dataframe_shape=True, tbl_width_chars=200):
        print(frame.pivot(on="variant", index=["slice", "seed"], values=["auroc", "tpr_at_1pct_fpr"]))
        means = frame.group_by("slice", "variant").agg(pl.col("auroc", "tpr_at_1pct_fpr").mean())
        print(means.sort("slice", "variant"))


if __name__ == "__main__":
    main()
