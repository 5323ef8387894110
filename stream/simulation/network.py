"""The simulator's core: one seeded generator, the timeline, the accounts with their truth, the posts.

Every behaviour (organic accounts, machine accounts, campaign waves) writes through a
:class:`Network`, so the things they share are done once here: times are whole seconds inside the
span (so gaps of exactly a co-action window happen, as on a real platform), a wave starts where its
whole spread fits, each campaign member acts within the spread of the wave's start, every post
carries its ground truth, and every account is recorded with its campaign.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stream.simulation.config import SimulationConfig


@dataclass(slots=True)
class SimulatedPost:
    """One post in the Chorus schema, ``t`` seconds after the stream's start, with its ground truth."""

    post_id: str
    account_id: str
    t: int
    text: str
    #: ``kind`` (organic, machine, campaign, cover), ``machine`` (written by a model), ``campaign``
    #: (the author's campaign or None), and per kind ``wave`` or ``leaked_boilerplate``.
    truth: dict[str, Any]
    reply_to: str | None = None
    repost_of: str | None = None
    urls: list[str] = field(default_factory=list)
    hashtags: list[str] = field(default_factory=list)
    mentions: list[str] = field(default_factory=list)


class Network:
    """The simulated network as it is being built: accounts, posts, and the generator they draw from."""

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        end = config.end or dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(seconds=5)
        self.start = end - dt.timedelta(seconds=int(config.duration_s))
        self.duration_s = int(config.duration_s)
        self.spread_s = int(config.campaign_spread_s)
        self.posts: list[SimulatedPost] = []
        #: account id -> its campaign (None for organic and machine accounts), in creation order.
        self.accounts: dict[str, str | None] = {}

    def add_accounts(self, accounts: list[str], campaign: str | None = None) -> list[str]:
        """Record accounts with the campaign they belong to (the truth per account)."""
        self.accounts.update(dict.fromkeys(accounts, campaign))
        return accounts

    def post(
        self,
        account: str,
        t: int,
        text: str,
        *,
        kind: str,
        machine: bool = False,
        more_truth: dict[str, Any] | None = None,
        **fields: Any,
    ) -> SimulatedPost:
        """Add a post by ``account`` at ``t``; its truth names the author's campaign (one place for it)."""
        truth = {"kind": kind, "machine": machine, "campaign": self.accounts[account], **(more_truth or {})}
        post = SimulatedPost(f"p{len(self.posts):07d}", account, int(t), text, truth, **fields)
        self.posts.append(post)
        return post

    def times(self, n: int) -> np.ndarray:
        """``n`` whole-second times spread evenly over the span."""
        return self.rng.integers(0, self.duration_s, size=n)

    def wave_start(self) -> int:
        """When a campaign wave starts: anywhere its whole spread still fits in the span."""
        return int(self.rng.integers(0, self.duration_s - self.spread_s))

    def wave_members(self, start: int, members: list[str], participation: float) -> list[tuple[str, int]]:
        """The members taking part in a wave, each acting within the spread of its start."""
        present = self.rng.random(len(members)) < participation
        times = start + self.rng.integers(0, self.spread_s + 1, size=len(members))
        return [(account, int(t)) for account, t, here in zip(members, times, present, strict=True) if here]

    def activity(self, n_accounts: int, total: int | None) -> np.ndarray:
        """Posts per account: ``total`` split heavy-tailed (a few accounts post a lot, most rarely, as
        on real networks), or without a total about ``posts_per_account`` each, at least one."""
        if total is None:
            return np.maximum(1, self.rng.poisson(self.config.posts_per_account, size=n_accounts))
        weights = self.rng.pareto(1.5, size=n_accounts) + 0.1
        return self.rng.multinomial(total, weights / weights.sum())

    def in_time_order(self) -> list[SimulatedPost]:
        """The posts by time, ties by post id (the order the stream is produced in)."""
        return sorted(self.posts, key=lambda p: (p.t, p.post_id))
