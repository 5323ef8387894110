"""The ``[coordinator]`` section of the main configuration reaches ``chorus coordinator``.

Precedence as for every section: defaults, the TOML file, ``CHORUS_COORDINATOR__FIELD``, then the
command's flags; the deprecated ``--settings`` file still works, on top of the section. Unknown
keys and malformed values are errors that name them.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest

from stream.cli.coordinator import GRAPH_STAGE_GROUP, register, settings_from_args
from stream.config import ChorusConfig, ConfigError, CoordinatorSettings, TopicsConfig


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="chorus")
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def write(tmp_path: Path, text: str, name: str = "chorus.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_coordinator_section_file_and_environment_reach_the_settings(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[kafka]
bootstrap_servers = "kafka:9092"

[coordinator]
horizon_s = 7200
networks = ["co_link", "co_text"]
windows = ["co_link=120"]
graph_interval_s = 5
machine_detector = "aitext"
graph_in_background = false
""",
    )
    env = {"CHORUS_COORDINATOR__GRAPH_INTERVAL_S": "12.5", "CHORUS_COORDINATOR__MIN_SIZE": "4"}
    config = ChorusConfig.load(path, env=env)
    c = config.coordinator
    assert (c.horizon_s, c.networks, c.windows, c.machine_detector) == (7200.0, ("co_link", "co_text"),
                                                                       ("co_link=120",), "aitext")  # fmt: skip
    assert (c.graph_interval_s, c.min_size, c.graph_in_background) == (12.5, 4, False)  # the environment wins
    assert c.incremental_config().coaction.window_s("co_link") == 120
    assert c.campaign_config().min_size == 4

    # chorus coordinator --config chorus.toml: the section, then the flags.
    args = parse(["coordinator", "--config", str(path), "--seed", "3", "--horizon-s", "60"])
    settings = settings_from_args(args, ChorusConfig.load(args.config, env=env))
    assert (settings.horizon_s, settings.seed, settings.graph_interval_s) == (60.0, 3, 12.5)
    assert settings.networks == ("co_link", "co_text")

    # The section survives the private file handed to subprocesses.
    again = ChorusConfig.load(write(tmp_path, config.to_toml(), "copy.toml"), env={})
    assert again.coordinator == config.coordinator


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("[coordinator]\nhorizon = 60\n", {}, "unknown setting coordinator.horizon"),
        ("", {"CHORUS_COORDINATOR__GRAPH_INTERVAL": "5"}, "unknown setting coordinator.graph_interval"),
        ("[coordinator]\nhorizon_s = 'six hours'\n", {}, "coordinator.horizon_s = 'six hours' is not a valid float"),
        ("[coordinator]\ninput = 'tweets'\n", {}, "coordinator.input = 'tweets'"),
        ("[coordinator]\nnetworks = ['co_paraphrase']\n", {}, r"coordinator.networks: co_paraphrase needs"),
        ("[coordinator]\nwindows = ['co_link:60']\n", {}, "coordinator.windows: 'co_link:60'"),
        ("[coordinator]\ninput = 'edges'\nemit_edges = true\n", {}, "coordinator.emit_edges"),
    ],
)
def test_configuration_errors_name_the_setting(tmp_path: Path, text: str, env: dict[str, str], message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as error:
        ChorusConfig.load(path, env=env)
    if "unknown" in message:
        assert "known: " in str(error.value) and "horizon_s" in str(error.value)  # and says what is known


def test_the_deprecated_settings_file_still_works_on_top_of_the_section(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = ChorusConfig.load(write(tmp_path, "[coordinator]\nhorizon_s = 7200\nseed = 5\n"), env={})
    legacy = write(tmp_path, "[coordinator]\nseed = 9\n", "coordinator.toml")
    args = parse(["coordinator", "--settings", str(legacy), "--min-size", "5"])
    with caplog.at_level(logging.WARNING, logger="chorus"):
        settings = settings_from_args(args, config)
    assert (settings.horizon_s, settings.seed, settings.min_size) == (7200.0, 9, 5)
    assert "--settings is deprecated" in caplog.text
    bad = write(tmp_path, "[coordinator]\nseeds = 9\n", "bad.toml")
    with pytest.raises(ConfigError, match=r"unknown setting coordinator\.seeds"):
        settings_from_args(parse(["coordinator", "--settings", str(bad)]), config)


def test_graph_stage_and_worker_flags(tmp_path: Path) -> None:
    args = parse(["coordinator", "--input", "actions", "--emit-edges", "--edges-topic", "e1"])
    worker = settings_from_args(args, ChorusConfig())
    assert (worker.input, worker.emit_edges, worker.edges_topic) == ("actions", True, "e1")
    assert worker.input_topic(TopicsConfig()) == "chorus.posts.by-object"
    assert CoordinatorSettings().input_topic(TopicsConfig()) == "chorus.posts"
    assert CoordinatorSettings(input="embedded").input_topic(TopicsConfig(embedded="e2")) == "e2"
    stage = CoordinatorSettings(input="edges", edges_topic="e1")
    assert stage.input_topic(TopicsConfig()) == "e1"
    assert CoordinatorSettings.group_id != GRAPH_STAGE_GROUP


def test_co_paraphrase_needs_the_embedded_posts_and_says_how() -> None:
    with pytest.raises(ConfigError, match=r"co_paraphrase needs each post's sentence embedding.*input = 'embedded'"):
        CoordinatorSettings(networks=("co_text", "co_paraphrase"))
    with pytest.raises(ConfigError, match="chorus rekey does not route it"):
        CoordinatorSettings(input="actions", networks=("co_paraphrase",))
    settings = settings_from_args(
        parse(["coordinator", "--input", "embedded", "--networks", "co_text,co_paraphrase"]), ChorusConfig()
    )
    assert settings.incremental_config().networks == ("co_text", "co_paraphrase")
    assert settings.input_topic(TopicsConfig()) == "chorus.posts.embedded"
    windowed = CoordinatorSettings(input="embedded", networks=("co_paraphrase",), windows=("co_paraphrase=600",))
    assert windowed.incremental_config().coaction.window_s("co_paraphrase") == 600.0
