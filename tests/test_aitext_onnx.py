"""The ONNX serving path gives the torch path's LM statistics and embeddings.

No real model is exported here (SmolLM2's export is ~540 MB and minutes): tiny random-weight models
of the same architectures (a 2-layer Llama with grouped-query attention and tied embeddings, as
SmolLM2; a 1-layer BERT with MiniLM's 384-wide output) go through the same exporter, the same cache
(:func:`~stream.models.onnx_cache.ensure_exports`, with its check against torch) and the same
scorer and encoder classes as production, and both runtimes are compared on random posts.

Tolerance: both runtimes compute in float32, so they differ only by summation order. Logits and
hidden states agree to ``1e-4`` absolute; every LM statistic (rank-based ones too: the tiny model's
logits are spread out by a large initialiser, so no near-tie can flip a rank) and every embedding to
``ATOL = RTOL = 1e-4``. On the real models the export check measured 2.2e-4 on SmolLM2's logits
(magnitude ~10-40) and 2.5e-6 on MiniLM's hidden states; the detector's probabilities differed by
at most 2.4e-6 on 48 posts (``CHORUS_TEST_REAL_ONNX=1`` runs that comparison here).
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("onnxscript", reason="exporting needs: pip install onnx onnxscript")

from detectors.aitext import onnx_backend as ob
from detectors.aitext.features import (
    EMBEDDING_DIM,
    LanguageModelScorer,
    SentenceEncoder,
    TorchCausalLM,
    pad_batch,
)
from detectors.aitext.metrics import LM_FEATURE_NAMES, post_statistics
from stream.models import onnx_cache as cache
from stream.models import onnx_export as export
from stream.models import onnx_sessions as sessions

ATOL = RTOL = 1e-4
LM_VOCAB = 101
ENC_VOCAB = 120


class CharTokenizer:
    """One token per character: enough tokenizer for the scorer and the encoder, with no files."""

    pad_token_id = 1
    eos_token_id = 2

    def __init__(self, vocab: int) -> None:
        self.vocab = vocab

    def __call__(
        self, texts: Sequence[str], add_special_tokens: bool = True, truncation: bool = False, max_length: int = 0
    ) -> dict[str, list[list[int]]]:
        ids = [[3 + ord(c) % (self.vocab - 3) for c in t] for t in texts]
        return {"input_ids": [i[:max_length] for i in ids] if truncation else ids}


def tiny_llama() -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=LM_VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        initializer_range=0.3,  # spread-out logits: no near-ties for a rounding error to flip a rank
        pad_token_id=1,
    )
    return LlamaForCausalLM(config).eval()


def tiny_bert() -> Any:
    from transformers import BertConfig, BertModel

    torch.manual_seed(1)
    config = BertConfig(
        vocab_size=ENC_VOCAB,
        hidden_size=EMBEDDING_DIM,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=160,
    )
    return BertModel(config).eval()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both tiny models exported through the production cache (and its check against torch)."""
    folder = tmp_path_factory.mktemp("onnx-tiny")
    lm, enc = tiny_llama(), tiny_bert()
    sources = {}
    for name in ("lm", "enc"):
        sources[name] = folder / f"{name}.weights"
        sources[name].write_bytes(name.encode() * 100)  # what the folder fingerprint is taken of
    specs = [
        cache.ExportSpec("tiny-llama", "lm", sources["lm"], lambda: lm),
        cache.ExportSpec("tiny-bert", "encoder", sources["enc"], lambda: enc),
    ]
    cache_dir = folder / "cache"
    paths = cache.ensure_exports(cache_dir, specs, progress=False)
    return {"lm": lm, "enc": enc, "paths": paths, "specs": specs, "cache": cache_dir}


def random_posts(rng: np.random.Generator, n: int) -> list[str]:
    """Random posts of 1 to 60 characters, a single character among them."""
    lengths = [1, *rng.integers(2, 60, size=n - 1)]
    return ["".join(chr(rng.integers(32, 127)) for _ in range(k)) for k in lengths]


