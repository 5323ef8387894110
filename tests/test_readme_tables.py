"""The README's performance and quality figures are the committed measured files, not prose.

``python bench/run.py`` (or ``--readme-only``) fills the README's ``bench`` and ``eval`` blocks from
``bench/results/ALL*.md`` and the ``chorus eval`` summary; these tests fail when the README drifts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.run import (
    EVAL_SUMMARY,
    README,
    RESULTS,
    all_files,
    assemble,
    bench_block,
    eval_block,
    extract_block,
    render_readme,
    replace_block,
    shift_headings,
)

DOC = "intro\n\n## Performance\n\n<!-- bench:begin -->\nold\n<!-- bench:end -->\n\ntail\n"


def test_readme_bench_block_is_the_committed_results() -> None:
    readme = README.read_text(encoding="utf-8")
    files = all_files(RESULTS)
    assert files and files[0].name == "ALL.md", "the CPU table comes first"
    expected = "\n".join(shift_headings(p.read_text(encoding="utf-8"), 2) for p in files)
    assert extract_block(readme, "bench").strip("\n") == expected.strip("\n"), (
        "README's performance section differs from bench/results/ALL*.md: run `python bench/run.py --readme-only`"
    )


def test_readme_eval_block_is_the_committed_eval_summary() -> None:
    readme = README.read_text(encoding="utf-8")
    assert EVAL_SUMMARY.is_file(), f"{EVAL_SUMMARY} is missing: run `python bench/run.py --eval`"
    expected = shift_headings(EVAL_SUMMARY.read_text(encoding="utf-8"), 2)
    assert extract_block(readme, "eval").strip("\n") == expected.strip("\n"), (
        "README's quality block differs from the eval summary: run `python bench/run.py --readme-only`"
    )


def test_the_whole_readme_is_already_rendered() -> None:
    readme = README.read_text(encoding="utf-8")
    assert render_readme(readme) == readme


def test_every_figure_in_the_bench_block_sits_under_performance() -> None:
    block = bench_block(RESULTS)
    levels = [len(line) - len(line.lstrip("#")) for line in block.splitlines() if line.startswith("#")]
    assert levels and min(levels) == 3  # nests under "## Performance"


def test_replace_block_is_idempotent_and_keeps_the_rest() -> None:
    once = replace_block(DOC, "bench", "## new\n\nfigures\n")
    assert once == replace_block(once, "bench", "## new\n\nfigures\n")
    assert once.startswith("intro\n\n## Performance\n\n<!-- bench:begin -->\n## new\n")
    assert once.endswith("figures\n<!-- bench:end -->\n\ntail\n")
    assert extract_block(once, "bench") == "## new\n\nfigures\n"
    assert "old" not in once


def test_replace_block_with_nothing_leaves_the_markers() -> None:
    emptied = replace_block(DOC, "bench", "")
    assert emptied == "intro\n\n## Performance\n\n<!-- bench:begin -->\n<!-- bench:end -->\n\ntail\n"


@pytest.mark.parametrize(
    "document",
    [
        "no markers at all\n",
        "<!-- bench:begin -->\nonly the start\n",
        "<!-- bench:end -->\nbackwards\n<!-- bench:begin -->\n",
        "<!-- bench:begin -->\n<!-- bench:end -->\n<!-- bench:begin -->\n<!-- bench:end -->\n",
    ],
)
def test_bad_markers_are_a_clear_error(document: str) -> None:
    with pytest.raises(ValueError, match=r"bench:(begin|end)"):
        replace_block(document, "bench", "x")


def test_shift_headings_moves_headings_not_code_or_hashtags() -> None:
    text = "# A\n\n## B\n\n#hashtag and #1\n\n```\n# comment in code\n```\n###### deep\n"
    assert shift_headings(text, 2) == "### A\n\n#### B\n\n#hashtag and #1\n\n```\n# comment in code\n```\n###### deep\n"


def test_assemble_marks_what_was_not_measured() -> None:
    text = assemble("cpu", [("pipeline", "## Pipeline\n\n| a |\n|---|\n| 1 (1-2) |\n"), ("aitext", None)],
                    "2 cores", "2026-01-01")  # fmt: skip
    assert text.startswith("# Benchmarks: cpu\n")
    assert "## Pipeline\n" in text
    assert "Not yet measured in this table: run `python bench/run.py --only aitext`" in text


def test_gpu_results_are_added_after_the_cpu_ones(tmp_path: Path) -> None:
    (tmp_path / "ALL-gpu-nvidia-h100.md").write_text("# Benchmarks: gpu-nvidia-h100\n\ngpu rows\n")
    (tmp_path / "ALL.md").write_text("# Benchmarks: cpu\n\ncpu rows\n")
    block = bench_block(tmp_path)
    assert block.index("### Benchmarks: cpu") < block.index("### Benchmarks: gpu-nvidia-h100")


def test_eval_block_says_how_to_make_a_missing_summary(tmp_path: Path) -> None:
    assert "python bench/run.py --eval" in eval_block(tmp_path / "none.md")
