"""The README's layout table is the tree: every package folder is listed, and every listed path exists.

A newcomer finds their way by that table (issue 13), so a folder added, moved or removed without it
fails here rather than leaving the table to drift.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def layout_paths() -> list[str]:
    readme = ROOT.joinpath("README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Layout", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([^`]+)` \|", section, flags=re.M)


def test_every_listed_path_exists() -> None:
    listed = layout_paths()
    assert "stream/cli/" in listed and "detectors/" in listed
    assert not [p for p in listed if not (ROOT / p).exists()]


def test_every_stream_package_is_listed() -> None:
    packages = {f"stream/{p.parent.name}/" for p in ROOT.joinpath("stream").glob("*/__init__.py")}
    assert packages, "no stream packages found"
    assert sorted(packages - set(layout_paths())) == []
