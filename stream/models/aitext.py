"""The AI-text detector over the installed models: what the registry and ``chorus score`` serve.

The detector code (:mod:`detectors.aitext`) is handed everything it runs on: the head read from its
file (:mod:`stream.models.artifacts`), and a loader that builds its :class:`FeatureExtractor` over
the installed weights (:mod:`stream.models.weights`) or the ONNX export cache
(:mod:`stream.models.onnx_cache`), on the first batch, so building a detector loads no model. Every
setting comes from the ``[aitext]`` section of the configuration object handed in
(:mod:`stream.models.settings` says what happens when none is).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from detectors.aitext import features
from detectors.aitext.detector import AiTextDetector
from detectors.aitext.features import BACKENDS, LanguageModelScorer, LogitsBackend, SentenceEncoder, TorchCausalLM
from detectors.aitext.finetune import DEFAULT_ADAPTER
from detectors.aitext.models import SMOLLM2_DOCUMENT_START_ID, resolve_device
from detectors.aitext.onnx_backend import OnnxCausalLM, OnnxEncoder, quantize_for_device
from stream.models import weights
from stream.models.artifacts import LM_STAGE_ARTIFACT, load_head, verified_adapter, with_lm_stage
from stream.models.onnx_cache import default_cache_dir, default_specs, ensure_exports
from stream.models.onnx_sessions import create_session
from stream.models.settings import aitext_settings
from stream.models.threads import cpu_threads

if TYPE_CHECKING:
    from stream.config import AiTextConfig


@functools.lru_cache(maxsize=4)
def load_onnx_models(
    device: str = "cpu",
    cache_dir: Path | str | None = None,
    threads: int | None = None,
    adapter: Path | None = None,
    quantize: bool = False,
    settings: AiTextConfig | None = None,
) -> tuple[OnnxCausalLM, OnnxEncoder]:
    """Sessions for SmolLM2 (int8 with ``quantize``) and MiniLM (with ``adapter`` merged in when
    given) from the cache, exporting them first if missing.

    ``cache_dir`` and ``threads`` default to the settings' (``cache_dir``, ``ort_threads``). Cached
    per process like the torch models: a session holds the weights (~600 MB together), and training
    builds one extractor per text normalisation. Resolve ``quantize`` for the device
    (:func:`~detectors.aitext.onnx_backend.quantize_for_device`) before calling.
    """
    settings = aitext_settings(settings)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir(settings)
    threads = cpu_threads(threads, "onnx", settings)
    paths = ensure_exports(cache, default_specs(adapter, quantize=quantize))
    return (
        OnnxCausalLM(create_session(paths["lm"], device, threads)),
        OnnxEncoder(create_session(paths["encoder"], device, threads)),
    )


def resolve_adapter(adapter: Path | str | None) -> Path | None:
    """``"default"`` -> the committed adapter if there is one; a path must exist; None stays None."""
    if adapter is None:
        return None
    if adapter == "default":
        return DEFAULT_ADAPTER if DEFAULT_ADAPTER.is_file() else None
    path = Path(adapter)
    if not path.is_file():
        raise FileNotFoundError(f"no encoder adapter at {path}; train one with: chorus train-aitext")
    return path


class FeatureExtractor(features.FeatureExtractor):
    """:class:`detectors.aitext.features.FeatureExtractor` with :meth:`load`: one over the installed models."""

    @classmethod
    def load(
        cls,
        device: str = "cpu",
        normalise: bool = True,
        backend: str = "torch",
        adapter: Path | str | None = "default",
        quantize: bool = False,
        language_model: bool = True,
        strip_markers: bool = False,
        settings: AiTextConfig | None = None,
    ) -> FeatureExtractor:
        """Extractor over the offline models (cached per process).

        ``backend="torch"`` runs transformers; ``backend="onnx"`` runs ONNX Runtime sessions over the
        exports in the cache (:func:`~stream.models.onnx_cache.ensure_exports` builds them on first
        use) and loads only the tokenizers, not the torch weights.

        ``adapter``: the fine-tuned encoder adapter (:mod:`detectors.aitext.finetune`) whose logit
        fills ``enc_adapter_logit``: ``"default"`` is the committed one when present, ``None`` runs
        the frozen encoder alone (that column is then NaN).

        ``quantize``: serve SmolLM2 in int8 (ONNX on CPU only). Faster, but it moves the LM
        statistics: see :data:`detectors.aitext.onnx_backend.DEFAULT_QUANTIZE`.

        ``language_model=False`` loads the encoder alone (a head without LM features, such as the
        modern head, needs no SmolLM2: ~10x faster per post); ``strip_markers`` is passed through.
        ``settings``: the ``[aitext]`` section for the ONNX cache folder and threads.
        """
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        adapter_path = resolve_adapter(adapter)
        if backend == "onnx":
            quantize = quantize_for_device(quantize, device)
            lm_forward, enc_forward = load_onnx_models(
                device, adapter=adapter_path, quantize=quantize, settings=settings
            )
            lm = (
                LanguageModelScorer(
                    weights.load_language_tokenizer(), lm_forward, document_start_id=SMOLLM2_DOCUMENT_START_ID
                )
                if language_model
                else None
            )
            encoder = SentenceEncoder(weights.load_encoder_tokenizer(), forward=enc_forward)
            return cls(lm, encoder, normalise=normalise, strip_markers=strip_markers)
        if quantize:
            raise ValueError("quantize=True serves SmolLM2 in int8 through ONNX Runtime; use backend='onnx'")
        lm = None
        if language_model:
            tokenizer, model = weights.load_language_model(device)
            forward: LogitsBackend = TorchCausalLM(model)
            lm = LanguageModelScorer(tokenizer, forward, document_start_id=SMOLLM2_DOCUMENT_START_ID)
        enc_tok, enc_model = weights.load_encoder(device)
        if adapter_path is not None:
            enc_model = weights.load_adapted_encoder(device, adapter_path)
        return cls(lm, SentenceEncoder(enc_tok, enc_model), normalise=normalise, strip_markers=strip_markers)


def served_quantize(settings: AiTextConfig, backend: str) -> bool:
    """Whether ``backend`` serves SmolLM2 in int8 under ``settings``: ``quantize``, else the process-wide
    ``quantize_default`` (``$CHORUS_AITEXT_QUANTIZE``); only ONNX Runtime has an int8 path."""
    return backend == "onnx" and (settings.quantize or settings.quantize_default)


def aitext_detector(
    settings: AiTextConfig | None = None, *, device: str | None = None, backend: str | None = None
) -> AiTextDetector:
    """The detector ``settings`` describe, ``device`` and ``backend`` overriding theirs (command flags).

    Reads the head now (the modern head unless ``artifact`` names one; the int8 TweepFake head when
    SmolLM2 is served in int8) and loads the models on the first batch: the head's encoder adapter,
    checked against its hash, and SmolLM2 only for a head with LM features.
    """
    settings = aitext_settings(settings)
    backend = backend or settings.backend
    device = resolve_device(device or settings.device)
    quantize = quantize_for_device(served_quantize(settings, backend), device)
    head = load_head(settings.artifact, int8=quantize)
    if settings.lm_stage:
        head = with_lm_stage(head, settings.lm_stage_artifact or LM_STAGE_ARTIFACT)

    def load_extractor() -> FeatureExtractor:
        return FeatureExtractor.load(
            device=device,
            backend=backend,
            adapter=verified_adapter(head),
            quantize=quantize,
            language_model=head.uses_language_model or settings.evidence_tokens,
            strip_markers=head.strips_markers,
            settings=settings,
        )

    return AiTextDetector(
        head,
        device=device,
        backend=backend,
        quantize=quantize,
        load_extractor=load_extractor,
        evidence_tokens=settings.evidence_tokens,
    )
