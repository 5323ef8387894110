"""Experiment: true Binoculars with the two local Qwen2.5-Coder models, zero-shot, on modern-LLM tweets.

Why this exists: issue 14 asks to measure zero-shot statistics of the local language models side by
side with the supervised head, "including true Binoculars (observer and performer sharing a
tokenizer: the two Qwen2.5-Coder models)". SmolLM2-135M's one-model statistics rank the AIGC-Election
tweets of GPT-4o, Claude 3, Gemini 1.5 and Llama 3 near chance (``docs/eval/aitext-modern/stage.md``).
A zero-shot score fits nothing, so what it scores on a corpus is what it would score on a corpus it
never saw: the question is whether a 0.5B/1.5B pair carries where the supervised head does not
(0.60 AUROC on AIGC-Election left out of training, ``cross-corpus.md``).

Binoculars (Hans et al., 2024; reference code github.com/ahans30/Binoculars): the performer's
log-perplexity of the text over the cross-perplexity, the cross-entropy of the observer's next-token
distribution against the performer's log-probabilities, token by token. Low means machine. Both
assignments of the pair are reported, with each model's mean log-likelihood and mean entropy.

Sample: stratified *evaluate*-split pieces of the corpus (``chorus aitext-corpus``), normalised text.
On 2 CPU cores both models run in float32 (dequantised GGUF): about 1 s a piece for the pair.

    .venv/bin/python docs/eval/experiments/binoculars_qwen.py --per-generator 60 --humans 300

Writes ``.cache/aitext/binoculars_qwen.parquet`` (one row per piece) and prints AUROC per slice.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from detectors.evaluation import auroc  # noqa: E402

CACHE = ROOT / ".cache" / "aitext"
#: Tweet corpora of modern generators, and the human tweets they are ranked against.
MACHINE_SOURCES = ("aigc_election2024", "local_models", "llmfake", "l2r_rewrites")
HUMAN_SOURCES = ("aigc_election2024", "ira_2017", "tweeteval", "tweepfake")
SCORES = ("bino_small_observes", "bino_large_observes", "ll_small", "ll_large", "ent_small", "ent_large")


def sample(corpus: pl.DataFrame, per_generator: int, humans: int, seed: int) -> pl.DataFrame:
    """Evaluate-split pieces: ``per_generator`` of each modern generator, ``humans`` tweets spread over sources."""
    ev = corpus.filter(pl.col("split") == "evaluate")
    machine = (
        ev.filter((pl.col("label") == 1) & pl.col("source").is_in(MACHINE_SOURCES))
        .sample(fraction=1.0, shuffle=True, seed=seed)
        .group_by("generator", maintain_order=True)
        .head(per_generator)
    )
    human = (
        ev.filter((pl.col("label") == 0) & pl.col("source").is_in(HUMAN_SOURCES))
        .sample(fraction=1.0, shuffle=True, seed=seed)
        .group_by("source", maintain_order=True)
        .head(humans // len(HUMAN_SOURCES))
    )
    columns = ["id", "text", "label", "source", "generator", "account"]
    return pl.concat([machine.select(columns), human.select(columns)])


def pair_statistics(texts: list[str], tokenizer, small, large, batch: int) -> dict[str, np.ndarray]:
    """Per text: both Binoculars assignments, each model's mean log-likelihood and mean entropy."""
    import torch

    out: dict[str, list[float]] = {name: [] for name in SCORES}
    tokenizer.padding_side = "right"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    started = time.monotonic()
    for start in range(0, len(texts), batch):
        enc = tokenizer(texts[start : start + batch], return_tensors="pt", padding=True, truncation=True, max_length=96)
        with torch.inference_mode():
            logits_s = small(**enc).logits[:, :-1].float()
            logits_l = large(**enc).logits[:, :-1].float()
        target = enc["input_ids"][:, 1:]
        mask = enc["attention_mask"][:, 1:].float()
        n = mask.sum(1).clamp(min=1)
        logp_s, logp_l = logits_s.log_softmax(-1), logits_l.log_softmax(-1)
        p_s, p_l = logp_s.exp(), logp_l.exp()
        nll_s = -(logp_s.gather(-1, target[..., None]).squeeze(-1) * mask).sum(1) / n
        nll_l = -(logp_l.gather(-1, target[..., None]).squeeze(-1) * mask).sum(1) / n
        # cross-perplexity: the observer's distribution against the performer's log-probabilities
        x_small_obs = (-(p_s * logp_l).sum(-1) * mask).sum(1) / n  # observer small, performer large
        x_large_obs = (-(p_l * logp_s).sum(-1) * mask).sum(1) / n  # observer large, performer small
        out["bino_small_observes"] += (nll_l / x_small_obs).tolist()
        out["bino_large_observes"] += (nll_s / x_large_obs).tolist()
        out["ll_small"] += (-nll_s).tolist()
        out["ll_large"] += (-nll_l).tolist()
        out["ent_small"] += ((-(p_s * logp_s).sum(-1) * mask).sum(1) / n).tolist()
        out["ent_large"] += ((-(p_l * logp_l).sum(-1) * mask).sum(1) / n).tolist()
        done = min(start + batch, len(texts))
        print(f"{done}/{len(texts)} pieces, {(time.monotonic() - started) / done:.2f} s a piece", flush=True)
    return {name: np.asarray(values) for name, values in out.items()}


#: Which way each score points: +1 when higher means machine.
DIRECTION = {
    "bino_small_observes": -1,
    "bino_large_observes": -1,
    "ll_small": 1,
    "ll_large": 1,
    "ent_small": -1,
    "ent_large": -1,
}


def table(scored: pl.DataFrame) -> pl.DataFrame:
    """AUROC of each score per machine slice (generator, and source), against all the sampled humans."""
    humans = scored.filter(pl.col("label") == 0)
    rows = []
    machine = scored.filter(pl.col("label") == 1)
    slices = [("all", machine)]
    slices += [(f"generator {g}", machine.filter(pl.col("generator") == g)) for g in sorted(set(machine["generator"]))]
    slices += [(f"source {s}", machine.filter(pl.col("source") == s)) for s in sorted(set(machine["source"]))]
    for name, part in slices:
        labels = np.r_[np.ones(part.height), np.zeros(humans.height)]
        row: dict[str, object] = {"slice": name, "machine": part.height, "human": humans.height}
        for score in SCORES:
            values = np.r_[part[score].to_numpy(), humans[score].to_numpy()] * DIRECTION[score]
            row[score] = round(float(auroc(labels, values)), 3)
        rows.append(row)
    return pl.DataFrame(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(CACHE / "corpus.parquet"))
    parser.add_argument("--per-generator", type=int, default=60)
    parser.add_argument("--humans", type=int, default=300)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(CACHE / "binoculars_qwen.parquet"))
    args = parser.parse_args()

    import torch

    from stream.training.generator_weights import GENERATORS, load_generator

    torch.set_num_threads(args.threads)
    pieces = sample(pl.read_parquet(args.corpus), args.per_generator, args.humans, args.seed)
    print(pieces.group_by("label", "source").len().sort("label", "source"))
    tokenizer, small = load_generator(GENERATORS["qwen2.5-coder-0.5b"])
    _, large = load_generator(GENERATORS["qwen2.5-coder-1.5b"])
    stats = pair_statistics(pieces["text"].to_list(), tokenizer, small, large, args.batch)
    scored = pieces.with_columns(pl.Series(name, values) for name, values in stats.items())
    scored.write_parquet(args.out)
    with pl.Config(tbl_rows=60, tbl_cols=20, tbl_width_chars=200):
        print(table(scored))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
