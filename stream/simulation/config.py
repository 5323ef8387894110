"""The knobs of the simulated network, and its two presets: the demo and the co-action test stream.

One :class:`SimulationConfig` drives the one simulator. Its defaults are the demo (a network with
every kind of behaviour, sized by a total post count); :func:`coaction_config` is the stream the
coordination tests need (organic accounts acting on shared pools of popular objects, campaigns whose
bursts are the six co-action kinds, awkward cases for the QUT comparison).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

#: The kinds of co-action a campaign burst can be (one per Chorus network type the QUT toolkit has).
COACTION_KINDS: tuple[str, ...] = ("repost", "text", "near_duplicate", "link", "reply", "hashtags")
#: Every kind of campaign wave: the demo's ``message`` (one message, lightly reworded, with a shared
#: link and hashtag; some members repost the wave's first post), ``llm_paraphrase`` (each member posts
#: its own model paraphrase, nothing shared), and the co-action kinds.
WAVE_KINDS: tuple[str, ...] = ("message", "llm_paraphrase", *COACTION_KINDS)

#: How organic accounts write. ``templates``: the demo's topic templates with their own links and
#: hashtags, replying to and reposting earlier posts of the stream. ``popular_pool``: Zipf-vocabulary
#: texts, reposting, replying to and linking shared pools of popular objects, so co-actions also happen
#: by chance, plus the awkward cases (mention-only texts, reposts with urls, replies that are reposts).
OrganicVoice = Literal["templates", "popular_pool"]

#: Where the co-action stream starts: 2024-01-01T00:00:00Z, so its times do not depend on today.
COACTION_START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class CampaignGroup:
    """A set of campaigns that behave alike: how many, how big, what their waves are."""

    name_prefix: str
    account_prefix: str
    count: int
    size: int
    kinds: tuple[str, ...]
    #: Waves per campaign; ``None``: as many as the group's share of ``posts`` needs.
    waves: int | None
    participation: float
    #: Campaigns ``0, every, 2*every, ...`` are machine-written (``None``: none are; 1: all are).
    machine_every: int | None
    cover_posts: bool


@dataclass(frozen=True)
class SimulationConfig:
    """Knobs of the simulated network; the defaults make the demo, with every kind of behaviour."""

    seed: int = 7
    #: Total posts in the stream (organic accounts write what the others leave). ``None``: each
    #: organic account writes about ``posts_per_account`` (Poisson, at least one) instead.
    posts: int | None = 5_000
    posts_per_account: float = 8.0
    organic_accounts: int = 400
    organic_voice: OrganicVoice = "templates"
    machine_accounts: int = 25
    campaigns: int = 4
    accounts_per_campaign: int = 12
    #: The kinds the campaigns' waves cycle through (campaign ``c``'s wave ``w`` is kind ``(c + w) % n``).
    campaign_kinds: tuple[str, ...] = ("message",)
    #: Waves per campaign; ``None``: waves until the campaigns have ``campaign_share`` of ``posts``.
    campaign_waves: int | None = None
    #: Each member takes part in a wave with this probability.
    campaign_participation: float = 1.0
    #: Campaigns ``0, every, 2*every, ...`` are machine-written (``None``: people run every campaign).
    machine_campaign_every: int | None = None
    #: Campaign members also post on their own, so they are not trivially separable by activity.
    campaign_cover_posts: bool = False
    #: The stream covers this span, ending ``end`` (default: now, so no post is in the future).
    duration_s: float = 6 * 3600.0
    end: dt.datetime | None = None
    #: Share of posts written by machine accounts and by campaign waves (when ``posts`` is set).
    machine_share: float = 0.10
    campaign_share: float = 0.08
    #: Share of machine posts that leak assistant boilerplate.
    leak_share: float = 0.3
    #: Campaign members post within this many seconds of the wave's start.
    campaign_spread_s: float = 45.0
    #: LLM paraphrase campaigns (each member posts its own model paraphrase; no shared link or tag),
    #: with this many accounts and waves each.
    llm_campaigns: int = 0
    accounts_per_llm_campaign: int = 4
    llm_campaign_waves: int = 2

    def __post_init__(self) -> None:
        unknown = sorted(set(self.campaign_kinds) - set(WAVE_KINDS))
        if unknown:
            raise ValueError(f"unknown campaign wave kinds {unknown}; use some of {list(WAVE_KINDS)}")
        if not 0 < self.campaign_participation <= 1:
            raise ValueError(f"campaign_participation must be in (0, 1], got {self.campaign_participation}")
        if self.campaign_spread_s >= self.duration_s:
            raise ValueError(f"campaign_spread_s ({self.campaign_spread_s}) must be shorter than duration_s")

    def campaign_groups(self) -> list[CampaignGroup]:
        """The ordinary campaigns, then the LLM paraphrase campaigns."""
        return [
            CampaignGroup(
                name_prefix="campaign_", account_prefix="acct_c", count=self.campaigns,
                size=self.accounts_per_campaign, kinds=self.campaign_kinds, waves=self.campaign_waves,
                participation=self.campaign_participation, machine_every=self.machine_campaign_every,
                cover_posts=self.campaign_cover_posts,
            ),
            CampaignGroup(
                name_prefix="llm_campaign_", account_prefix="acct_p", count=self.llm_campaigns,
                size=self.accounts_per_llm_campaign, kinds=("llm_paraphrase",), waves=self.llm_campaign_waves,
                participation=1.0, machine_every=1, cover_posts=False,
            ),
        ]  # fmt: skip


def coaction_config(
    *,
    n_organic: int = 300,
    posts_per_account: float = 8.0,
    n_campaigns: int = 3,
    campaign_size: int = 8,
    bursts_per_campaign: int = 12,
    duration_s: int = 6 * 3600,
    burst_spread_s: int = 40,
    seed: int = 0,
) -> SimulationConfig:
    """The co-action test stream: organic accounts on popular pools, ``n_campaigns`` campaigns.

    Each campaign member takes part in a burst with probability 0.8 and acts within
    ``burst_spread_s`` seconds of the burst start; bursts cycle through :data:`COACTION_KINDS`.
    Even-numbered campaigns are machine-written. The stream starts at :data:`COACTION_START`.
    """
    return SimulationConfig(
        seed=seed, posts=None, posts_per_account=posts_per_account, organic_accounts=n_organic,
        organic_voice="popular_pool", machine_accounts=0, campaigns=n_campaigns, accounts_per_campaign=campaign_size,
        campaign_kinds=COACTION_KINDS, campaign_waves=bursts_per_campaign, campaign_participation=0.8,
        machine_campaign_every=2, campaign_cover_posts=True, duration_s=float(duration_s),
        end=COACTION_START + dt.timedelta(seconds=duration_s), campaign_spread_s=float(burst_spread_s),
    )  # fmt: skip
