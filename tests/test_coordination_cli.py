"""``chorus coord`` end to end on files written to tmp_path (no shared data, no broker)."""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl
import pytest

from detectors.coordination import CoActionConfig, co_action_edges, posts_to_qut
from stream.cli import coord as coord_cli
from stream.simulation import generate_stream

FIXTURE = Path(__file__).parent / "fixtures" / "coordination" / "qut_coretweet_test_input.csv"


def run_coord(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="chorus")
    coord_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["coord", *argv])
    return args.func(args)


def test_qut_csv_gives_qut_edge_lists(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_coord([str(FIXTURE), str(out), "--window-s", "60", "--networks", "co_repost,co_link"]) == 0
    edges = pl.read_csv(out / "co_repost.csv")
    assert edges.columns == ["user_1", "user_2", "weight"]
    assert set(edges.iter_rows()) == {
        ("uid0", "uid1", 1), ("uid1", "uid0", 1), ("uid2", "uid3", 1),
        ("uid3", "uid2", 1), ("uid4", "uid5", 2), ("uid5", "uid4", 2),
    }  # fmt: skip
    # Every fixture row has an empty urls field: no phantom shared link.
    assert pl.read_csv(out / "co_link.csv").height == 0
    evidence = pl.read_csv(out / "evidence.csv")
    assert {"network", "user_1", "user_2", "post_1", "time_1", "post_2", "time_2"} <= set(evidence.columns)


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl", ".csv.gz"])
def test_every_input_format_gives_the_same_edges(tmp_path: Path, suffix: str) -> None:
    stream = generate_stream(n_organic=150, n_campaigns=2, seed=4)
    path = tmp_path / f"posts{suffix}"
    if suffix == ".parquet":
        stream.posts.write_parquet(path)
    elif suffix == ".jsonl":
        stream.posts.write_ndjson(path)
    else:
        import gzip

        path.write_bytes(gzip.compress(posts_to_qut(stream.posts).write_csv().encode()))
    out = tmp_path / "out"
    assert run_coord([str(path), str(out), "--window", "co_repost=120", "--window-s", "60"]) == 0
    expected = co_action_edges(stream.posts, "co_repost", CoActionConfig(windows_s={"co_repost": 120})).select(
        "user_1", "user_2", "weight"
    )
    got = pl.read_csv(out / "co_repost.csv", schema_overrides={"weight": pl.Int64})
    assert set(got.iter_rows()) == set(expected.iter_rows())
    campaigns = pl.read_csv(out / "campaigns.csv")
    assert campaigns.height >= 2


def test_previous_campaigns_keep_their_ids(tmp_path: Path) -> None:
    stream = generate_stream(n_organic=150, n_campaigns=2, seed=6)
    path = tmp_path / "posts.parquet"
    stream.posts.write_parquet(path)
    assert run_coord([str(path), str(tmp_path / "a")]) == 0
    # A reviewer's decision is attached to the first campaign's id: give it a recognisable one.
    members = pl.read_csv(tmp_path / "a" / "campaign_members.csv")
    first_id = members["campaign_id"][0]
    previous = members.with_columns(
        pl.when(pl.col("campaign_id") == first_id)
        .then(pl.lit("cmp-reviewed"))
        .otherwise(pl.col("campaign_id"))
        .alias("campaign_id")
    )
    previous.write_csv(tmp_path / "previous.csv")
    assert run_coord([str(path), str(tmp_path / "b"), "--previous", str(tmp_path / "previous.csv")]) == 0
    assert "cmp-reviewed" in set(pl.read_csv(tmp_path / "b" / "campaigns.csv")["campaign_id"])


def test_bad_rows_are_quarantined_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "posts.csv"
    path.write_text(
        "post_id,account_id,created_at,text,repost_of\n"
        "1,a,2024-01-01T00:00:00Z,hi,x\n"
        "2,b,2024-01-01T00:00:10Z,hi,x\n"
        "3,,2024-01-01T00:00:10Z,hi,x\n"
        "4,c,not a time,hi,x\n"
    )
    out = tmp_path / "out"
    assert run_coord([str(path), str(out), "--networks", "co_repost"]) == 0
    rejected = pl.read_csv(out / "rejected.csv")
    assert dict(zip(rejected["post_id"].cast(str), rejected["reason"], strict=True)) == {
        "3": "missing account id",
        "4": "missing or unparsable time",
    }
    assert pl.read_csv(out / "co_repost.csv").height == 2


def test_unusable_input_is_an_error_that_says_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert run_coord([str(tmp_path / "missing.csv"), str(tmp_path / "out")]) == 2
    assert "no such file" in capsys.readouterr().err
    odd = tmp_path / "posts.txt"
    odd.write_text("x")
    assert run_coord([str(odd), str(tmp_path / "out")]) == 2
    assert "unknown file type" in capsys.readouterr().err
    assert run_coord([str(FIXTURE), str(tmp_path / "out"), "--window", "co_like=5"]) == 2
