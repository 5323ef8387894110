"""Exporting the AI-text detector's models to ONNX, checking an export, and quantising it to int8.

What is exported, and why only that:

* **SmolLM2** as ``(input_ids, attention_mask) -> logits [batch, seq, vocab]``. Every LM statistic
  still comes from :mod:`detectors.aitext.metrics` over those logits, so padding stays handled in
  one place (:func:`~detectors.aitext.metrics.shift_for_next_token`) for both runtimes.
* **MiniLM** as ``(input_ids, attention_mask) -> last_hidden_state``; mean pooling over real tokens
  and L2 normalisation stay in :class:`~detectors.aitext.features.SentenceEncoder`, shared with torch.
  With the fine-tuned adapter (:mod:`detectors.aitext.finetune`) the graph is the adapted encoder,
  LoRA merged into the weights (``W + (alpha / r) B A``), with a second output ``adapter_logit``:
  one session call gives the frozen states and the classifier logit.

Both have dynamic ``batch`` and ``seq`` axes (``torch.onnx.export(dynamo=True)`` with
``torch.export.Dim``), float32 weights, external-data files. Where the exports are kept, and when
they are rebuilt, is :mod:`stream.models.onnx_cache`'s job.

**int8 (opt-in, CPU).** :func:`quantize_causal_lm` quantises SmolLM2's weight matrix products, the tied
output projection included, dynamically to int8 (attention's activation products stay float32),
from the float32 export. Why it is opt-in: :data:`detectors.aitext.onnx_backend.DEFAULT_QUANTIZE`.

Exporting needs the ``onnx`` and ``onnxscript`` packages (``torch.onnx``'s dynamo exporter); serving
needs only ``onnxruntime`` (from ``onnxruntime-gpu``).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

MODEL_FILE = "model.onnx"

#: How :func:`quantize_causal_lm` quantises, recorded in the int8 export's manifest. Bump
#: :data:`QUANTIZATION_VERSION` with it: the int8 cache folder's name carries it.
QUANTIZATION = (
    "dynamic int8: every MatMul with a constant weight, the output projection included, QInt8 weights, "
    "QUInt8 activations, per-tensor"
)
QUANTIZATION_VERSION = "q2"


class OnnxExportError(RuntimeError):
    """An export could not be built or disagrees with torch; the message says what to do."""


def _require_export_packages() -> None:
    import importlib.util

    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise OnnxExportError(
            f"exporting to ONNX needs {', '.join(missing)}; run: pip install onnx onnxscript "
            "(never the 'onnxruntime' package: onnxruntime-gpu already provides the runtime)"
        )


def _wrappers() -> tuple[type, type]:
    """The two export wrappers, built lazily so importing this module does not import torch."""
    import torch

    class CausalLMLogits(torch.nn.Module):
        """``(input_ids, attention_mask) -> logits``: no KV cache, so the graph has one output."""

        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    class EncoderHiddenStates(torch.nn.Module):
        """``(input_ids, attention_mask) -> last_hidden_state``; pooling stays outside the graph."""

        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
            out = self.model(input_ids=input_ids, attention_mask=attention_mask)
            # the adapted encoder returns (last_hidden_state, adapter_logit) already
            return out if isinstance(out, tuple) else out.last_hidden_state

    return CausalLMLogits, EncoderHiddenStates


def probe_batch(vocab_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A small right-padded batch (lengths 9, 5 and 1) to trace with and to verify an export on.

    Three rows of different lengths keep the exporter from specialising batch or sequence to a
    constant (sizes 0 and 1 would be), and exercise padding and a single-token row.
    """
    rng = np.random.default_rng(seed)
    lengths = (9, 5, 1)
    ids = rng.integers(3, max(vocab_size, 4), size=(len(lengths), max(lengths)), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
    return ids, mask


@contextlib.contextmanager
def _quiet_exporter_logs() -> Iterator[None]:
    """Keep the exporter's hundreds of INFO lines (graph rewrites) and its torchvision notes off a
    command's log while it runs; the cache's progress bar says what is happening."""
    levels = {"onnxscript": logging.WARNING, "onnx_ir": logging.WARNING, "torch.onnx": logging.ERROR}
    saved = {name: logging.getLogger(name).level for name in levels}
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _export(wrapper: Any, path: Path, output_names: list[str], vocab_size: int) -> None:
    import torch

    _require_export_packages()
    ids, mask = probe_batch(vocab_size)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
    args = (torch.from_numpy(ids), torch.from_numpy(mask))
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings(), _quiet_exporter_logs():
        # both inputs share the batch and seq axes; the exporter says so once per axis, harmlessly
        warnings.filterwarnings("ignore", message="# The axis name", category=UserWarning)
        program = torch.onnx.export(
            wrapper.eval(),
            args,
            dynamo=True,
            input_names=["input_ids", "attention_mask"],
            output_names=output_names,
            dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
            verbose=False,
        )
    if program is None:  # only the legacy exporter returns None
        raise OnnxExportError("torch.onnx.export returned no program; torch >= 2.6 with dynamo=True is needed")
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(path), external_data=True)


def export_causal_lm(model: Any, path: Path | str) -> Path:
    """Export a transformers causal LM (any size, e.g. a tiny random Llama in tests) to ``path``."""
    causal_lm_logits, _ = _wrappers()
    path = Path(path)
    _export(causal_lm_logits(model), path, ["logits"], int(model.config.vocab_size))
    return path


