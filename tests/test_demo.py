"""``chorus demo`` runs to completion on a small stream, and the README tells the truth about CI."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from detectors.coordination.incremental import STREAM_NETWORK_TYPES
from stream.config import ChorusConfig
from stream.kafka.topics import topic_plan
from stream.pipeline.demo import with_paraphrase_network
from stream.pipeline.demo_truth import demo_truth
from stream.simulation import malformed_messages
from stream.store.database import Store

REPO = Path(__file__).resolve().parents[1]
#: What the demo's AI-text detector must at least do on its own ground truth (scores, not timings).
#: Issue 14's goals are AUROC 0.95, 80% of machine posts flagged and at most 1% of organic ones; the
#: shipped head (modern-gb-v7) measures AUROC 0.890, 11.1% and 0.4% on 5,000 demo posts (README), so these floors only
#: catch a regression to chance or a detector that stopped flagging; the goals stay open.
DEMO_FLOORS = {"auroc": 0.65, "machine_flagged": 0.04, "organic_flagged": 0.05}


@pytest.mark.kafka
def test_demo_runs_the_whole_pipeline_into_the_store(tmp_path: Path) -> None:
    store_path = tmp_path / "demo.db"
    result = subprocess.run(
        [sys.executable, "-m", "stream.cli.main", "demo", "--posts", "600", "--workers", "2", "--no-progress",
         "--store", str(store_path), "--timeout", "300"],
        capture_output=True, text=True, timeout=400, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Chorus demo complete" in result.stdout
    assert f"chorus console --store {store_path}" in result.stdout
    with Store.open(str(store_path)) as store:
        assert store.count("posts") == 600
        assert store.count("detector_results") == 2 * 600  # aitext and llm_boilerplate, by default
        assert store.count("dead_letters") == len(list(malformed_messages()))
        assert store.count("flags") > 0
        assert store.count("campaigns") > 0, "the demo's coordinator writes the campaigns it finds"
        assert store.count("worker_metrics") > 0
    # the AI-text detector runs by default, and is measured on the demo's own ground truth
    truth = demo_truth(str(store_path))
    [aitext] = [d for d in truth.detectors if d.detector == "aitext"]
    assert aitext.machine_posts >= 50 and aitext.organic_posts >= 400
    assert aitext.auroc >= DEMO_FLOORS["auroc"], truth.render()
    assert aitext.machine_flagged >= DEMO_FLOORS["machine_flagged"], truth.render()
    assert aitext.organic_flagged <= DEMO_FLOORS["organic_flagged"], truth.render()
    assert "On the demo's own ground truth:" in result.stdout and "aitext: AUROC" in result.stdout
    # the LLM paraphrase campaign (own wording per account, no shared link or tag) is found
    found = {c.true_campaign for c in truth.campaigns if c.share_of_true >= 0.5}
    assert "llm_campaign_0" in found, truth.render()


def test_readme_first_screen_gives_the_commands_ci_runs() -> None:
    readme = (REPO / "README.md").read_text()
    first_screen = "\n".join(readme.splitlines()[:30])
    blocks = re.findall(r"```bash\n(.*?)```", first_screen, flags=re.S)
    commands = [line.strip() for block in blocks for line in block.splitlines() if line.strip()]
    assert len(commands) == 2, "the first screen gives exactly two commands: install+demo, and tests"
    install_and_demo, test = commands
    assert install_and_demo.startswith("bash .ci/install") and "chorus demo" in install_and_demo
    ci_steps = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert "bash .ci/install" in ci_steps, "CI installs the way the README says"
    assert test in ci_steps, f"CI must run the README's test command: {test}"
    assert "pytest" in (REPO / test.split()[-1]).read_text()


def test_the_demo_adds_the_paraphrase_network_when_the_aitext_detector_runs(tmp_path: Path) -> None:
    plain = ChorusConfig()
    assert with_paraphrase_network(plain) == plain  # no embeddings without the AI-text detector
    config = with_paraphrase_network(plain.with_overrides(worker={"detectors": ("aitext", "llm_boilerplate")}))
    assert config.worker.publish_embeddings and config.coordinator.input == "embedded"
    assert config.coordinator.networks == (*STREAM_NETWORK_TYPES, "co_paraphrase")
    assert config.topics.embedded in topic_plan(config) and config.topics.embedded not in topic_plan(plain)
    # The worker and coordinator processes get it through the configuration file the demo writes.
    written = tmp_path / "demo.toml"
    written.write_text(config.to_toml())
    assert ChorusConfig.load(written, env={}) == config
