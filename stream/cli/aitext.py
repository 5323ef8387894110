"""``chorus train-aitext``, ``score`` and ``export-aitext``: the TweepFake-era AI-text head and scoring files."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from stream.config import AITEXT_BACKENDS
from stream.files.posts import read_posts, with_post_ids
from stream.training.tweepfake import DEFAULT_CACHE, DEFAULT_DATA, run_training


def _json_value(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _score(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from stream.cli.common import load_config
    from stream.models.aitext import aitext_detector
    from stream.models.threads import configure_torch_threads

    settings = load_config(args).aitext
    configure_torch_threads(args.threads, settings)
    posts = with_post_ids(read_posts(Path(args.input)), args.input)
    detector = aitext_detector(settings, device=args.device, backend=args.backend)
    out_path = Path(args.output)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("w", encoding="utf-8") as out, tqdm(total=posts.height, unit="post", file=sys.stderr) as bar:
        for start in range(0, posts.height, args.batch_size):
            batch = posts.slice(start, args.batch_size)
            detections = detector.detect(batch, threshold=args.threshold)
            for row, post_id in enumerate(detections.post_ids):
                ev = detections.evidence_for(row)
                record = {
                    "id": post_id,
                    "probability": _json_value(detections.probability[row]),
                    "decision": bool(detections.flagged[row]),
                    "threshold": args.threshold,
                    "scored": ev.get("scored", False),
                    "not_scored_reason": ev.get("not_scored_reason"),
                    "flags": ev.get("flags", []),
                    "features": {k: _json_value(v) for k, v in ev.get("features", {}).items()},
                    "contributions": ev.get("contributions", {}),
                    "top_surprisal_tokens": ev.get("top_surprisal_tokens", []),
                    "model_version": detections.model_version,
                }
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            bar.update(batch.height)
    return 0


def _export_aitext(args: argparse.Namespace) -> int:
    """Build (or reuse) the ONNX exports and say where they are and which provider would run them."""
    from detectors.aitext.head import DEFAULT_ARTIFACT
    from detectors.aitext.models import resolve_device
    from stream.cli.common import load_config
    from stream.models.artifacts import load_head, verified_adapter
    from stream.models.onnx_cache import MANIFEST_FILE, default_cache_dir, default_specs, ensure_exports
    from stream.models.onnx_sessions import create_session
    from stream.models.threads import configure_torch_threads

    settings = load_config(args).aitext
    configure_torch_threads(args.threads, settings)
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir(settings)
    # the encoder is exported with the committed TweepFake head's fine-tuned adapter merged in
    paths = ensure_exports(cache, default_specs(verified_adapter(load_head(DEFAULT_ARTIFACT))), force=args.force)
    device = resolve_device(args.device)
    for kind, path in sorted(paths.items()):
        manifest = json.loads((path.parent / MANIFEST_FILE).read_text(encoding="utf-8"))
        provider = create_session(path, device, settings=settings).get_providers()[0]
        size_mb = sum(f.stat().st_size for f in path.parent.iterdir() if f.is_file()) / 2**20
        print(
            f"{kind}: {path} ({size_mb:.0f} MB; max |diff| vs torch {manifest['max_abs_difference_vs_torch']:.2g}; "
            f"runs on {provider})"
        )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train-aitext``, ``score`` and ``export-aitext`` to the ``chorus`` command."""
    from detectors.aitext.finetune import DEFAULT_ADAPTED_LAYERS
    from detectors.aitext.head import DEFAULT_ARTIFACT, INT8_ARTIFACT

    p = subparsers.add_parser(
        "train-aitext",
        help="train, calibrate and evaluate the AI-text head on the development data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", default=str(DEFAULT_DATA), help="folder with dev_tweepfake_trainval.jsonl.gz")
    p.add_argument(
        "--out",
        default=None,
        help=f"where to write the head artifact (JSON; default {DEFAULT_ARTIFACT.name}, with --quantize "
        f"{INT8_ARTIFACT.name}, in {DEFAULT_ARTIFACT.parent})",
    )
    p.add_argument("--cache", default=str(DEFAULT_CACHE), help="feature cache folder")
    p.add_argument("--n-train", type=int, default=2000, help="balanced train posts (features cost ~0.15 s each)")
    p.add_argument("--n-cal-human", type=int, default=1000, help="human posts for calibration and thresholds")
    p.add_argument("--n-cal-machine", type=int, default=600, help="machine posts for calibration")
    p.add_argument("--n-eval-extra", type=int, default=400, help="extra evaluate-account posts (train split)")
    p.add_argument("--n-validation", type=int, default=1000, help="validation-split posts of non-evaluate accounts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 1)")
    p.add_argument("--features-only", action="store_true", help="fill the feature cache and stop")
    p.add_argument(
        "--backend",
        default="torch",
        choices=AITEXT_BACKENDS,
        help="runtime the features are computed with (float32 either way unless --quantize)",
    )
    p.add_argument(
        "--quantize",
        action="store_true",
        help="with --backend onnx: fit the head on SmolLM2's int8 statistics (the int8 serving path's head); "
        "keeps the encoder adapter already there",
    )
    p.add_argument(
        "--no-finetune",
        dest="finetune",
        action="store_false",
        help="skip fine-tuning the MiniLM adapter (the head then uses frozen features only)",
    )
    p.add_argument(
        "--reuse-adapter",
        action="store_true",
        help="keep the encoder adapter already beside --out and retrain only the head (about a minute)",
    )
    p.add_argument(
        "--finetune-rows",
        type=int,
        default=6000,
        help="cap on train-account posts the adapter is fine-tuned on (0: all ~11k; the head's train rows always "
        "included); 6000 keeps fine-tuning to ~10 min on one core",
    )
    p.add_argument(
        "--adapted-layers",
        type=int,
        default=DEFAULT_ADAPTED_LAYERS,
        help="MiniLM transformer layers, counted from the top, that get a LoRA copy in the fine-tuned adapter "
        f"(1-6; the rest are the frozen shared trunk; default {DEFAULT_ADAPTED_LAYERS})",
    )
    p.set_defaults(func=run_training)

    p = subparsers.add_parser(
        "score",
        help="score posts in a JSONL/CSV/Parquet file with the AI-text detector; one JSON line per post",
    )
    p.add_argument("input", help="posts file: .jsonl, .csv or .parquet with 'id' and 'text'")
    p.add_argument("output", help="JSON lines out: id, probability, decision, features, evidence")
    p.add_argument("--threshold", default="default", help="named threshold: default, fpr_1pct, fpr_0.1pct")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument(
        "--backend",
        default="torch",
        choices=AITEXT_BACKENDS,
        help="model runtime: torch, or onnx (ONNX Runtime; exports built on first use, see export-aitext)",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default 1; onnx: $CHORUS_ORT_THREADS, default 1)"
    )
    p.set_defaults(func=_score)

    p = subparsers.add_parser(
        "export-aitext",
        help="export SmolLM2 and MiniLM to ONNX into the cache (the onnx backend does this on first use)",
        description="Export the AI-text detector's two models to ONNX (dynamic batch and sequence axes), "
        "check each against torch on a probe batch, and keep them in the cache folder: $CHORUS_CACHE/onnx, "
        "else ~/.cache/chorus/onnx. Takes a few minutes (SmolLM2 is ~520 MB); an export already there is reused.",
    )
    p.add_argument(
        "--cache-dir", default=None, help="folder for the exports (default: $CHORUS_CACHE/onnx or ~/.cache/chorus/onnx)"
    )
    p.add_argument("--force", action="store_true", help="export again even when the cache has the models")
    p.add_argument("--device", default="auto", help="which provider to report: cpu, cuda or auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads while exporting (default 1)")
    p.set_defaults(func=_export_aitext)
