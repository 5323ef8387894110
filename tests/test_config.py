"""Configuration: file, environment and flags, in that order; clear errors; secrets kept out of sight."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.cli import build_parser, load_config
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
