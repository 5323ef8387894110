"""Do more local writers' tweets carry to a corpus left out: Gemma-3 imitations, more Qwen2.5-Coder-1.5B?

Earlier sessions found that each new *family* of machine tweets moved the AIGC-Election corpus left
out more than more tweets of the same model, and left Gemma-3-270M's imitation tweets out of the
default corpus (with the linear head they taught that human-looking text is machine text). The
boosted head has a second n-gram regression for exactly that kind of writer (base models against
humans), so this script asks again, for several seeds of the calibrate halves: the shipped recipe
(``fit_pipeline(boosted=True)``) on the corpus with and without each new file's pieces, and with
Gemma-3 learnt by the second regression (treated as a base model, which it is) rather than the first.
The 1.5B model's second file is ``chorus aitext-generate --model qwen2.5-coder-1.5b --imitate-share
0.5 --seed 303 --prompts 240``, stopped after 158 posts (23 min beside other work).

It needs a corpus built with the extra files::

    chorus aitext-corpus --data ../shared/data --out .cache/aitext/corpus-more.parquet --generated \\
        .cache/aitext/generated-{smollm2,smollm2-imitate,qwen2.5-coder-0.5b,qwen2.5-coder-1.5b}-train.jsonl \\
        .cache/aitext/generated-gemma-3-270m-train.jsonl .cache/aitext/generated-qwen2.5-coder-1.5b-303-train.jsonl
    .venv/bin/python docs/eval/experiments/more_writers.py --corpus .cache/aitext/corpus-more.parquet --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import polars as pl

log = logging.getLogger("more_writers")
CACHE = Path(".cache/aitext")
GEMMA = "generated-gemma-3-270m-train:"
MORE_QWEN = "generated-qwen2.5-coder-1.5b-303-train:"
#: variant -> (id prefixes of the extra pieces it keeps, whether Gemma-3 counts as a base model)
VARIANTS: dict[str, tuple[tuple[str, ...], bool]] = {
    "shipped corpus": ((), False),
    "+ qwen 1.5b": ((MORE_QWEN,), False),
    "+ gemma": ((GEMMA,), False),
    "+ gemma as base model": ((GEMMA,), True),
    "+ both (gemma as base model)": ((GEMMA, MORE_QWEN), True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(CACHE / "corpus-more.parquet"))
    parser.add_argument("--held", default="aigc_election2024")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", default=str(CACHE / "more_writers.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from nonlinear_head import human_threshold

    import detectors.aitext.fit_modern as fit_modern
    from detectors.aitext.generalisation import slice_row
    from detectors.aitext.text import stylometric_features

    full = pl.read_parquet(args.corpus)
    extra = pl.col("id").str.starts_with(GEMMA) | pl.col("id").str.starts_with(MORE_QWEN)
    modern = fit_modern.MODERN_FAMILIES
    results = []
    for name in args.variants.split(","):
        keep, gemma_is_base = VARIANTS[name]
        kept = ~extra
        for prefix in keep:
            kept = kept | pl.col("id").str.starts_with(prefix)
        corpus = full.filter(kept)
        texts = corpus["text"].to_list()
        y = corpus["label"].to_numpy().astype(int)
        split = corpus["split"].to_numpy()
        source = corpus["source"].to_numpy()
        shipped_rows = ~corpus.select(extra).to_series().to_numpy()
        ev = split == "evaluate"
        style = np.stack([stylometric_features(t) for t in texts])
        strata = fit_modern.register_of(source)
        no_embedding = np.zeros((corpus.height, 0), np.float32)
        fit_modern.MODERN_FAMILIES = modern - {"gemma-3"} if gemma_is_base else modern
        for seed in [int(s) for s in args.seeds.split(",")]:
            for held in ["", *[s for s in args.held.split(",") if s]]:
                started = time.monotonic()
                out = source == held
                fitted = fit_modern.fit_pipeline(
                    corpus, texts, style, no_embedding, ~out, seed, strata=strata, boosted=True
                )
                log_odds = fitted.log_odds
                threshold = human_threshold(corpus, log_odds, ~out, seed)
                rows = []
                if held:
                    humans = ev & (y == 0) & (source == held)
                    rows.append(slice_row(held, log_odds[humans], log_odds[ev & (y == 1) & out], threshold))
                else:
                    # the same pieces in every variant: the shipped corpus's evaluate rows
                    humans = ev & (y == 0)
                    machine = ev & (y == 1) & shipped_rows
                    rows.append(slice_row("pooled", log_odds[humans], log_odds[machine], threshold))
                    tweets = humans & (strata == "tweet")
                    rows.append(slice_row("human tweets", log_odds[tweets], log_odds[tweets][:0], threshold))
                    rows[-1]["fpr_at_default"] = float((log_odds[tweets] >= threshold).mean())
                    for generator in ("smollm2", "qwen2.5", "gemma-3"):
                        machine = ev & (y == 1) & (corpus["generator"].to_numpy() == generator)
                        if machine.any():
                            rows.append(slice_row(generator, log_odds[humans], log_odds[machine], threshold))
                for row in rows:
                    results.append({"seed": seed, "variant": name, **row})
                log.info("%s seed %d %s: %s (%.0f s)", name, seed, held or "all in",
                         [(r["slice"], round(r["auroc"], 3)) for r in rows], time.monotonic() - started)
    fit_modern.MODERN_FAMILIES = modern
    Path(args.out).write_text(json.dumps(results, indent=1))
    frame = pl.DataFrame(results)
    with pl.Config(tbl_rows=200, tbl_hide_dataframe_shape=True, tbl_width_chars=200):
        print(frame.pivot(on="seed", index=["slice", "variant"], values="auroc"))
        means = frame.group_by("slice", "variant").agg(pl.col("auroc", "tpr_at_1pct_fpr", "flagged_at_default").mean())
        print(means.sort("slice", "variant"))


if __name__ == "__main__":
    main()
