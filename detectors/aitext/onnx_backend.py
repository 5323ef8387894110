"""ONNX Runtime as the AI-text detector's second runtime: sessions handed in, run as feature backends.

Why a second runtime: onnxruntime-gpu serves the same graphs on the CUDA provider when a GPU is
there and on the CPU provider otherwise, without torch's per-operator dispatch, and a worker loads
the exported graphs in ~2.5 s instead of de-quantising SmolLM2's GGUF in ~30 s. In float32 it is
*not* faster than torch on the 2-core CPU: both spend the time in the same matrix products, close
to the AVX2 peak (~1.0x CPU time per post, ``bench/bench_aitext.py --onnx``).

The graphs (what :mod:`stream.models.onnx_export` exports):

* **SmolLM2**: ``(input_ids, attention_mask) -> logits [batch, seq, vocab]``; every LM statistic
  still comes from :mod:`detectors.aitext.metrics` over those logits, for both runtimes.
* **MiniLM**: ``(input_ids, attention_mask) -> last_hidden_state``; with the fine-tuned adapter a
  second output ``adapter_logit``. Pooling stays in :class:`~detectors.aitext.features.SentenceEncoder`.

This module only runs sessions it is given (:class:`OnnxCausalLM`, :class:`OnnxEncoder`); exporting,
the export cache and building sessions from files are the serving side's (:mod:`stream.models`).

**int8 (opt-in, CPU).** ``quantize=True`` serves SmolLM2 with its weight matrix products, the tied
output projection included, dynamically quantised to int8 (attention's activation products stay
float32). It is 1.6x faster per CPU-second; it moves the LM statistics, so it is scored by its own
head, which ranks a little worse (see :data:`DEFAULT_QUANTIZE`).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Serve SmolLM2 in int8 when the configuration does not say otherwise (``[aitext] quantize``, or
#: ``quantize_default`` from ``$CHORUS_AITEXT_QUANTIZE``).
#: Off: int8 is faster but ranks worse. Measured on the 2-core machine (``bench/bench_aitext.py
#: --onnx``, 512 posts, interleaved): the whole extractor at 71.6 ms CPU per post in int8 against
#: 114.1 ms in float32 torch and 110.1 ms in float32 ONNX (1.59x torch; the goal was 1.5x).
#: The output projection is a fifth of SmolLM2's work per token; leaving it in float32 made int8
#: only 1.41x. Int8 moves the statistics, so it has its own head (``aitext_head_int8.json``, same
#: rows and adapter; ``chorus train-aitext --backend onnx --quantize``). Against the float32 head:
#: unseen accounts' AUROC 0.714 vs 0.739 (854 posts) and 0.709 vs 0.725 (their 454 validation posts),
#: seen accounts' 0.967 vs 0.971, and the same 2.6% FPR at the default threshold on unseen accounts.
#: Before: the projections alone in int8, scored by the float32 head: 1.41x, AUROC 0.710 on the 454
#: posts but off that head's calibration. Worse: per-channel weights (0.636), MLP down-projections
#: left in float32.
DEFAULT_QUANTIZE = False


def quantize_for_device(quantize: bool, device: str = "cpu") -> bool:
    """Whether SmolLM2 is served in int8: ``quantize``, but never on CUDA, where the int8 kernels would
    fall back to the CPU (said in a warning)."""
    if quantize and device.startswith("cuda"):
        log.warning("int8 quantisation is a CPU option; serving SmolLM2 in float32 on %s", device)
        return False
    return bool(quantize)


class OnnxCausalLM:
    """:class:`~detectors.aitext.features.LogitsBackend` over an ONNX Runtime session (float32 logits)."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.provider = str(session.get_providers()[0])
        self.vocab_size = int(session.get_outputs()[0].shape[-1])

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        if input_ids.size == 0:  # the scorer never asks, but an empty batch must not reach the runtime
            return np.zeros((*input_ids.shape, self.vocab_size), dtype=np.float32)
        return self.session.run(None, {"input_ids": input_ids, "attention_mask": attention_mask})[0]


class OnnxEncoder:
    """Hidden-states backend for :class:`~detectors.aitext.features.SentenceEncoder` over a session.

    A session of the adapted encoder (two outputs) returns ``(last_hidden_state, adapter_logit)``.
    """

    def __init__(self, session: Any) -> None:
        self.session = session
        self.provider = str(session.get_providers()[0])
        self.hidden_size = int(session.get_outputs()[0].shape[-1])
        self.adapted = len(session.get_outputs()) == 2

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> Any:
        if input_ids.size == 0:
            hidden = np.zeros((*input_ids.shape, self.hidden_size), dtype=np.float32)
            return (hidden, np.zeros(input_ids.shape[0], dtype=np.float32)) if self.adapted else hidden
        out = self.session.run(None, {"input_ids": input_ids, "attention_mask": attention_mask})
        return (out[0], out[1]) if self.adapted else out[0]
