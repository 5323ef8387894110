"""Serving the AI-text detector: settings come from the configuration object, files are opened in stream.models.

``detectors/`` is pure (issue #13): it reads no environment variable and opens no file (heads and
adapters are read and written by :mod:`stream.models`, :data:`FILE_OPERATIONS_ALLOWED` is empty). The
``CHORUS_*`` variables documented for the detector are read by :meth:`ChorusConfig.load` and reach
the models through the registry. Nothing here loads a model: the loader the registry hands the
detector is replaced by a recorder, and the head files are the committed ones.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path
from typing import Any

import pytest

from stream.config import AiTextConfig, ChorusConfig, ConfigError

ROOT = Path(__file__).resolve().parents[1]


# --- the documented variables, read once, by the configuration loader --------------------------------


def test_documented_variables_are_read_by_the_configuration_loader(tmp_path: Path) -> None:
    env = {
        "CHORUS_AITEXT_QUANTIZE": "1",
        "CHORUS_CACHE": str(tmp_path / "cache"),
        "CHORUS_TORCH_THREADS": "2",
        "CHORUS_ORT_THREADS": "3",
    }
    settings = ChorusConfig.load(env=env).aitext
    assert (settings.quantize_default, settings.cache_dir) == (True, str(tmp_path / "cache"))
    assert (settings.torch_threads, settings.ort_threads) == (2, 3)
    assert settings.quantize is False and settings.backend == "torch"  # torch ignores the int8 switch: no error
    # the section's own variables win over the older names; a file is overridden by both
    path = tmp_path / "chorus.toml"
    path.write_text("[aitext]\nort_threads = 4\ntorch_threads = 5\n")
    config = ChorusConfig.load(path, env={"CHORUS_ORT_THREADS": "6", "CHORUS_AITEXT__ORT_THREADS": "7"})
    assert (config.aitext.ort_threads, config.aitext.torch_threads) == (7, 5)
    written = tmp_path / "written.toml"
    written.write_text(ChorusConfig.load(env=env).to_toml())  # what worker children are handed
    assert ChorusConfig.load(written, env={}).aitext == settings


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("on", True), ("yes", True), ("0", False),
                                                 ("off", False), ("", False)])  # fmt: skip
def test_the_int8_switch_keeps_its_spellings(value: str, expected: bool) -> None:
    assert ChorusConfig.load(env={"CHORUS_AITEXT_QUANTIZE": value}).aitext.quantize_default is expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CHORUS_AITEXT_QUANTIZE": "maybe"}, "aitext.quantize_default = 'maybe' is not a valid bool"),
        ({"CHORUS_TORCH_THREADS": "two"}, "aitext.torch_threads = 'two' is not a valid int"),
        ({"CHORUS_ORT_THREADS": "-1"}, "use 0 \\(the default\\) or more"),
    ],
)
def test_bad_values_of_the_documented_variables_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ChorusConfig.load(env=env)


def test_defaults_are_the_detectors_own() -> None:
    from detectors.aitext.models import DEFAULT_CPU_THREADS
    from detectors.aitext.onnx_backend import DEFAULT_QUANTIZE
    from stream.models.threads import cpu_threads

    settings = AiTextConfig()
    assert settings.quantize_default is DEFAULT_QUANTIZE
    assert cpu_threads(None, "torch", settings) == cpu_threads(None, "onnx", settings) == DEFAULT_CPU_THREADS
    threads = AiTextConfig(torch_threads=2, ort_threads=3)
    assert (cpu_threads(None, "torch", threads), cpu_threads(None, "onnx", threads)) == (2, 3)
    assert cpu_threads(4, "onnx", threads) == 4  # a --threads flag wins
    with pytest.raises(ValueError, match="unknown runtime"):
        cpu_threads(None, "tensorrt", settings)


def test_the_onnx_cache_folder_follows_the_settings(tmp_path: Path) -> None:
    from stream.models.onnx_cache import default_cache_dir

    assert default_cache_dir(AiTextConfig(cache_dir=str(tmp_path))) == tmp_path / "onnx"
    assert default_cache_dir(AiTextConfig(cache_dir="~/x")) == Path.home() / "x" / "onnx"
    assert default_cache_dir(AiTextConfig()) == Path.home() / ".cache" / "chorus" / "onnx"
    from_env = ChorusConfig.load(env={"CHORUS_CACHE": str(tmp_path / "c")}).aitext
    assert default_cache_dir(from_env) == tmp_path / "c" / "onnx"


def test_without_a_configuration_object_the_process_configuration_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """A command without ``--config`` (or a benchmark) gets what ``ChorusConfig.load`` reads, as every command."""
    from stream.models.settings import aitext_settings
    from stream.models.threads import cpu_threads

    monkeypatch.delenv("CHORUS_CONFIG", raising=False)
    monkeypatch.setenv("CHORUS_ORT_THREADS", "3")
    assert aitext_settings().ort_threads == 3 and cpu_threads(None, "onnx") == 3
    given = AiTextConfig(ort_threads=2)
    assert aitext_settings(given) is given and cpu_threads(None, "onnx", given) == 2  # handed in: no re-read


def test_int8_is_served_by_the_onnx_backend_alone() -> None:
    from stream.models.aitext import served_quantize

    switch = AiTextConfig(quantize_default=True)
    assert served_quantize(switch, "onnx") and not served_quantize(switch, "torch")
    assert served_quantize(AiTextConfig(backend="onnx", quantize=True), "onnx")
    assert not served_quantize(AiTextConfig(backend="onnx", quantize=True), "torch")  # chorus score --backend torch
    assert not served_quantize(AiTextConfig(), "onnx")


# --- the registry hands the settings down; the detector receives its head and its models ----------------


class RecordingLoad:
    """Stands in for ``FeatureExtractor.load``: records what the detector's loader asked for."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> Any:
        from detectors.aitext.features import FeatureExtractor

        self.calls.append(kwargs)
        return FeatureExtractor(lm=None, encoder=None)


