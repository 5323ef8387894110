"""The fine-tuned encoder adapter: merged = unmerged, frozen embedding intact, ONNX = torch, it learns.

Tiny random-weight BERTs (2 layers, MiniLM's 384-wide output) stand in for MiniLM, so this runs in
seconds without the model packages. The committed adapter itself is checked in
``tests/test_aitext_head.py`` (the head names it with its hash).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from detectors.aitext.features import EMBEDDING_DIM, SentenceEncoder, pad_batch
from detectors.aitext.finetune import (
    AdapterConfig,
    EncoderAdapter,
    adapted_encoder,
    compute_trunk,
    cross_fit_adapter,
    predict_cached,
)
from stream.models.weights import read_adapter, save_adapter

VOCAB = 120
CONFIG = AdapterConfig(adapted_layers=1, rank=4, alpha=8.0, epochs=1, batch_size=8)


class CharTokenizer:
    pad_token_id = 0

    def __call__(self, texts: list[str], truncation: bool = False, max_length: int = 0) -> dict[str, Any]:
        ids = [[2 + ord(c) % (VOCAB - 2) for c in t] for t in texts]
        return {"input_ids": [i[:max_length] for i in ids] if truncation else ids}


def tiny_bert() -> Any:
    from transformers import BertConfig, BertModel

    torch.manual_seed(1)
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=EMBEDDING_DIM,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=160,
    )
    return BertModel(config).eval()


def random_adapter(encoder: Any) -> EncoderAdapter:
    """An adapter with non-zero LoRA factors (a fresh one has B = 0 and changes nothing)."""
    rng = np.random.default_rng(0)
    module = cross_fit_adapter.__globals__["_make_adapter_module"](encoder, CONFIG)
    adapter = EncoderAdapter.from_module(module, CONFIG, {"what": "test"})
    adapter.lora_ = {k: rng.normal(0, 0.05, v.shape).astype(np.float32) for k, v in adapter.lora_.items()}
    adapter.classifier_weight_ = rng.normal(0, 0.1, EMBEDDING_DIM).astype(np.float32)
    return adapter


def _batch(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return pad_batch([rng.integers(2, VOCAB, size=k).tolist() for k in (9, 4, 1)], pad_id=0)


def test_adapted_encoder_keeps_the_frozen_states_and_merging_changes_nothing(tmp_path: Path) -> None:
    enc = tiny_bert()
    adapter = random_adapter(enc)
    path = save_adapter(adapter, tmp_path / "adapter.safetensors")
    assert path.stat().st_size < 200_000
    loaded = read_adapter(path)
    assert loaded.config == CONFIG and loaded.training == {"what": "test"}
    ids, mask = _batch(np.random.default_rng(0))
    model = adapted_encoder(enc, loaded)
    with torch.inference_mode():
        hidden, _ = model(torch.from_numpy(ids), torch.from_numpy(mask))
        ref = enc(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state
    real = torch.from_numpy(mask).bool()
    assert torch.equal(hidden[real], ref[real])  # the embedding the campaign detector reuses is untouched
    # LoRA merged into the weights == LoRA applied on the side (cached trunk path used in training)
    unmerged = loaded.build_module(enc, merge=False)
    cache = compute_trunk(CharTokenizer(), enc, ["abcdefghi", "abcd", "a"], CONFIG.adapted_layers)
    side = predict_cached(unmerged, enc, cache, [0, 1, 2])
    with torch.inference_mode():
        ids2, mask2 = pad_batch(CharTokenizer()(["abcdefghi", "abcd", "a"])["input_ids"], 0)
        _, merged = model(torch.from_numpy(ids2), torch.from_numpy(mask2))
    np.testing.assert_allclose(merged.numpy(), side, atol=1e-3)  # trunk states are cached in float16


def test_sentence_encoder_returns_embedding_and_logit_in_one_call() -> None:
    enc = tiny_bert()
    model = adapted_encoder(enc, random_adapter(enc))
    texts = ["hello there", "x", "a longer post with more characters in it"]
    plain = SentenceEncoder(CharTokenizer(), enc).encode_with_logit(texts)
    adapted = SentenceEncoder(CharTokenizer(), model).encode_with_logit(texts)
    np.testing.assert_allclose(adapted[0], plain[0], atol=1e-6)
    assert np.isnan(plain[1]).all() and np.isfinite(adapted[1]).all()
    empty = SentenceEncoder(CharTokenizer(), model).encode_with_logit([])
    assert empty[0].shape == (0, EMBEDDING_DIM) and empty[1].shape == (0,)


def test_onnx_export_merges_the_adapter(tmp_path: Path) -> None:
    pytest.importorskip("onnxscript", reason="exporting needs: pip install onnx onnxscript")
    from detectors.aitext import onnx_backend as ob
    from stream.models import onnx_cache as cache
    from stream.models import onnx_sessions as sessions

    enc = tiny_bert()
    model = adapted_encoder(enc, random_adapter(enc))
    source, adapter_file = tmp_path / "enc.weights", tmp_path / "adapter.bin"
    source.write_bytes(b"weights")
    adapter_file.write_bytes(b"adapter")
    spec = cache.ExportSpec("tiny-bert-adapted", "encoder", source, lambda: model, adapter_file)
    paths = cache.ensure_exports(tmp_path / "cache", [spec], progress=False)
    assert spec.folder(tmp_path / "cache") != cache.ExportSpec("x", "encoder", source, lambda: model).folder(tmp_path)
    onnx_enc = ob.OnnxEncoder(sessions.create_session(paths["encoder"]))
    assert onnx_enc.adapted
    texts = ["hello there", "x", "a longer post with more characters in it", "mid size"]
    t_emb, t_logit = SentenceEncoder(CharTokenizer(), model).encode_with_logit(texts)
    o_emb, o_logit = SentenceEncoder(CharTokenizer(), forward=onnx_enc).encode_with_logit(texts)
    np.testing.assert_allclose(o_emb, t_emb, atol=1e-4)
    np.testing.assert_allclose(o_logit, t_logit, atol=1e-4)
    hidden, logit = onnx_enc(np.zeros((0, 0), np.int64), np.zeros((0, 0), np.int64))
    assert hidden.shape == (0, 0, EMBEDDING_DIM) and logit.shape == (0,)


def test_cross_fit_learns_a_separable_task_with_out_of_fold_logits() -> None:
    enc = tiny_bert()
    rng = np.random.default_rng(0)
    # machine posts repeat one letter, human posts mix letters; 6 accounts of 12 posts
    texts, labels, groups = [], [], []
    for account in range(6):
        machine = account % 2
        for _ in range(12):
            n = int(rng.integers(5, 20))
            texts.append("z" * n if machine else "".join(chr(rng.integers(97, 122)) for _ in range(n)))
            labels.append(machine)
            groups.append(f"acct{account}")
    cache = compute_trunk(CharTokenizer(), enc, texts, CONFIG.adapted_layers)
    config = AdapterConfig(**{**CONFIG.__dict__, "learning_rate": 5e-3})
    fit = cross_fit_adapter(
        enc, cache, np.array(labels), np.array(groups), np.arange(len(texts)), config, folds=3, log=lambda _: None
    )
    assert fit.oof_logit.shape == (len(texts),) and np.isfinite(fit.oof_logit).all()
    assert fit.cv["chosen_epochs"] in (1, 2) and fit.cv["out_of_fold_auroc"] > 0.9
    assert fit.adapter.training["training_rows"] == len(texts)
