"""Configuration: file, environment and flags, in that order; clear errors; secrets kept out of sight."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.cli.common import load_config
from stream.cli.main import build_parser
from stream.config import ChorusConfig, ConfigError


def test_defaults_file_and_environment_layer_in_order(tmp_path: Path) -> None:
    path = tmp_path / "chorus.toml"
    path.write_text('[kafka]\nbootstrap_servers = "file:9092"\n[worker]\nbatch_max_posts = 50\n')
    config = ChorusConfig.load(path, env={"CHORUS_WORKER__BATCH_MAX_POSTS": "75", "CHORUS_TOPICS__POSTS": "p"})
    assert config.kafka.bootstrap_servers == "file:9092"
    assert config.worker.batch_max_posts == 75
    assert config.topics.posts == "p"
    assert config.topics.flags == ChorusConfig().topics.flags


def test_command_line_flags_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHORUS_KAFKA__BOOTSTRAP_SERVERS", "env:9092")
    args = build_parser().parse_args(["worker", "--bootstrap", "flag:9092", "--store", str(tmp_path / "s.db")])
    config = load_config(args)
    assert config.kafka.bootstrap_servers == "flag:9092"
    assert config.store.url == str(tmp_path / "s.db")


def test_detector_lists_come_from_comma_separated_environment_values() -> None:
    config = ChorusConfig.load(env={"CHORUS_WORKER__DETECTORS": "noop, llm_boilerplate"})
    assert config.worker.detectors == ("noop", "llm_boilerplate")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CHORUS_WORKER__BATCH_MAX_POSTS": "many"}, "worker.batch_max_posts = 'many' is not a valid int"),
        ({"CHORUS_WORKER__BATCH_SIZE": "5"}, "unknown setting worker.batch_size"),
        ({"CHORUS_BROKER__X": "5"}, "unknown section [broker]"),
    ],
)
def test_bad_settings_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ChorusConfig.load(env=env)


def test_a_missing_or_broken_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        ChorusConfig.load(tmp_path / "nope.toml", env={})
    broken = tmp_path / "broken.toml"
    broken.write_text("[kafka\n")
    with pytest.raises(ConfigError, match=r"broken\.toml is not valid TOML"):
        ChorusConfig.load(broken, env={})


def test_the_password_is_never_in_repr_but_survives_the_private_file(tmp_path: Path) -> None:
    config = ChorusConfig.load(env={"CHORUS_KAFKA__SASL_PASSWORD": "hunter2", "CHORUS_KAFKA__SASL_MECHANISM": "PLAIN"})
    assert "hunter2" not in repr(config)
    path = tmp_path / "c.toml"
    path.write_text(config.to_toml())
    assert ChorusConfig.load(path, env={}) == config
    assert config.kafka.client_settings()["sasl_plain_password"] == "hunter2"


def test_aitext_serving_settings_reach_the_detector(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """``[aitext]`` picks the runtime, device, precision and head a worker's detector serves with."""
    from detectors.aitext.head import DEFAULT_ARTIFACT, INT8_ARTIFACT, MODERN_ARTIFACT
    from stream.pipeline.detectors import build_detectors

    path = tmp_path / "chorus.toml"
    path.write_text('[worker]\ndetectors = ["aitext"]\n[aitext]\nbackend = "onnx"\ndevice = "cpu"\n')
    config = ChorusConfig.load(path, env={"CHORUS_AITEXT__QUANTIZE": "true"})
    assert (config.aitext.backend, config.aitext.device, config.aitext.quantize) == ("onnx", "cpu", True)
    assert "[aitext]" in config.to_toml() and ChorusConfig.load(_written(tmp_path, config), env={}) == config
    [detector] = build_detectors(config.worker.detectors, config)  # models load lazily: nothing runs yet
    assert (detector.backend, detector.device, detector.quantize) == ("onnx", "cpu", True)
    assert detector.head.path == INT8_ARTIFACT and detector.head.lm_statistics == "int8"
    assert detector.model_version.endswith("-int8")
    # a float32 head asked to score int8 statistics: served, with a warning that says what to do
    forced = config.with_overrides(aitext={"artifact": str(DEFAULT_ARTIFACT)})
    with caplog.at_level("WARNING"):
        [detector] = build_detectors(("aitext",), forced)
    assert detector.head.path == DEFAULT_ARTIFACT
    assert "fitted on float32 SmolLM2 statistics but int8 ones are served" in caplog.text
    [plain] = build_detectors(("aitext",), ChorusConfig.load(env={"CHORUS_AITEXT__DEVICE": "cpu"}))
    assert (plain.backend, plain.quantize, plain.head.path) == ("torch", False, MODERN_ARTIFACT)


def _written(folder: Path, config: ChorusConfig) -> Path:
    path = folder / "written.toml"
    path.write_text(config.to_toml())
    return path


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CHORUS_AITEXT__BACKEND": "tensorrt"}, "aitext.backend = 'tensorrt': use one of torch, onnx"),
        ({"CHORUS_AITEXT__DEVICE": "gpu"}, "aitext.device = 'gpu'"),
        ({"CHORUS_AITEXT__QUANTIZE": "yes"}, "aitext.quantize serves SmolLM2 in int8 through ONNX Runtime"),
    ],
)
def test_bad_aitext_settings_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ChorusConfig.load(env=env)


def test_the_configuration_knows_every_aitext_backend() -> None:
    """Kept apart so that reading a configuration does not import torch; they must not drift."""
    from detectors.aitext.features import BACKENDS
    from stream.config import AITEXT_BACKENDS

    assert AITEXT_BACKENDS == BACKENDS


def test_older_variables_are_read_by_the_loader_and_the_sectioned_name_wins() -> None:
    """The documented short names (CHORUS_CACHE, CHORUS_SLA_HOURS, ...) still work, read in one place."""
    env = {"CHORUS_SLA_HOURS": "2", "CHORUS_CACHE": "/tmp/c", "CHORUS_TORCH_THREADS": "2"}
    env["CHORUS_AITEXT_QUANTIZE"] = "on"
    config = ChorusConfig.load(env=env)
    assert config.review.sla_hours == 2.0 and config.aitext.cache_dir == "/tmp/c"
    assert config.aitext.torch_threads == 2 and config.aitext.quantize_default is True
    both = ChorusConfig.load(env={"CHORUS_SLA_HOURS": "2", "CHORUS_REVIEW__SLA_HOURS": "5"})
    assert both.review.sla_hours == 5.0
    with pytest.raises(ConfigError, match="sla_hours"):
        ChorusConfig.load(env={"CHORUS_SLA_HOURS": "0"})
