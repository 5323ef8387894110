"""Experiment: can a linear probe on SmolLM2's hidden states tell TweepFake's bots from new people?

Why this exists: the AI-text head ranks posts of accounts it was trained on well (AUROC 0.97) but
posts of accounts it never saw poorly (0.74), and GPT-2 imitations of an unseen account at chance.
Its features are a handful of zero-shot LM statistics, MiniLM's embedding and a small fine-tuned
MiniLM adapter. This script asks whether the language model's *internal* representation carries
more: it mean-pools SmolLM2's hidden states over each post's tokens at every layer, fits a
logistic-regression probe per layer on the train accounts, and scores the same held-out rows the
head is measured on (``stream.training.tweepfake.plan_training_rows``: calibrate and evaluate accounts are
disjoint from train; ``seen`` is TweepFake's validation split of train accounts, the published
protocol). The threshold is the 99th percentile of the calibrate accounts' human posts (1% FPR).

Not part of the product or the tests: it needs ``../shared/data`` and about 7 minutes of CPU on a
2-core machine (one forward pass per post without the output projection). Run from the repository
root::

    python docs/eval/experiments/lm_layer_probe.py --data ../shared/data/aitext

Results of the run recorded in ``detectors/aitext/artifacts/README.md``.
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

from detectors.aitext.features import MAX_LM_TOKENS, length_batches, pad_batch  # noqa: E402
from detectors.aitext.text import triage  # noqa: E402
from detectors.evaluation import auroc  # noqa: E402
from stream.training.tweepfake import load_tweepfake, plan_training_rows  # noqa: E402

#: The head's default row plan (``chorus train-aitext``'s defaults), so rows match its metrics.
HEAD_PLAN = {"n_train": 2000, "n_cal_human": 1000, "n_cal_machine": 600, "n_eval_extra": 400, "n_validation": 1000}


def planned_rows(data: Path, extra_train: int, seed: int) -> pl.DataFrame:
    """The head's rows plus ``extra_train`` more train-split posts of the train accounts."""
    frame = load_tweepfake(data)
    rows, assignment = plan_training_rows(frame, seed=seed, **HEAD_PLAN)
    pool = frame.filter(pl.col("group").replace_strict(assignment).eq("train") & pl.col("split").eq("train"))
    pool = pool.filter(~pl.col("id").is_in(rows["id"].implode()))
    extra = pool.sample(min(extra_train, pool.height), seed=seed + 1)
    extra = extra.with_columns(group_split=pl.lit("train"), role=pl.lit("train_extra")).select(rows.columns)
    return pl.concat([rows, extra], how="vertical")


def pooled_hidden_states(texts: list[str], threads: int) -> np.ndarray:
    """``[posts, layers + 1, hidden]`` float32: each layer's states averaged over the post's tokens.

    The document-start token is left out of the mean: its states are an attention sink, far from
    every other position's, and the same for every post.
    """
    import torch

    from stream.models.weights import load_language_model

    torch.set_num_threads(threads)
    tokenizer, model = load_language_model("cpu")
    posts = [triage(t, normalise=True) for t in texts]
    encoded = tokenizer([p.text if p.scored else "" for p in posts], add_special_tokens=False)["input_ids"]
    sequences = [[0, *ids[: MAX_LM_TOKENS - 1]] for ids in encoded]
    out = np.zeros((len(texts), model.config.num_hidden_layers + 1, model.config.hidden_size), dtype=np.float32)
    started, done = time.perf_counter(), 0
    for batch in length_batches([len(s) for s in sequences], 2048, 256):
        ids, mask = pad_batch([sequences[i] for i in batch], 0)
        with torch.inference_mode():
            states = model.model(
                input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), output_hidden_states=True
            ).hidden_states
        weights = torch.from_numpy(mask).float()
        weights[:, 0] = 0.0
        weights /= weights.sum(1, keepdim=True).clamp(min=1.0)
        out[batch] = torch.einsum("lbsh,bs->blh", torch.stack(states), weights).numpy()
        done += len(batch)
        print(f"\r{done}/{len(texts)} posts, {done / (time.perf_counter() - started):.1f}/s", end="", file=sys.stderr)
    print(file=sys.stderr)
    return out


def probe_table(rows: pl.DataFrame, states: np.ndarray, layers: list[int], c: float, extra: bool) -> pl.DataFrame:
    """Per layer: held-out AUROCs, and TPR / FPR at the calibrate accounts' 1% FPR threshold."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    role, y = rows["role"].to_numpy(), rows["label"].to_numpy()
    source = rows["source_model"].to_numpy()
    train = np.isin(role, ["train", "train_extra"] if extra else ["train"])
    evaluate, calibrate = role == "evaluate", role == "calibrate"
    seen = (role == "validation") & (rows["group_split"].to_numpy() == "train")
    records = []
    for layer in layers:
        scaler = StandardScaler().fit(states[train, layer])
        x = scaler.transform(states[:, layer])
        score = LogisticRegression(C=c, max_iter=2000).fit(x[train], y[train]).decision_function(x)
        threshold = np.quantile(score[calibrate & (y == 0)], 0.99)
        flagged = score >= threshold

        def gpt2_auroc(mask: np.ndarray, score: np.ndarray = score) -> float:
            pair = mask & ((y == 0) | (source == "gpt2"))
            return auroc(y[pair], score[pair])

        records.append(
            {
                "layer": layer,
                "evaluate_auroc": auroc(y[evaluate], score[evaluate]),
                "evaluate_gpt2_auroc": gpt2_auroc(evaluate),
                "evaluate_fpr": float(flagged[evaluate & (y == 0)].mean()),
                "seen_auroc": auroc(y[seen], score[seen]),
                "seen_gpt2_auroc": gpt2_auroc(seen),
                "seen_accuracy": float((flagged[seen] == (y[seen] == 1)).mean()),
                "seen_gpt2_recall": float(flagged[seen & (source == "gpt2")].mean()),
            }
        )
    return pl.DataFrame(records)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "aitext")
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "aitext" / "layer_probe")
    parser.add_argument("--extra-train", type=int, default=3000, help="train posts beyond the head's 2,000")
    parser.add_argument("--layers", default="0,3,6,9,12,15,18,21,24,27,30")
    parser.add_argument("--c", type=float, default=0.001, help="inverse L2 strength of the probe")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    rows = planned_rows(args.data, args.extra_train, args.seed)
    states_path = args.cache / f"pooled-{args.seed}-{args.extra_train}.npy"
    if not states_path.is_file():
        np.save(states_path, pooled_hidden_states(rows["text"].to_list(), args.threads))
    states = np.load(states_path, mmap_mode="r")
    layers = [int(v) for v in args.layers.split(",")]
    for extra in (False, True):
        trained_on = f"the head's train rows and {args.extra_train:,} more" if extra else "the head's train rows"
        print(f"\nprobe trained on {trained_on}")
        with pl.Config(tbl_rows=-1, tbl_cols=-1, float_precision=3, tbl_width_chars=200):
            print(probe_table(rows, states, layers, args.c, extra))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