@pytest.fixture
def recording_load(monkeypatch: pytest.MonkeyPatch) -> RecordingLoad:
    from stream.models import aitext

    record = RecordingLoad()
    monkeypatch.setattr(aitext.FeatureExtractor, "load", record)
    return record


def test_the_registry_hands_the_configuration_to_the_models(
    recording_load: RecordingLoad, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from detectors.aitext.head import INT8_ARTIFACT
    from stream.pipeline.detectors import build_detectors

    env = {"CHORUS_AITEXT__BACKEND": "onnx", "CHORUS_AITEXT__DEVICE": "cpu", "CHORUS_AITEXT_QUANTIZE": "1",
           "CHORUS_CACHE": str(tmp_path), "CHORUS_ORT_THREADS": "2"}  # fmt: skip
    config = ChorusConfig.load(env=env)
    [detector] = build_detectors(("aitext",), config)
    assert (detector.backend, detector.device, detector.quantize) == ("onnx", "cpu", True)
    assert detector.head.path == INT8_ARTIFACT  # the int8 switch picks the head fitted on int8 statistics
    assert recording_load.calls == []  # building a detector loads no model

    def no_second_read(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the configuration was read again after the worker was given it")

    monkeypatch.setattr(ChorusConfig, "load", no_second_read)
    detector.extractor  # noqa: B018 (the first batch's load)
    detector.extractor  # noqa: B018 (loaded once)
    [call] = recording_load.calls
    assert call["settings"] is config.aitext  # cache folder and threads travel with the object
    assert (call["device"], call["backend"], call["quantize"]) == ("cpu", "onnx", True)
    assert call["adapter"] == INT8_ARTIFACT.with_name("aitext_encoder_adapter.safetensors")  # checked by hash
    assert call["language_model"] is True and call["strip_markers"] is False


def test_the_default_detector_is_the_modern_head_without_encoder_features(recording_load: RecordingLoad) -> None:
    from detectors.aitext.head import MODERN_ARTIFACT
    from stream.pipeline.detectors import build_detectors

    config = ChorusConfig.load(env={"CHORUS_AITEXT__DEVICE": "cpu", "CHORUS_AITEXT_QUANTIZE": "1"})
    [detector] = build_detectors(("aitext",), config)
    assert (detector.backend, detector.quantize, detector.head.path) == ("torch", False, MODERN_ARTIFACT)
    detector.extractor  # noqa: B018
    [call] = recording_load.calls
    assert not detector.head.reads_lm_features and not detector.evidence_tokens and detector.head.stage is None
    assert call["language_model"] is False and call["strip_markers"] is True and call["quantize"] is False
    # modern-lr-v4 and later read stylometry and n-gram logits: no adapter to load, no embedding in the
    # sum (MiniLM still runs once per post: the paraphrase network reuses its vectors)
    assert call["adapter"] is None and detector.head.embedding_dim == 0
    assert detector.head.feature_names[-2:] == ["char_ngram_logit", "legacy_char_ngram_logit"]


def test_a_detector_needs_its_models_handed_in() -> None:
    from detectors.aitext.detector import AiTextDetector
    from detectors.aitext.features import FeatureExtractor
    from stream.models.artifacts import load_head

    head = load_head()
    with pytest.raises(ValueError, match="needs an extractor or load_extractor"):
        AiTextDetector(head)
    with pytest.raises(ValueError, match="use backend='onnx'"):
        AiTextDetector(head, quantize=True, extractor=FeatureExtractor(None, None))
    on_gpu = AiTextDetector(head, device="cuda", backend="onnx", quantize=True, extractor=FeatureExtractor(None, None))
    assert on_gpu.quantize is False  # int8 is a CPU option


# --- the head's adapter is trusted only by its hash ----------------------------------------------------


def test_the_adapter_is_checked_against_the_heads_record(tmp_path: Path) -> None:
    from detectors.aitext.head import DEFAULT_ARTIFACT, MODERN_ARTIFACT
    from stream.models.artifacts import load_head, verified_adapter

    modern = load_head(MODERN_ARTIFACT)
    assert modern.encoder_adapter is None and verified_adapter(modern) is None  # a head without an adapter
    head_file = tmp_path / DEFAULT_ARTIFACT.name
    shutil.copy(DEFAULT_ARTIFACT, head_file)
    head = load_head(head_file)
    adapter = tmp_path / head.encoder_adapter["file"]
    with pytest.raises(FileNotFoundError, match="needs its encoder adapter"):
        verified_adapter(head)
    shutil.copy(DEFAULT_ARTIFACT.with_name(adapter.name), adapter)
    assert verified_adapter(head) == adapter
    adapter.write_bytes(adapter.read_bytes() + b"\0")
    with pytest.raises(ValueError, match="is not the adapter head"):
        verified_adapter(head)
    with pytest.raises(FileNotFoundError, match="no AI-text head at"):
        load_head(tmp_path / "missing.json")


def test_the_adapter_file_round_trips_through_its_arrays(tmp_path: Path) -> None:
    import numpy as np

    from detectors.aitext.finetune import AdapterConfig, EncoderAdapter
    from stream.models.weights import read_adapter, save_adapter

    rng = np.random.default_rng(0)
    adapter = EncoderAdapter(
        AdapterConfig(adapted_layers=1, rank=2),
        {"0.output.dense.lora_a": rng.normal(size=(2, 4)).astype(np.float32)},
        rng.normal(size=4).astype(np.float32),
        0.25,
        {"chosen_epochs": 1},
    )
    read = read_adapter(save_adapter(adapter, tmp_path / "a.safetensors"))
    assert read.config == adapter.config and read.training == adapter.training
    assert read.classifier_bias_ == adapter.classifier_bias_
    np.testing.assert_array_equal(read.lora_["0.output.dense.lora_a"], adapter.lora_["0.output.dense.lora_a"])
    with pytest.raises(FileNotFoundError, match="no encoder adapter"):
        read_adapter(tmp_path / "missing.safetensors")


# --- detectors/ reads no environment and opens files only where the training commands still need it ------

#: Attribute calls that touch the file system.
FILE_CALLS = {"open", "read_text", "write_text", "read_bytes", "write_bytes", "mkdir", "rmtree", "unlink",
              "is_file", "is_dir", "exists", "stat", "iterdir", "glob", "rglob", "safe_open", "save_file"}  # fmt: skip
#: Modules whose import in detectors/ means environment or file work.
FILE_MODULES = {"shutil", "fcntl", "tempfile", "glob", "importlib.util"}
#: Nothing in detectors/ may touch files (the artifacts are read and written in stream.models).
FILE_OPERATIONS_ALLOWED: set[tuple[str, str]] = set()


def _impure_uses(path: Path) -> list[tuple[str, str]]:
    """(what, where) for every environment access, file-system call and file-work import in ``path``."""
    found: list[tuple[str, str]] = []

    def visit(node: ast.AST, where: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = where
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                inner = f"{where}.{child.name}" if where else child.name
            if isinstance(child, ast.Attribute) and child.attr in {"environ", "getenv", "putenv"}:
                found.append((f"os.{child.attr}", inner))
            if isinstance(child, ast.Name) and child.id in {"environ", "getenv"}:
                found.append((child.id, inner))
            if isinstance(child, ast.Call):
                func = child.func
                name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
                if name in FILE_CALLS:
                    found.append((f"{name}()", inner))
            if isinstance(child, ast.Import | ast.ImportFrom):
                modules = [a.name for a in child.names] if isinstance(child, ast.Import) else [child.module or ""]
                found.extend((f"import {m}", inner) for m in modules if m in FILE_MODULES or m == "os")
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8")), "")
    return found


def test_detectors_read_no_environment_and_open_no_file_outside_the_artifact_serialisers() -> None:
    offenders = []
    for path in sorted((ROOT / "detectors").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for what, where in _impure_uses(path):
            if (module, where) not in FILE_OPERATIONS_ALLOWED or what.startswith(("os.", "environ", "getenv")):
                offenders.append(f"{module}:{where or '<module>'}: {what}")
    assert not offenders, "detectors/ must be pure (issue #13); move these to stream/:\n" + "\n".join(offenders)


def test_the_purity_check_sees_a_violation(tmp_path: Path) -> None:
    leak = tmp_path / "leak.py"
    leak.write_text(
        "import os\nimport shutil\n\ndef f(p):\n    return os.environ.get('X'), p.read_text(), open(p)\n",
        encoding="utf-8",
    )
    assert {what for what, _ in _impure_uses(leak)} == {"import os", "import shutil", "os.environ", "read_text()",
                                                         "open()"}  # fmt: skip
