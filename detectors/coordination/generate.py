"""A seeded generator of organic and coordinated posts, for tests, demos and scale runs.

The real IRA data cannot ship with the project, and it has no authentic control group, so the
tests need a stream where the truth is known. Organic accounts post at random times about a shared
pool of popular objects (reposting popular posts, sharing popular links, replying to popular
posts, using popular hashtags), so co-actions also happen by chance, as they do on a real
platform. Each injected campaign is a set of accounts that, in bursts, do the same thing within
seconds of each other: repost the same post, post the same text (with the case, @mentions and
whitespace varied, which QUT's normalisation removes), post near-duplicates (one word swapped),
share the same link, reply to the same post, or push the same hashtag set.

The generator also writes the awkward cases the co-action semantics must get right: posts whose
text is only @mentions, reposts that carry urls (which co_link must ignore), replies that are
reposts, posts without urls, gaps of exactly the window. Everything is numpy with one seeded
``Generator``; the same arguments give the same frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

_EPOCH_2024 = 1_704_067_200  # 2024-01-01T00:00:00Z, seconds

#: The kinds of co-action a campaign burst can be.
BURST_KINDS: tuple[str, ...] = ("repost", "text", "near_duplicate", "link", "reply", "hashtags")


@dataclass(frozen=True)
class GeneratedStream:
    """Posts in the Chorus schema plus the truth: which account belongs to which campaign."""

    posts: pl.DataFrame
    #: ``account_id, campaign`` (campaign null for organic accounts).
    accounts: pl.DataFrame

    def campaign_members(self) -> dict[str, set[str]]:
        """Injected campaign name -> its accounts."""
        rows = self.accounts.drop_nulls("campaign").group_by("campaign").agg("account_id").rows()
        return {name: set(members) for name, members in rows}


def _words(rng: np.random.Generator, vocabulary: np.ndarray, n: int) -> str:
    # Zipf-like word choice so that organic texts share common words, as real ones do.
    ranks = np.minimum(rng.zipf(1.3, size=n), len(vocabulary)) - 1
    return " ".join(vocabulary[ranks])


def generate_stream(
    *,
    n_organic: int = 300,
    posts_per_account: float = 8.0,
    n_campaigns: int = 3,
    campaign_size: int = 8,
    bursts_per_campaign: int = 12,
    duration_s: int = 6 * 3600,
    burst_spread_s: int = 40,
    seed: int = 0,
) -> GeneratedStream:
    """Generate organic accounts and ``n_campaigns`` coordinated campaigns over ``duration_s``.

    Each campaign member takes part in a burst with probability 0.8 and acts within
    ``burst_spread_s`` seconds of the burst start. Campaign posts carry a high
    ``machine_probability`` for even-numbered campaigns (machine-written), low otherwise.
    """
    rng = np.random.default_rng(seed)
    vocabulary = np.array([f"w{i}" for i in range(400)] + ["Vote", "NEWS", "today", "don't", "U.S.A."])
    popular_urls = np.array([f"https://news.example/{i}" for i in range(40)])
    popular_tags = np.array([f"tag{i}" for i in range(25)])
    rows: list[dict[str, object]] = []
    counter = 0

    def add(account: str, t: float, **fields: object) -> str:
        nonlocal counter
        post_id = f"p{counter:07d}"
        counter += 1
        row = {
            "post_id": post_id,
            "account_id": account,
            "t": t,
            "text": "",
            "reply_to": None,
            "repost_of": None,
            "urls": [],
            "hashtags": [],
            "mentions": [],
            "machine_probability": float(rng.uniform(0.0, 0.3)),
        }
        row.update(fields)
        rows.append(row)
        return post_id

    # Seed posts that organic accounts repost and reply to (ids outside the stream, like a sample).
    popular_posts = np.array([f"ext{i}" for i in range(60)])

    organic = [f"u{i:04d}" for i in range(n_organic)]
    for account in organic:
        n = max(1, rng.poisson(posts_per_account))
        times = np.sort(rng.integers(0, duration_s, size=n))
        for t in times:
            kind = rng.choice(["text", "repost", "reply", "link", "mention_only"], p=[0.45, 0.3, 0.1, 0.12, 0.03])
            target = popular_posts[min(rng.zipf(1.5), len(popular_posts)) - 1]
            tags = list(rng.choice(popular_tags, size=rng.integers(0, 3), replace=False))
            if kind == "repost":
                urls = [str(popular_urls[rng.integers(0, 40)])] if rng.random() < 0.3 else []
                add(
                    account,
                    float(t),
                    text=f"RT {target}",
                    repost_of=str(target),
                    urls=urls,
                    reply_to=str(target) if rng.random() < 0.05 else None,
                )
            elif kind == "reply":
                add(account, float(t), text=_words(rng, vocabulary, 6), reply_to=str(target), hashtags=tags)
            elif kind == "link":
                url = (
                    popular_urls[min(rng.zipf(1.6), 40) - 1]
                    if rng.random() < 0.6
                    else f"https://own.example/{account}/{t}"
                )
                add(account, float(t), text=_words(rng, vocabulary, 5) + f" {url}", urls=[str(url)], hashtags=tags)
            elif kind == "mention_only":
                add(account, float(t), text=f"@{organic[rng.integers(0, n_organic)]}  ", mentions=["x"])
            else:
                add(account, float(t), text=_words(rng, vocabulary, int(rng.integers(3, 14))), hashtags=tags)

    truth: list[tuple[str, str | None]] = [(a, None) for a in organic]
    for c in range(n_campaigns):
        name = f"campaign{c}"
        members = [f"c{c}_{j:02d}" for j in range(campaign_size)]
        truth.extend((m, name) for m in members)
        machine = c % 2 == 0
        # Campaign accounts also post on their own, so they are not trivially separable by activity.
        for account in members:
            for t in rng.integers(0, duration_s, size=max(1, rng.poisson(posts_per_account / 2))):
                add(account, float(t), text=_words(rng, vocabulary, 8))
        starts = np.sort(rng.integers(0, duration_s - burst_spread_s, size=bursts_per_campaign))
        for b, start in enumerate(starts):
            kind = BURST_KINDS[(b + c) % len(BURST_KINDS)]
            base_text = _words(rng, vocabulary, 12) + f" {name}b{b}"
            target = f"{name}_target{b}"
            url = f"https://{name}.example/{b}"
            tags = sorted({f"{name}tag{b}", "tag1"})
            for account in members:
                if rng.random() > 0.8:
                    continue
                t = float(start + rng.integers(0, burst_spread_s + 1))
                prob = float(rng.uniform(0.8, 1.0)) if machine else float(rng.uniform(0.0, 0.3))
                if kind == "repost":
                    add(account, t, text=f"RT {target}", repost_of=target, machine_probability=prob)
                elif kind == "text":
                    variant = base_text.upper() if rng.random() < 0.3 else base_text
                    variant = f"@{account} " * int(rng.integers(0, 2)) + variant.replace(" ", "  ", 1)
                    add(account, t, text=variant, machine_probability=prob)
                elif kind == "near_duplicate":
                    words = base_text.split()
                    words[int(rng.integers(0, len(words) - 1))] = _words(rng, vocabulary, 1)
                    add(account, t, text=" ".join(words), machine_probability=prob)
                elif kind == "link":
                    add(account, t, text=_words(rng, vocabulary, 6) + f" {url}", urls=[url], machine_probability=prob)
                elif kind == "reply":
                    add(account, t, text=_words(rng, vocabulary, 7), reply_to=target, machine_probability=prob)
                else:
                    add(
                        account,
                        t,
                        text=_words(rng, vocabulary, 5) + " " + " ".join(f"#{x}" for x in tags),
                        hashtags=tags,
                        machine_probability=prob,
                    )

    frame = pl.DataFrame(
        rows,
        schema={
            "post_id": pl.String,
            "account_id": pl.String,
            "t": pl.Float64,
            "text": pl.String,
            "reply_to": pl.String,
            "repost_of": pl.String,
            "urls": pl.List(pl.String),
            "hashtags": pl.List(pl.String),
            "mentions": pl.List(pl.String),
            "machine_probability": pl.Float64,
        },
    )
    posts = frame.select(
        "post_id",
        "account_id",
        pl.from_epoch(((pl.col("t") + _EPOCH_2024) * 1_000_000).cast(pl.Int64), time_unit="us")
        .dt.replace_time_zone("UTC")
        .alias("created_at"),
        "text",
        pl.lit("en").alias("lang"),
        "reply_to",
        "repost_of",
        pl.lit(None, dtype=pl.String).alias("quote_of"),
        "urls",
        "hashtags",
        "mentions",
        "machine_probability",
    ).sort("created_at", "post_id")
    accounts = pl.DataFrame(truth, schema={"account_id": pl.String, "campaign": pl.String}, orient="row")
    return GeneratedStream(posts=posts, accounts=accounts)
