"""The serving side of the detectors' models: where their files are, checking them, loading them.

``detectors/`` is pure (arrays, frames and graphs in, scores out): it reads no environment variable
and opens no file. Everything that does lives here and hands loaded objects in:

* :mod:`~stream.models.settings` — the ``[aitext]`` settings, from the configuration object;
* :mod:`~stream.models.threads` — CPU threads per model call (process-wide for torch);
* :mod:`~stream.models.weights` — the weight packages, their SHA-256 checks, the loaded models;
* :mod:`~stream.models.artifacts` — which head file to serve, and its encoder adapter, checked;
* :mod:`~stream.models.onnx_export` / :mod:`~stream.models.onnx_cache` /
  :mod:`~stream.models.onnx_sessions` — exporting to ONNX, the export cache, runtime sessions;
* :mod:`~stream.models.aitext` — the assembled AI-text detector (what the registry builds).

Importing this package loads no model and imports no torch.
"""
