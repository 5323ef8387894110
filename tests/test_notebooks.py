"""Every researcher notebook runs top to bottom on small inputs and makes what it promises.

Notebooks rot silently: an API changes and nobody reruns them. Here each one in ``notebooks/`` is
executed with nbclient in a fresh kernel, the way a researcher would run it, on:

* a demo store filled once per session by the real pipeline (``chorus demo``, workers and the
  coordinator; the shared ``demo_store_file`` fixture of ``conftest.py``), copied, and given what
  reviewers would add later: decisions through ``stream.review.decisions.decide``, so notebook 3 has
  something to read;
* ``CHORUS_NOTEBOOK_SMALL=1`` (small samples) and, where this machine has it, ``../shared/data``
  (CI does not: the notebooks must run without it, and do).

Each notebook writes a ``summary.json`` of its key results into ``CHORUS_NOTEBOOK_OUT``; the checks
below read it and the files the notebook exported, and assert there are plots in the outputs.
"""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

nbformat = pytest.importorskip("nbformat", reason="notebook tests need the dev extras (nbclient, nbformat, ipykernel)")
nbclient = pytest.importorskip("nbclient", reason="notebook tests need the dev extras (nbclient, nbformat, ipykernel)")
pytest.importorskip("ipykernel", reason="notebook tests need the dev extras (nbclient, nbformat, ipykernel)")
pytest.importorskip("matplotlib", reason="the notebooks draw with matplotlib")

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(p.name for p in NOTEBOOKS_DIR.glob("*.ipynb"))
#: Longest a single cell may take on a shared 2-core CI machine before the run counts as hung.
CELL_TIMEOUT_S = 180


