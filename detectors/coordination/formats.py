"""Pure frame conversions between the post schema and the formats researchers bring.

* QUT's 8-column CSV (``message_id, user_id, username, repost_id, reply_id, message, timestamp,
  urls``; timestamp in seconds, urls space separated). Unlike QUT's own loader, an empty ``urls``
  field means *no* url, never a url ``""`` that every url-less post shares.
* The development set's IRA layout (``message_id, account, ts, text, urls, hashtags, mentions,
  retweet_of``, lists space separated).
* The Chorus post schema itself (:data:`detectors.base.POST_COLUMNS`), with list columns either
  as lists (Parquet/JSONL) or space-separated strings (CSV).

Reading files is the caller's business (``stream/coordination/batch.py``); everything here takes and
returns frames.
"""

from __future__ import annotations

import polars as pl

from detectors.base import POST_COLUMNS

QUT_COLUMNS: tuple[str, ...] = (
    "message_id",
    "user_id",
    "username",
    "repost_id",
    "reply_id",
    "message",
    "timestamp",
    "urls",
)

_LIST_COLUMNS = ("urls", "hashtags", "mentions")
_OPTIONAL_STRING_COLUMNS = ("lang", "reply_to", "repost_of", "quote_of")


def _blank_to_null(name: str) -> pl.Expr:
    col = pl.col(name).cast(pl.String)
    return pl.when(col.str.strip_chars() == "").then(None).otherwise(col).alias(name)


def _split_words(name: str) -> pl.Expr:
    return pl.col(name).cast(pl.String).fill_null("").str.extract_all(r"\S+").alias(name)


def _epoch_seconds_to_datetime(expr: pl.Expr) -> pl.Expr:
    micros = (expr.cast(pl.Float64) * 1_000_000).round().cast(pl.Int64)
    return pl.from_epoch(micros, time_unit="us").dt.replace_time_zone("UTC")


def _to_datetime(frame: pl.DataFrame, name: str) -> pl.Expr:
    dtype = frame.schema[name]
    if isinstance(dtype, pl.Datetime):
        col = pl.col(name).dt.cast_time_unit("us")
        col = col.dt.replace_time_zone("UTC") if dtype.time_zone is None else col.dt.convert_time_zone("UTC")
        return col.alias("created_at")
    if dtype.is_numeric():
        return _epoch_seconds_to_datetime(pl.col(name)).alias("created_at")
    text = pl.col(name).cast(pl.String)
    numeric = text.str.contains(r"^\s*-?\d+(\.\d*)?\s*$")
    parsed = text.str.to_datetime(time_unit="us", time_zone="UTC", strict=False)
    return (
        pl.when(numeric).then(_epoch_seconds_to_datetime(text.str.strip_chars())).otherwise(parsed).alias("created_at")
    )


def posts_from_qut(frame: pl.DataFrame) -> pl.DataFrame:
    """QUT's 8-column frame -> posts. Hashtags and mentions are taken from the message text."""
    missing = [c for c in QUT_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"QUT CSV lacks columns {missing}; expected {list(QUT_COLUMNS)}")
    out = frame.select(
        pl.col("message_id").cast(pl.String).alias("post_id"),
        pl.col("user_id").cast(pl.String).alias("account_id"),
        _to_datetime(frame, "timestamp"),
        pl.col("message").cast(pl.String).fill_null("").alias("text"),
        pl.lit(None, dtype=pl.String).alias("lang"),
        _blank_to_null("reply_id").alias("reply_to"),
        _blank_to_null("repost_id").alias("repost_of"),
        pl.lit(None, dtype=pl.String).alias("quote_of"),
        _split_words("urls"),
        pl.col("message").cast(pl.String).fill_null("").str.extract_all(r"#\w+").alias("hashtags"),
        pl.col("message").cast(pl.String).fill_null("").str.extract_all(r"@\w+").alias("mentions"),
        pl.col("username").cast(pl.String),
    )
    return out.with_columns(
        pl.col("hashtags").list.eval(pl.element().str.strip_chars_start("#")),
        pl.col("mentions").list.eval(pl.element().str.strip_chars_start("@")),
    )


def posts_from_ira(frame: pl.DataFrame) -> pl.DataFrame:
    """The development set's IRA layout -> posts (``retweet_of`` is a hash of the retweeted text)."""
    return frame.select(
        pl.col("message_id").cast(pl.String).alias("post_id"),
        pl.col("account").cast(pl.String).alias("account_id"),
        _to_datetime(frame, "ts"),
        pl.col("text").cast(pl.String).fill_null(""),
        pl.lit("en").alias("lang"),
        pl.lit(None, dtype=pl.String).alias("reply_to"),
        _blank_to_null("retweet_of").alias("repost_of"),
        pl.lit(None, dtype=pl.String).alias("quote_of"),
        _split_words("urls"),
        _split_words("hashtags"),
        _split_words("mentions"),
        *[pl.col(c) for c in ("label", "account_type") if c in frame.columns],
    )


def posts_from_chorus(frame: pl.DataFrame) -> pl.DataFrame:
    """A frame already in (or near) the post schema: fill optional columns, coerce types."""
    for required in ("post_id", "account_id", "created_at"):
        if required not in frame.columns:
            raise ValueError(f"posts lack column {required!r}; a post needs post_id, account_id, created_at")
    exprs: list[pl.Expr] = [
        pl.col("post_id").cast(pl.String),
        pl.col("account_id").cast(pl.String),
        _to_datetime(frame, "created_at"),
        (pl.col("text").cast(pl.String).fill_null("") if "text" in frame.columns else pl.lit("")).alias("text"),
    ]
    for name in _OPTIONAL_STRING_COLUMNS:
        exprs.append(_blank_to_null(name) if name in frame.columns else pl.lit(None, dtype=pl.String).alias(name))
    for name in _LIST_COLUMNS:
        if name not in frame.columns:
            exprs.append(pl.lit([], dtype=pl.List(pl.String)).alias(name))
        elif isinstance(frame.schema[name], pl.List):
            exprs.append(pl.col(name).cast(pl.List(pl.String)).fill_null([]))
        else:
            exprs.append(_split_words(name))
    extra = [pl.col(c) for c in frame.columns if c not in POST_COLUMNS]
    return frame.select(*exprs, *extra)


def coerce_posts(frame: pl.DataFrame) -> pl.DataFrame:
    """Recognise the layout by its columns and return posts in the Chorus schema."""
    columns = set(frame.columns)
    if set(QUT_COLUMNS) <= columns:
        return posts_from_qut(frame)
    if {"message_id", "account", "ts", "text"} <= columns:
        return posts_from_ira(frame)
    return posts_from_chorus(frame)


def posts_to_qut(posts: pl.DataFrame) -> pl.DataFrame:
    """Posts -> QUT's 8 columns (timestamp in seconds, urls space separated) for the toolkit."""
    seconds = pl.col("created_at").dt.epoch("us") / 1_000_000
    return posts.select(
        pl.col("post_id").alias("message_id"),
        pl.col("account_id").alias("user_id"),
        (pl.col("username") if "username" in posts.columns else pl.col("account_id")).alias("username"),
        pl.col("repost_of").fill_null("").alias("repost_id"),
        pl.col("reply_to").fill_null("").alias("reply_id"),
        pl.col("text").fill_null("").alias("message"),
        seconds.alias("timestamp"),
        pl.col("urls").list.join(" ").fill_null("").alias("urls"),
    )
