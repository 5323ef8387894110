"""Reading store queries into polars frames and Python values typed as the tables declare them.

Shared by the review console's reads (:mod:`stream.review`) and the policies' action pages
(:mod:`stream.policy.actions`). It lives in the store layer so that the worker, which runs the
policy stage, never imports console code to read a table.

Why these helpers exist: ``pl.read_database`` infers a column's type from its rows, so an empty
page or an all-NULL column would change type from one call to the next; SQLite hands back
timestamps from aggregates and date functions as text; JSON columns written by other stages may
hold anything. Each helper pins the type the table declares or degrades to "nothing there".
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from stream.store.database import _polars_dtype

#: Longest ``IN (...)`` list one query carries: far below SQLite's and PostgreSQL's parameter limits.
IN_LIST_SIZE = 500


@dataclass(frozen=True)
class QueuePage:
    """One page of a list (a review queue, the automated actions) and the size of the whole filtered list."""

    rows: pl.DataFrame
    total: int
    offset: int
    limit: int


def json_as_text(*columns: Any) -> list[Any]:
    """The columns to select, JSON ones cast to text (as ``Store.frame`` does), so a frame column has one type."""
    out = []
    for column in columns:
        if isinstance(getattr(column, "type", None), sa.JSON):
            out.append(sa.cast(column, sa.Text).label(column.name))
        else:
            out.append(column)
    return out


def read_frame(conn: Connection, query: sa.Select[Any]) -> pl.DataFrame:
    """A query's rows as a frame whose dtypes come from the selected columns, not from the rows."""
    schema = {c.name: _polars_dtype(c) for c in query.selected_columns}  # type: ignore[arg-type]
    return pl.read_database(query, conn, schema_overrides=schema, infer_schema_length=None)


def read_rows(conn: Connection, query: sa.Select[Any]) -> list[dict[str, Any]]:
    """A query's rows as dicts (JSON columns parsed by SQLAlchemy), for detail views of one record."""
    return [dict(row._mapping) for row in conn.execute(query)]


def json_object(value: Any) -> dict[str, Any]:
    """A JSON object column's value as a dict: ``{}`` for NULL, non-objects and unparsable text.

    Evidence and summaries are written by other stages whose formats grow; a reader that crashed
    on one odd row would hide every other case from the reviewers.
    """
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return dict(value) if isinstance(value, Mapping) else {}


def json_strings(value: Any) -> list[str]:
    """A JSON list column's value (``urls``, ``hashtags``) as strings: ``[]`` for NULL or anything else."""
    if value is None:
        return []
    try:
        parsed = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return []
    return [str(v) for v in parsed] if isinstance(parsed, list) else []


def utc_datetime(value: Any) -> datetime | None:
    """A timestamp from an expression SQLite returns as text (date functions, some aggregates), in UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def chunks(items: Sequence[str], size: int = IN_LIST_SIZE) -> Iterable[Sequence[str]]:
    """``items`` in slices short enough for one ``IN (...)`` list each."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
