"""Reading posts from files: the one reader behind ``chorus coord``, ``chorus score`` and ``chorus eval``."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import polars as pl


def read_posts(path: Path) -> pl.DataFrame:
    """Read a file of posts by its suffix; CSV columns are read as text and typed by the detector."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        return pl.read_parquet(path)
    if name.endswith((".jsonl", ".ndjson", ".json", ".jsonl.gz", ".ndjson.gz")):
        data = gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()
        return pl.read_ndjson(io.BytesIO(data), infer_schema_length=None)
    if name.endswith((".csv", ".csv.gz")):
        data = gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()
        return pl.read_csv(io.BytesIO(data), infer_schema_length=0)
    raise ValueError(f"{path}: unknown file type; use .csv, .csv.gz, .parquet, .jsonl or .jsonl.gz")


def with_post_ids(frame: pl.DataFrame, source: Path | str) -> pl.DataFrame:
    """``frame`` with a text ``post_id`` (from ``id`` when missing); a clear error without ids or text."""
    if "post_id" not in frame.columns:
        if "id" not in frame.columns:
            raise ValueError(f"{source}: needs an 'id' (or 'post_id') column; has {frame.columns}")
        frame = frame.with_columns(post_id=pl.col("id"))
    if "text" not in frame.columns:
        raise ValueError(f"{source}: needs a 'text' column; has {frame.columns}")
    return frame.with_columns(pl.col("post_id").cast(pl.String))
