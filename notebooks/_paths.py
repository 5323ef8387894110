"""Where the notebooks find their data, so each runs top to bottom on a fresh install, in CI and here.

Every notebook's first cell asks this module, never a hard-coded path:

* :func:`small` - ``CHORUS_NOTEBOOK_SMALL=1`` shrinks every sample so CI executes the notebooks in
  seconds (``tests/test_notebooks.py``);
* :func:`demo_store` - the store to read: ``CHORUS_NOTEBOOK_STORE`` if set, else the one ``chorus
  demo`` writes (``chorus-data/chorus.db``), else a fresh demo store made once by running the real
  pipeline (``chorus demo``, about 15 s);
* :func:`shared_data` - the development data beside the project (``../shared/data``), or ``None`` on a
  machine without it (``CHORUS_SHARED_DATA`` points elsewhere; ``CHORUS_SHARED_DATA=none`` hides it).
  That data is never copied into the repository; the notebooks read it where it lies;
* :func:`output_dir` - where a notebook writes what it makes (``CHORUS_NOTEBOOK_OUT``, else
  ``chorus-data/notebooks/<name>``, which git ignores).

It also reads a store's posts back into the detectors' post schema (:func:`store_posts`), which
notebooks 2 and 3 both need.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl

    from stream.store.database import Store

#: The repository root (this file is ``notebooks/_paths.py``).
REPO = Path(__file__).resolve().parent.parent

#: Posts in the demo store a notebook makes when it finds none: enough for every kind of behaviour.
DEMO_POSTS = 3_000


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def small() -> bool:
    """True when the notebooks should use small samples (CI and quick looks)."""
    return _env_flag("CHORUS_NOTEBOOK_SMALL")


def shared_data() -> Path | None:
    """The development data folder if this machine has it, else ``None`` (the notebooks then skip it)."""
    configured = os.environ.get("CHORUS_SHARED_DATA")
    if configured is not None and configured.strip().lower() in {"", "none", "off", "0"}:
        return None
    path = Path(configured) if configured else REPO.parent / "shared" / "data"
    return path if path.is_dir() else None


def output_dir(name: str) -> Path:
    """A folder for one notebook's outputs (exports, reports), created if missing."""
    base = os.environ.get("CHORUS_NOTEBOOK_OUT")
    path = Path(base) / name if base else REPO / "chorus-data" / "notebooks" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def demo_store(posts: int = DEMO_POSTS) -> Path:
    """The SQLite store to read; runs ``chorus demo`` once to make one when there is none yet."""
    configured = os.environ.get("CHORUS_NOTEBOOK_STORE")
    if configured:
        path = Path(configured)
        if not path.exists():
            raise FileNotFoundError(f"CHORUS_NOTEBOOK_STORE={configured}: no such file")
        return path
    for candidate in (REPO / "chorus-data" / "chorus.db", REPO / "chorus-data" / "notebook-demo.db"):
        if candidate.exists():
            return candidate
    path = REPO / "chorus-data" / "notebook-demo.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "stream.cli.main", "demo", "--posts", str(posts), "--workers", "1",
               "--no-progress", "--store", str(path)]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return path


def store_posts(store: Store) -> pl.DataFrame:
    """The store's posts in the detectors' post schema, plus the simulator's truth where there is one.

    The store keeps list columns as JSON text; the detectors want ``list[str]``. ``sim_kind`` and
    ``sim_campaign`` come from ``meta.sim`` (demo stores only; null for real posts).
    """
    import polars as pl

    from detectors.coordination import coerce_posts

    posts = store.frame("posts")
    decoded = posts.with_columns(
        *[pl.col(c).str.json_decode(pl.List(pl.String)).fill_null([]) for c in ("urls", "hashtags", "mentions")],
        sim_kind=pl.col("meta").str.json_path_match("$.sim.kind"),
        sim_campaign=pl.col("meta").str.json_path_match("$.sim.campaign"),
        sim_machine=pl.col("meta").str.json_path_match("$.sim.machine") == "true",
    ).drop("meta", "source_topic", "source_partition", "source_offset", "schema_version", "ingested_at")
    return coerce_posts(decoded)