def _load_paths_module() -> Any:
    """``notebooks/_paths.py`` (not a package: the notebooks import it from their own folder)."""
    spec = importlib.util.spec_from_file_location("notebook_paths", NOTEBOOKS_DIR / "_paths.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _add_decisions(store: Any, posts: pl.DataFrame) -> tuple[int, int]:
    """Reviewers decide every flag as the simulator's truth says: confirm machine posts, dismiss the rest."""
    from stream.review.decisions import decide
    from stream.store.reviewers import Reviewer

    flags = store.frame("flags").join(posts.select("post_id", "sim_machine"), on="post_id")
    right = flags.filter(pl.col("sim_machine"))["flag_id"].to_list()
    wrong = flags.filter(~pl.col("sim_machine"))["flag_id"].to_list()
    assert decide(store, Reviewer("alice"), right, "confirm", "undisclosed_ai_text").ok
    if wrong:
        assert decide(store, Reviewer("bob"), wrong, "dismiss", "false_positive").ok
    return len(right), len(wrong)


@pytest.fixture(scope="module")
def reviewed_store(demo_store_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the session's demo store (campaigns included) with reviewers' decisions added."""
    from stream.store.database import Store

    path = tmp_path_factory.mktemp("notebooks") / "reviewed.db"
    with sqlite3.connect(demo_store_file) as source, sqlite3.connect(path) as target:
        source.backup(target)
    source.close()
    target.close()
    with Store.open(str(path)) as store:
        posts = _load_paths_module().store_posts(store)
        # The demo's coordinator wrote them: campaigns come from the real pipeline.
        assert store.count("campaigns") > 0, "the demo stream should hold coordinated campaigns"
        confirmed, _ = _add_decisions(store, posts)
        assert confirmed > 0
    return path


@pytest.fixture
def notebook_env(reviewed_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The environment the kernel inherits: small samples, the reviewed store, a private output folder."""
    out = tmp_path / "out"
    monkeypatch.setenv("CHORUS_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("CHORUS_NOTEBOOK_STORE", str(reviewed_store))
    monkeypatch.setenv("CHORUS_NOTEBOOK_OUT", str(out))
    monkeypatch.setenv("CHORUS_EXPORT_SALT", "test-salt")
    # The model-backed `aitext` detector scores a few posts a second on a CI CPU; its own tests cover
    # it, and the eval tests prove a registered detector is picked up. Here: the boilerplate stand-in.
    monkeypatch.setenv("CHORUS_NOTEBOOK_DETECTORS", "llm_boilerplate")
    monkeypatch.delenv("CHORUS_STORE__URL", raising=False)
    return out


def _execute(name: str) -> Any:
    notebook = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    )
    client.execute()  # raises CellExecutionError with the cell and traceback on any error
    return notebook


def _outputs(notebook: Any, kind: str) -> list[Any]:
    return [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if kind in o.get("data", {})]


def _summary(out: Path, name: str) -> dict[str, Any]:
    return json.loads((out / name.removesuffix(".ipynb") / "summary.json").read_text())


def _check_evaluation(notebook: Any, out: Path, summary: dict[str, Any]) -> None:
    assert summary["detectors"] == ["llm_boilerplate"]
    assert "chorus-demo" in summary["datasets"]
    assert summary["auroc_raw_all"]["llm_boilerplate"] > 0.5  # it finds the leaked boilerplate
    folder = out / "01_detector_evaluation"
    report = (folder / "report.md").read_text()
    assert "## Results by generator" in report and "sim-leaked-boilerplate" in report
    assert (folder / "roc_llm_boilerplate.png").exists() and (folder / "metrics.csv").exists()
    assert len(_outputs(notebook, "image/png")) >= 2  # ROC and precision-recall shown inline


def _check_campaigns(notebook: Any, out: Path, summary: dict[str, Any]) -> None:
    assert summary["campaigns"] >= 1 and summary["largest_campaign"] >= 3
    assert summary["evidence_rows"] >= 1
    assert sum(summary["edges"].values()) > 0
    if summary["qut"] is not None:  # the toolkit is installed: edge lists must agree exactly
        for row in summary["qut"]:
            assert row["only_chorus"] == row["only_toolkit"] == 0, row
    assert _outputs(notebook, "image/png")  # the campaign drawing


def _check_store(notebook: Any, out: Path, summary: dict[str, Any]) -> None:
    assert summary["campaigns_source"] == "store" and summary["campaigns"] >= 1
    assert summary["labelled_decisions"] >= 1
    reviewers = [r for r in summary["agreement"] if r["who"].startswith("reviewers")]
    assert reviewers and reviewers[0]["precision"] == 1.0  # they decided by the simulator's truth
    # The demo switches the example policy on: its label rule acted on the flagged posts, which
    # reviewers decided (the decisions above are on flags).
    rules = {r["rule_id"]: r for r in summary["policy_actions"] if r["mode"] == "active" and r["status"] == "emitted"}
    assert rules["boilerplate-label"]["actions"] >= 1 and rules["boilerplate-label"]["reviewed"] >= 1
    folder = out / "03_working_from_the_store"
    for name in summary["exported"]:
        assert (folder / name).exists(), name
    flags = pl.read_csv(folder / "flags.csv")
    assert "text" not in flags.columns
    assert flags["account_id"].str.starts_with("account-").all()  # pseudonyms, not platform ids
    decisions = pl.read_parquet(folder / "decisions.parquet")
    assert set(decisions["label"]) <= {0, 1} and decisions["reviewer"].str.starts_with("reviewer-").all()
    assert _outputs(notebook, "image/png")  # flags per hour


CHECKS: dict[str, Callable[[Any, Path, dict[str, Any]], None]] = {
    "01_detector_evaluation.ipynb": _check_evaluation,
    "02_campaign_exploration.ipynb": _check_campaigns,
    "03_working_from_the_store.ipynb": _check_store,
}


def test_every_notebook_has_checks() -> None:
    assert NOTEBOOKS, "no notebooks found"
    assert set(NOTEBOOKS) == set(CHECKS), "add a check for each notebook (what are its key outputs?)"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_committed_clean(name: str) -> None:
    """No outputs in git (they hold data and go stale); parameters in the first code cell."""
    notebook = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), f"{name}: clear outputs before committing"
    assert "parameters" in code[0].metadata.get("tags", []) and "_paths" in code[0].source


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom(name: str, notebook_env: Path) -> None:
    notebook = _execute(name)
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    CHECKS[name](notebook, notebook_env, _summary(notebook_env, name))