def test_logits_and_lm_statistics_match_on_padded_batch(tiny: dict[str, Any]) -> None:
    rng = np.random.default_rng(0)
    # rows: long, medium, document-start + one token (a single-token post), document-start alone
    lengths = [17, 8, 2, 1]
    seqs = [[0, *rng.integers(3, LM_VOCAB, size=k - 1).tolist()] for k in lengths]
    ids, mask = pad_batch(seqs, pad_id=1)
    onnx_lm = ob.OnnxCausalLM(sessions.create_session(tiny["paths"]["lm"]))
    ref = TorchCausalLM(tiny["lm"])(ids, mask).numpy()
    got = onnx_lm(ids, mask)
    assert got.shape == ref.shape == (4, 17, LM_VOCAB)
    real = mask.astype(bool)
    np.testing.assert_allclose(got[real], ref[real], atol=1e-4, rtol=0)
    # statistics from the same function over either runtime's logits: padding handled once, there
    feats = {}
    for name, logits in (("torch", ref), ("onnx", got)):
        f, s = post_statistics(torch.from_numpy(logits), torch.from_numpy(ids), torch.from_numpy(mask))
        feats[name] = (f.numpy(), s.numpy())
    np.testing.assert_allclose(feats["onnx"][0], feats["torch"][0], atol=ATOL, rtol=RTOL, equal_nan=True)
    np.testing.assert_allclose(feats["onnx"][1], feats["torch"][1], atol=ATOL, rtol=RTOL, equal_nan=True)
    assert np.isfinite(feats["onnx"][0][2, LM_FEATURE_NAMES.index("lm_mean_loglik")])  # one scored token
    assert np.isnan(feats["onnx"][0][3]).all()  # nothing to score: NaN, never a made-up value


def test_scorer_gives_same_features_through_either_runtime(tiny: dict[str, Any]) -> None:
    texts = random_posts(np.random.default_rng(1), 24)
    onnx_forward = ob.OnnxCausalLM(sessions.create_session(tiny["paths"]["lm"]))
    results = {}
    for name, forward in (("torch", TorchCausalLM(tiny["lm"])), ("onnx", onnx_forward)):
        # a small budget and max_tokens force several length batches and some truncation
        scorer = LanguageModelScorer(CharTokenizer(LM_VOCAB), forward, max_tokens=40, token_budget=200)
        results[name] = scorer.score(texts)
        empty = scorer.score([])
        assert empty.features.shape == (0, len(LM_FEATURE_NAMES)) and empty.surprisal == []
    t, o = results["torch"], results["onnx"]
    assert t.truncated.any() and (t.truncated == o.truncated).all()
    np.testing.assert_allclose(o.features, t.features, atol=ATOL, rtol=RTOL, equal_nan=True)
    for st, so in zip(t.surprisal, o.surprisal, strict=True):
        np.testing.assert_allclose(so, st, atol=ATOL, rtol=RTOL)
    assert np.isfinite(o.features).all()  # the one-character post is scored (document-start token)


