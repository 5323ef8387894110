"""Organic accounts: people posting on their own schedule, in one of two voices (see ``OrganicVoice``)."""

from __future__ import annotations

import numpy as np

from stream.simulation.network import Network
from stream.simulation.texts import template_text, vocabulary_text

#: The organic actions of the ``popular_pool`` voice and how often each is taken.
POOL_ACTIONS = ("text", "repost", "reply", "link", "mention_only")
POOL_ACTION_SHARES = (0.45, 0.3, 0.1, 0.12, 0.03)


class PopularPools:
    """What many organic accounts act on: popular posts (outside the stream, like a sample), links, tags."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.posts = np.array([f"ext{i}" for i in range(60)])
        self.urls = np.array([f"https://news.example/{i}" for i in range(40)])
        self.tags = np.array([f"tag{i}" for i in range(25)])
        self.rng = rng

    def popular_post(self) -> str:
        return str(self.posts[min(self.rng.zipf(1.5), len(self.posts)) - 1])

    def some_tags(self) -> list[str]:
        return [str(t) for t in self.rng.choice(self.tags, size=self.rng.integers(0, 3), replace=False)]


def organic_accounts(net: Network, total: int | None) -> list[str]:
    """Add the organic accounts and their posts (``total`` of them, or per account; see ``activity``)."""
    accounts = net.add_accounts([f"user_{i:04d}" for i in range(net.config.organic_accounts)])
    counts = net.activity(len(accounts), total)
    authors = np.repeat(np.arange(len(accounts)), counts)
    times = net.times(len(authors))
    if net.config.organic_voice == "templates":
        for author, t in zip(authors, times, strict=True):
            _template_post(net, accounts[author], int(t))
    else:
        pools = PopularPools(net.rng)
        for author, t in zip(authors, times, strict=True):
            _pool_post(net, pools, accounts, accounts[author], int(t))
    return accounts


def cover_posts(net: Network, account: str) -> None:
    """A campaign member's own posts (about half an organic account's), plain text in the network's voice."""
    for t in net.times(max(1, int(net.rng.poisson(net.config.posts_per_account / 2)))):
        templates = net.config.organic_voice == "templates"
        text = template_text(net.rng)[0] if templates else vocabulary_text(net.rng, 8)
        net.post(account, int(t), text, kind="cover")


def reply_and_repost_earlier_posts(net: Network) -> None:
    """The ``templates`` voice's interactions: organic posts turned into reposts of or replies to one
    of the 200 posts before them (any kind), once the whole stream exists."""
    posts = net.in_time_order()
    for i, post in enumerate(posts):
        if post.truth["kind"] != "organic" or i <= 10:
            continue
        roll = net.rng.random()
        target = posts[int(net.rng.integers(max(0, i - 200), i))]
        if roll < 0.08:
            post.repost_of = target.post_id
            post.text = f"RT @{target.account_id}: {target.text}"
        elif roll < 0.18:
            post.reply_to = target.post_id
            post.mentions = [target.account_id]
            post.text = f"@{target.account_id} {post.text}"


def _template_post(net: Network, account: str, t: int) -> None:
    text, topic = template_text(net.rng)
    post = net.post(account, t, text, kind="organic")
    if net.rng.random() < 0.15:
        post.urls = [f"https://news.example/{topic}/{int(net.rng.integers(1_000_000))}"]
        post.text += " " + post.urls[0]
    if net.rng.random() < 0.2:
        post.hashtags = [topic]
        post.text += f" #{topic}"


def _pool_post(net: Network, pools: PopularPools, accounts: list[str], account: str, t: int) -> None:
    rng = net.rng
    action = POOL_ACTIONS[int(rng.choice(len(POOL_ACTIONS), p=POOL_ACTION_SHARES))]
    target = pools.popular_post()
    tags = pools.some_tags()
    if action == "repost":
        # Reposts sometimes carry urls (co_link must ignore them) and are sometimes also replies.
        urls = [str(pools.urls[rng.integers(0, len(pools.urls))])] if rng.random() < 0.3 else []
        reply_to = target if rng.random() < 0.05 else None
        net.post(account, t, f"RT {target}", kind="organic", repost_of=target, urls=urls, reply_to=reply_to)
    elif action == "reply":
        net.post(account, t, vocabulary_text(rng, 6), kind="organic", reply_to=target, hashtags=tags)
    elif action == "link":
        popular = rng.random() < 0.6
        url = (
            str(pools.urls[min(rng.zipf(1.6), len(pools.urls)) - 1])
            if popular
            else f"https://own.example/{account}/{t}"
        )
        net.post(account, t, vocabulary_text(rng, 5) + f" {url}", kind="organic", urls=[url], hashtags=tags)
    elif action == "mention_only":
        # Nothing left once mentions are removed: co_text must not link these.
        mentioned = accounts[int(rng.integers(0, len(accounts)))]
        net.post(account, t, f"@{mentioned}  ", kind="organic", mentions=["x"])
    else:
        net.post(account, t, vocabulary_text(rng, int(rng.integers(3, 14))), kind="organic", hashtags=tags)