def export_encoder(model: Any, path: Path | str) -> Path:
    """Export a transformers encoder (BERT-like) as ``last_hidden_state`` to ``path``; an adapted
    encoder (:func:`detectors.aitext.finetune.adapted_encoder`) adds the ``adapter_logit`` output."""
    _, encoder_hidden_states = _wrappers()
    path = Path(path)
    names = ["last_hidden_state", "adapter_logit"] if _is_adapted(model) else ["last_hidden_state"]
    _export(encoder_hidden_states(model), path, names, int(model.config.vocab_size))
    return path


def _is_adapted(model: Any) -> bool:
    return hasattr(model, "adapter")


def max_abs_difference(model: Any, session: Any, kind: str) -> float:
    """Largest |torch - ONNX| over the real tokens of the probe batch (padding rows are ignored)."""
    import torch

    ids, mask = probe_batch(int(model.config.vocab_size))
    with torch.inference_mode():
        out = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
    got = session.run(None, {"input_ids": ids, "attention_mask": mask})
    real = mask.astype(bool)
    if isinstance(out, tuple):  # adapted encoder: hidden states of real tokens, and the logit per row
        hidden, logit = (t.float().numpy() for t in out)
        return float(max(np.abs(hidden[real] - got[0][real]).max(), np.abs(logit - got[1]).max()))
    ref = (out.logits if kind == "lm" else out.last_hidden_state).float().numpy()
    return float(np.abs(ref[real] - got[0][real]).max())


def _stored_output_projection(source: Path, staging: Path) -> Path:
    """A copy of the float32 graph in which every ``MatMul`` reading ``Transpose(weight)`` reads a stored
    transposed weight instead, so the quantiser sees the output projection as a weight product.

    SmolLM2 ties its output projection to the token embedding: the export keeps one matrix and
    transposes it in the graph (folded only when a session is built), which hides it from
    ``quantize_dynamic``. The copy (float32, external data) lives in ``staging``; the caller removes it.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))  # with its external data: the weights are transposed here
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    transposes = {
        node.output[0]: node
        for node in graph.node
        if node.op_type == "Transpose" and node.input[0] in weights and len(weights[node.input[0]].dims) == 2
    }
    for node in graph.node:
        if node.op_type == "MatMul" and len(node.input) == 2 and node.input[1] in transposes:
            transpose = transposes[node.input[1]]
            name = f"{transpose.input[0]}.transposed"
            if name not in weights:
                matrix = numpy_helper.to_array(weights[transpose.input[0]])
                weights[name] = numpy_helper.from_array(np.ascontiguousarray(matrix.T), name)
                graph.initializer.append(weights[name])
            node.input[1] = name
    read = {name for node in graph.node for name in node.input}
    for output, transpose in transposes.items():
        if output not in read:
            graph.node.remove(transpose)
    staging.mkdir(parents=True, exist_ok=True)
    path = staging / MODEL_FILE
    onnx.save(model, str(path), save_as_external_data=True, location=MODEL_FILE + ".data")
    return path


def quantize_causal_lm(source: Path | str, path: Path | str) -> Path:
    """Dynamic int8 quantisation of an exported causal LM's weight matrix products into ``path``.

    Every ``MatMul`` whose second input is a stored weight is quantised: the q/k/v/o and MLP
    projections and the output projection over the vocabulary (a fifth of SmolLM2's work per token;
    see :func:`_stored_output_projection`). Attention's activation-by-activation products stay
    float32. The head that scores int8 statistics is trained on them (``aitext_head_int8.json``).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source, path = Path(source), Path(path)
    staging = path.parent / "float32-stored-projection"
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser's "consider pre-processing" notice, on the root logger
    try:
        untied = _stored_output_projection(source, staging)
        graph = onnx.load(str(untied), load_external_data=False).graph
        weights = {init.name for init in graph.initializer}
        nodes = [n.name for n in graph.node if n.op_type == "MatMul" and len(n.input) == 2 and n.input[1] in weights]
        if not nodes:
            raise OnnxExportError(f"{source} has no MatMul with a stored weight; nothing to quantise")
        quantize_dynamic(
            untied,
            path,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            nodes_to_quantize=nodes,
            per_channel=False,
            use_external_data_format=True,
        )
    finally:
        root.setLevel(level)
        shutil.rmtree(staging, ignore_errors=True)
    return path


def min_logit_correlation(reference: Any, session: Any, document_start_id: int = 0) -> float:
    """Smallest correlation, over the probe batch's real positions, between two LM sessions' logits.

    Rows start with the document-start token, as the scorer sends them: the first position of a
    language model carries activations far outside the rest (an "attention sink"), which int8
    rounds away when that position is an ordinary token.
    """
    ids, mask = probe_batch(int(reference.get_outputs()[0].shape[-1]))
    ids[:, 0] = document_start_id
    feeds = {"input_ids": ids, "attention_mask": mask}
    real = mask.astype(bool)
    a, b = reference.run(None, feeds)[0][real], session.run(None, feeds)[0][real]
    return float(min(np.corrcoef(x, y)[0, 1] for x, y in zip(a, b, strict=True)))
