"""The simulated network in the two shapes its users need: Kafka-ready messages and a polars frame.

The pipeline and the demo produce JSON messages to Kafka; each carries its ground truth in
``meta["sim"]``, and the stream mixes the time formats producers disagree on (ISO strings and epoch
milliseconds). The detectors' tests and benchmarks take a frame in the detectors' post schema with a
``machine_probability`` column (as the AI-text stage would add) and the account truth beside it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from stream.kafka.messages import POSTS_FRAME_SCHEMA
from stream.simulation.network import Network

#: What the workers' frame adds to a post when it reads one from Kafka (a simulated post has none).
READ_SIDE_FIELDS = ("schema_version", "source_topic", "source_partition", "source_offset")
#: The post frame's schema: the workers' post columns, plus the AI-text stage's probability.
POST_SCHEMA: dict[str, pl.DataType] = {
    **{name: dtype for name, dtype in POSTS_FRAME_SCHEMA.items() if name not in READ_SIDE_FIELDS},
    "machine_probability": pl.Float64(),
}


@dataclass(frozen=True)
class GeneratedStream:
    """Posts in the Chorus schema plus the truth: which account belongs to which campaign."""

    posts: pl.DataFrame
    #: ``account_id, campaign`` (campaign null for organic and machine accounts).
    accounts: pl.DataFrame

    def campaign_members(self) -> dict[str, set[str]]:
        """Injected campaign name -> its accounts."""
        rows = self.accounts.drop_nulls("campaign").group_by("campaign").agg("account_id").rows()
        return {name: set(members) for name, members in rows}


def as_messages(net: Network) -> list[dict[str, Any]]:
    """JSON-ready posts in time order, truth in ``meta["sim"]``; every fifth time in epoch milliseconds."""
    start_s = net.start.timestamp()
    messages = []
    for i, post in enumerate(net.in_time_order()):
        t = start_s + post.t
        message: dict[str, Any] = {
            "post_id": post.post_id,
            "account_id": post.account_id,
            # Producers disagree on time formats; the stream sees ISO strings and epoch milliseconds.
            "created_at": int(t * 1000) if i % 5 == 0 else _iso(t),
            "text": post.text,
            "lang": "en",
            "urls": post.urls,
            "hashtags": post.hashtags,
            "mentions": post.mentions,
            "meta": {"sim": post.truth},
        }
        if post.reply_to is not None:
            message["reply_to"] = post.reply_to
        if post.repost_of is not None:
            message["repost_of"] = post.repost_of
        messages.append(message)
    return messages


def as_frame(net: Network) -> GeneratedStream:
    """The posts as a frame sorted by time, with a ``machine_probability`` that follows the truth
    (0.8-1.0 for machine-written posts, 0-0.3 for the rest), and the accounts with their campaigns."""
    posts = net.posts
    machine = np.array([p.truth["machine"] for p in posts], dtype=bool)
    draw = net.rng.random(len(posts))
    start_us = int(net.start.timestamp()) * 1_000_000
    frame = pl.DataFrame(
        {
            "post_id": [p.post_id for p in posts],
            "account_id": [p.account_id for p in posts],
            "created_at": np.array([start_us + p.t * 1_000_000 for p in posts], dtype=np.int64),
            "text": [p.text for p in posts],
            "lang": ["en"] * len(posts),
            "reply_to": [p.reply_to for p in posts],
            "repost_of": [p.repost_of for p in posts],
            "quote_of": [None] * len(posts),
            "urls": [p.urls for p in posts],
            "hashtags": [p.hashtags for p in posts],
            "mentions": [p.mentions for p in posts],
            "machine_probability": np.where(machine, 0.8 + 0.2 * draw, 0.3 * draw),
        },
        schema={**POST_SCHEMA, "created_at": pl.Int64},
    )
    frame = frame.with_columns(pl.from_epoch("created_at", time_unit="us").dt.replace_time_zone("UTC"))
    accounts = pl.DataFrame(
        list(net.accounts.items()), schema={"account_id": pl.String, "campaign": pl.String}, orient="row"
    )
    return GeneratedStream(posts=frame.sort("created_at", "post_id"), accounts=accounts)


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z")