def test_embeddings_match_and_are_unit_length(tiny: dict[str, Any]) -> None:
    texts = random_posts(np.random.default_rng(2), 20)
    tok = CharTokenizer(ENC_VOCAB)
    onnx_enc = ob.OnnxEncoder(sessions.create_session(tiny["paths"]["encoder"]))
    torch_emb = SentenceEncoder(tok, tiny["enc"], token_budget=300).encode(texts)
    onnx_emb = SentenceEncoder(tok, forward=onnx_enc, token_budget=300).encode(texts)
    np.testing.assert_allclose(onnx_emb, torch_emb, atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(np.linalg.norm(onnx_emb, axis=1), 1.0, atol=1e-5)
    assert SentenceEncoder(tok, forward=onnx_enc).encode([]).shape == (0, EMBEDDING_DIM)
    # an empty padded batch never reaches the runtime
    assert onnx_enc(np.zeros((0, 0), np.int64), np.zeros((0, 0), np.int64)).shape == (0, 0, EMBEDDING_DIM)


def test_provider_is_checked_and_logged(tiny: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=sessions.log.name)
    session = sessions.create_session(tiny["paths"]["lm"], device="cpu", threads=1)
    assert session.get_providers() == [sessions.CPU_PROVIDER]
    assert f"onnxruntime runs on {sessions.CPU_PROVIDER}" in caplog.text
    # asking for CUDA: whatever runs is reported; without a usable GPU that is a warning, not silence
    caplog.clear()
    running = sessions.create_session(tiny["paths"]["lm"], device="cuda").get_providers()[0]
    if running == sessions.CPU_PROVIDER:
        assert any(r.levelno == logging.WARNING and "CUDA was requested" in r.message for r in caplog.records)
    else:
        assert f"onnxruntime runs on {running}" in caplog.text


def test_check_providers_warns_when_cuda_is_missing(caplog: pytest.LogCaptureFixture) -> None:
    class Session:
        def __init__(self, providers: list[str]) -> None:
            self.providers = providers

        def get_providers(self) -> list[str]:
            return self.providers

    cuda, cpu = sessions.CUDA_PROVIDER, sessions.CPU_PROVIDER
    assert sessions.check_providers(Session([cuda, cpu]), "cuda", "m") == cuda
    assert sessions.check_providers(Session([cpu]), "cuda", "m") == cpu
    assert "CUDA was requested" in caplog.text
    with pytest.raises(export.OnnxExportError, match="no execution provider"):
        sessions.check_providers(Session([]), "cpu", "m")
    assert sessions.requested_providers("cuda", [cuda, cpu]) == [cuda, cpu]
    assert sessions.requested_providers("cpu", [cuda, cpu]) == [cpu]


def test_cache_is_reused_and_keyed_on_the_weights(tiny: dict[str, Any], tmp_path: Path) -> None:
    import json

    def must_not_load() -> Any:
        raise AssertionError("a cached export was rebuilt")

    specs = [cache.ExportSpec(s.name, s.kind, s.source, must_not_load) for s in tiny["specs"]]
    assert cache.ensure_exports(tiny["cache"], specs, progress=False) == tiny["paths"]
    manifest = json.loads((tiny["paths"]["lm"].parent / cache.MANIFEST_FILE).read_text())
    assert manifest["max_abs_difference_vs_torch"] <= cache.VERIFY_ATOL
    assert not list(tiny["cache"].glob("*.tmp-*"))  # nothing half-written left behind
    # other weights -> another folder
    other = tmp_path / "other.weights"
    other.write_bytes(b"different weights")
    other_spec = cache.ExportSpec("tiny-llama", "lm", other, must_not_load)
    assert other_spec.folder(tiny["cache"]) != tiny["paths"]["lm"].parent


#: int8 (opt-in) against torch on the tiny model, a stated tolerance of its own (float32 keeps 1e-4):
#: dynamic quantisation rounds each projection's weights and inputs to 8 bits per tensor, which on a
#: 32-wide random model moves the logits (magnitude up to ~6.6, std ~1.65) by up to 0.66 and the
#: per-post mean log-likelihood (~-6 nats) by up to 0.12 nats (measured); the bounds below leave
#: margin and still fail a broken graph. The real model's agreement is measured on real posts
#: (detectors/aitext/onnx_backend.py, DEFAULT_QUANTIZE).
INT8_LOGIT_ATOL = 1.0
INT8_LOGLIK_ATOL = 0.25


def test_int8_export_is_quantised_from_the_float32_one_and_stays_close(tiny: dict[str, Any]) -> None:
    import dataclasses
    import json

    import onnx

    def must_not_load() -> Any:
        raise AssertionError("the int8 export must be quantised from the cached float32 one, not from torch")

    lm_spec = dataclasses.replace(tiny["specs"][0], load=must_not_load, quantize=True)
    path = cache.ensure_exports(tiny["cache"], [lm_spec], progress=False)["lm"]
    assert path.parent.name == tiny["paths"]["lm"].parent.name + f"-int8-{export.QUANTIZATION_VERSION}"
    manifest = json.loads((path.parent / cache.MANIFEST_FILE).read_text())
    assert manifest["quantization"] == export.QUANTIZATION and manifest["verified_against"] == "float32 export"
    assert manifest["min_logit_correlation_vs_float32"] >= cache.QUANTIZED_MIN_CORRELATION
    files = [cache.MANIFEST_FILE, export.MODEL_FILE, export.MODEL_FILE + ".data"]
    assert sorted(p.name for p in path.parent.iterdir()) == files
    graph = onnx.load(str(path)).graph
    ops = {n.op_type for n in graph.node}
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= ops  # the projections really are int8
    # ... the tied output projection too: no float MatMul reads a stored or transposed weight any more
    weights = {init.name for init in graph.initializer}
    transposed = {n.output[0] for n in graph.node if n.op_type == "Transpose" and n.input[0] in weights}
    assert not [n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights | transposed]
    assert cache.ensure_exports(tiny["cache"], [lm_spec], progress=False)["lm"] == path  # reused, not rebuilt

    texts = random_posts(np.random.default_rng(3), 24)
    results = {}
    for name, forward in (
        ("torch", TorchCausalLM(tiny["lm"])),
        ("int8", ob.OnnxCausalLM(sessions.create_session(path))),
    ):
        scorer = LanguageModelScorer(CharTokenizer(LM_VOCAB), forward, max_tokens=40, token_budget=200)
        results[name] = scorer.score(texts)
    ids, mask = pad_batch([[0, 5, 9, 40, 77, 3], [0, 12]], pad_id=1)
    real = mask.astype(bool)
    ref = TorchCausalLM(tiny["lm"])(ids, mask).numpy()[real]
    got = ob.OnnxCausalLM(sessions.create_session(path))(ids, mask)[real]
    assert np.abs(got - ref).max() <= INT8_LOGIT_ATOL
    col = LM_FEATURE_NAMES.index("lm_mean_loglik")
    loglik = {k: r.features[:, col] for k, r in results.items()}
    assert np.isfinite(loglik["int8"]).all()
    np.testing.assert_allclose(loglik["int8"], loglik["torch"], atol=INT8_LOGLIK_ATOL, rtol=0)


def test_int8_is_a_cpu_option() -> None:
    assert ob.quantize_for_device(True, "cpu") is True
    assert ob.quantize_for_device(True, "cuda") is False  # the int8 kernels would fall back to the CPU
    assert ob.quantize_for_device(True, "cuda:1") is False
    assert ob.quantize_for_device(False, "cpu") is False


def test_unknown_backend_is_refused_early() -> None:
    from detectors.aitext.detector import AiTextDetector
    from stream.models.aitext import FeatureExtractor, aitext_detector
    from stream.models.artifacts import load_head

    with pytest.raises(ValueError, match="unknown backend 'tensorrt'"):
        FeatureExtractor.load(backend="tensorrt")
    with pytest.raises(ValueError, match="unknown backend"):
        AiTextDetector(load_head(), backend="tensorrt", load_extractor=lambda: None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown backend"):
        aitext_detector(backend="tensorrt")


def test_export_command_is_registered() -> None:
    from stream.cli import aitext as aitext_cli

    parser = argparse.ArgumentParser()
    aitext_cli.register(parser.add_subparsers())
    args = parser.parse_args(["export-aitext", "--cache-dir", "/tmp/x", "--force"])
    assert args.func is aitext_cli._export_aitext and args.force and args.cache_dir == "/tmp/x"
    assert parser.parse_args(["score", "in.jsonl", "out.jsonl", "--backend", "onnx"]).backend == "onnx"


@pytest.mark.skipif(
    not os.environ.get("CHORUS_TEST_REAL_ONNX"),
    reason="set CHORUS_TEST_REAL_ONNX=1 to compare the real exports with torch (exports ~3 min on first use)",
)
def test_real_models_give_the_same_probabilities() -> None:
    import polars as pl

    from stream.models.aitext import aitext_detector

    texts = ["Just finished my morning run, the sunrise was worth it.", "ok", "", "هذا مثال على نص", "x" * 2000]
    posts = pl.DataFrame({"post_id": [str(i) for i in range(len(texts))], "text": texts})
    onnx, torch_ = (aitext_detector(device="cpu", backend=b).detect(posts) for b in ("onnx", "torch"))
    np.testing.assert_allclose(onnx.probability, torch_.probability, atol=1e-4, equal_nan=True)
    assert (onnx.flagged == torch_.flagged).all()
