"""ONNX Runtime sessions over exported graphs: the provider asked for, the one really running, threads.

A session is built here, from a file, and handed to the detector's runtime classes
(:class:`~detectors.aitext.onnx_backend.OnnxCausalLM`, :class:`~detectors.aitext.onnx_backend.OnnxEncoder`),
which only run it.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stream.models.onnx_export import OnnxExportError
from stream.models.threads import cpu_threads

if TYPE_CHECKING:
    from stream.config import AiTextConfig

log = logging.getLogger(__name__)

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


def requested_providers(device: str, available: list[str] | None = None) -> list[str]:
    """Execution providers in order of preference: CUDA first for a CUDA device, CPU always last."""
    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
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


def create_session(
    path: Path | str, device: str = "cpu", threads: int | None = None, settings: AiTextConfig | None = None
) -> Any:
    """An ``InferenceSession`` for ``path`` on the best provider, with the provider checked and logged.

    Intra-op threads: ``threads``, else the settings' ``ort_threads`` (:func:`~stream.models.threads.cpu_threads`);
    one inter-op thread and sequential execution: the graphs are a chain of matrix products, so
    parallel branches buy nothing. Intra-op threads do not spin while waiting for work, so a second
    thread does not burn a core a neighbour needs.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = cpu_threads(threads, "onnx", settings)
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
