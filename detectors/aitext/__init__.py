"""AI-text detector: is a post written by a language model?

Layers, each usable alone:

* :mod:`~detectors.aitext.metrics` — zero-shot LM statistics as pure tensor functions;
* :mod:`~detectors.aitext.text` — normalisation (URLs, @mentions), triage of bad input, stylometry;
* :mod:`~detectors.aitext.features` — batched feature extraction (SmolLM2-135M statistics, MiniLM
  embeddings) over models handed in, run by torch or by ONNX Runtime sessions
  (:mod:`~detectors.aitext.onnx_backend`);
* :mod:`~detectors.aitext.head` — the trained, calibrated head and its committed artifact;
* :mod:`~detectors.aitext.detector` — :class:`AiTextDetector`, the Chorus detector protocol;
* :mod:`~detectors.aitext.aggregate` — per-account running estimates.

Importing this package loads no model, and nothing here reads an environment variable or, when
scoring, a file: :mod:`stream.models` locates, checks and loads the weights, heads and ONNX exports
and hands them in. (``AiTextHead.save``/``load`` and ``EncoderAdapter.save``/``load`` still write and
read their artifacts for the training commands.)
"""

from __future__ import annotations

from typing import Any

#: public name -> module that defines it; imported on first use so that the feature code can run
#: where polars is absent (a lent GPU machine running the benchmark) and imports stay cheap.
_EXPORTS = {
    "AiTextDetector": "detectors.aitext.detector",
    "AiTextScores": "detectors.aitext.detector",
    "AiTextHead": "detectors.aitext.head",
    "DEFAULT_ARTIFACT": "detectors.aitext.head",
    "RunningAccountEstimate": "detectors.aitext.aggregate",
    "account_machine_share": "detectors.aitext.aggregate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'detectors.aitext' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
