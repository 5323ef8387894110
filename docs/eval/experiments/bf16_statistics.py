"""Experiment: does bfloat16 SmolLM2 (the torch path on a GPU) keep the statistics the head was fitted on?

Why this exists: ``[aitext] device = "auto"`` serves SmolLM2 in bf16 on CUDA, and the committed head
was fitted on float32 statistics on a CPU. This scores the held-out (evaluate) accounts' TweepFake
validation posts with both and compares the head's AUROC, its decisions at the default threshold,
its probabilities and each LM statistic. On a CPU the bf16 model rounds weights and activations as
CUDA does (slowly: about 3 minutes for the 454 posts on 2 cores); ``--device cuda`` runs it on a GPU.

Not part of the product or the tests: it needs ``../shared/data``. Run from the repository root::

    python docs/eval/experiments/bf16_statistics.py --data ../shared/data/aitext

Results of the run on the CPU are in ``stream/models/weights.py`` (``load_language_model``).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from detectors.evaluation import auroc  # noqa: E402
from stream.training.tweepfake import load_tweepfake, plan_training_rows  # noqa: E402

#: The head's default row plan (``chorus train-aitext``'s defaults), so the posts are its evaluate rows.
HEAD_PLAN = {"n_train": 2000, "n_cal_human": 1000, "n_cal_machine": 600, "n_eval_extra": 400, "n_validation": 1000}


def main() -> int:
    import torch

    from detectors.aitext.features import FeatureBatch, LanguageModelScorer, TorchCausalLM
    from detectors.aitext.head import DEFAULT_ARTIFACT
    from detectors.aitext.models import SMOLLM2_DOCUMENT_START_ID
    from stream.models.aitext import FeatureExtractor
    from stream.models.artifacts import load_head
    from stream.models.weights import load_language_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "aitext")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows, _ = plan_training_rows(load_tweepfake(args.data), seed=0, **HEAD_PLAN)
    posts = rows.filter((pl.col("role") == "evaluate") & (pl.col("split") == "validation"))
    texts, y = posts["text"].to_list(), posts["label"].to_numpy()
    head = load_head(DEFAULT_ARTIFACT)
    reference = FeatureExtractor.load(device="cpu")  # float32: what the head was fitted on
    tokenizer, model = load_language_model("cpu")
    half = copy.deepcopy(model).to(device=args.device, dtype=torch.bfloat16)
    scorer = LanguageModelScorer(tokenizer, TorchCausalLM(half), document_start_id=SMOLLM2_DOCUMENT_START_ID)
    bf16 = FeatureExtractor(scorer, reference.encoder)

    def scores(batch: FeatureBatch) -> tuple[np.ndarray, np.ndarray]:
        values = batch.values[:, [batch.names.index(n) for n in head.feature_names]]
        return head.decision_function(values, batch.embedding), head.predict_proba(values, batch.embedding)

    full, low = reference.extract(texts), bf16.extract(texts)
    (s32, p32), (s16, p16) = scores(full), scores(low)
    ok = np.isfinite(s32) & np.isfinite(s16)
    default = head.thresholds["default"]
    human = ok & (y == 0)
    print(f"{int(ok.sum())} posts; AUROC float32 {auroc(y[ok], s32[ok]):.4f}, bf16 {auroc(y[ok], s16[ok]):.4f}")
    print(f"decisions flipped at the default threshold: {int(((s32 >= default) != (s16 >= default))[ok].sum())}")
    moved = np.abs(p32 - p16)[ok]
    print(f"probability moved: max {moved.max():.4f}, median {np.median(moved):.4f}")
    print(f"FPR at default: float32 {(s32[human] >= default).mean():.4f}, bf16 {(s16[human] >= default).mean():.4f}")
    for j, name in enumerate(full.names):
        if name.startswith("lm_"):
            a, b = full.values[ok, j], low.values[ok, j]
            spread = np.median(np.abs(a - b)) / a.std()
            print(f"{name:20s} correlation {np.corrcoef(a, b)[0, 1]:.3f}  median |difference| / sd {spread:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
