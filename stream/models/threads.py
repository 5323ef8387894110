"""CPU threads per model call, for torch and for ONNX Runtime, from the configuration.

The default (:data:`detectors.aitext.models.DEFAULT_CPU_THREADS`, one thread) and why it was chosen
live with the models; the ``[aitext]`` settings ``torch_threads`` / ``ort_threads``
(``$CHORUS_TORCH_THREADS`` / ``$CHORUS_ORT_THREADS``) and a command's ``--threads`` override it.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from detectors.aitext.models import DEFAULT_CPU_THREADS
from stream.models.settings import aitext_settings

if TYPE_CHECKING:
    from stream.config import AiTextConfig

log = logging.getLogger(__name__)

RUNTIMES = ("torch", "onnx")


def cpu_threads(threads: int | None = None, runtime: str = "torch", settings: AiTextConfig | None = None) -> int:
    """Threads for ``runtime``: the argument, else the settings' ``torch_threads`` / ``ort_threads``,
    else :data:`~detectors.aitext.models.DEFAULT_CPU_THREADS`."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if threads:
        return int(threads)
    section = aitext_settings(settings)
    return int((section.torch_threads if runtime == "torch" else section.ort_threads) or DEFAULT_CPU_THREADS)


def configure_torch_threads(threads: int | None = None, settings: AiTextConfig | None = None) -> int:
    """Set torch's intra-op threads (process-wide, so a command calls this once, not the detector).

    With more than one thread, OpenMP's waiting threads should sleep rather than spin
    (``OMP_WAIT_POLICY=PASSIVE``), but OpenMP reads that from the environment when torch is first
    imported: it is not a Chorus setting, so it is looked at here only to warn when it is missing.
    """
    import torch

    n = cpu_threads(threads, "torch", settings)
    if n > 1 and os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
        log.warning(
            "torch runs %d threads with spinning OpenMP waits; start the process with OMP_WAIT_POLICY=PASSIVE", n
        )
    torch.set_num_threads(n)
    return n
