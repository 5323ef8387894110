"""Campaigns: groups of accounts that, in waves, do the same thing within seconds of each other.

A wave has one kind (see ``WAVE_KINDS``): what is shared (a message, a link, a hashtag set, a post
to repost or reply to) is drawn once per wave, then every member taking part writes its own post
around it within the spread (``Network.wave_members``). The co-action kinds vary what QUT's
normalisation removes (case, @mentions, whitespace) or swap one word (near-duplicates).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from stream.simulation.config import CampaignGroup
from stream.simulation.network import Network, SimulatedPost
from stream.simulation.organic import cover_posts
from stream.simulation.texts import (
    CAMPAIGN_MESSAGES,
    paraphrases_by_message,
    swap_paraphrase,
    topic_words,
    vocabulary_text,
)


@dataclass
class Wave:
    """What one wave's members share."""

    campaign: str
    index: int
    kind: str
    machine: bool
    message: str = ""
    link: str = ""
    tags: list[str] = field(default_factory=list)
    #: The post every member reposts or replies to (``repost``, ``reply``).
    target: str = ""
    #: ``message`` waves: the wave's first post, which some later members repost.
    first: SimulatedPost | None = None
    #: ``llm_paraphrase`` waves: the model rewordings of the message, in the order members take them.
    versions: list[str] = field(default_factory=list)


def campaign_group(net: Network, group: CampaignGroup, budget: int | None) -> None:
    """Add ``group``'s campaigns; with ``group.waves`` unset they make exactly ``budget`` posts between them."""
    if group.count and group.waves is None and budget is None:
        raise ValueError("campaign_waves is needed when posts is None (there is no share of posts to fill)")
    for c in range(group.count):
        name = f"{group.name_prefix}{c}"
        members = net.add_accounts([f"{group.account_prefix}{c}_{i:02d}" for i in range(group.size)], campaign=name)
        if not members:
            continue
        if group.cover_posts:
            for account in members:
                cover_posts(net, account)
        machine = group.machine_every is not None and c % group.machine_every == 0
        # Without a wave count, split the budget exactly: the stream has as many posts as asked for.
        quota = None
        if budget is not None and group.waves is None:
            quota = budget // group.count + int(c < budget % group.count)
        made = wave_index = 0
        while made < quota if quota is not None else wave_index < (group.waves or 0):
            wave = _new_wave(net, group, c, name, wave_index, machine)
            for i, (account, t) in enumerate(net.wave_members(net.wave_start(), members, group.participation)):
                if quota is not None and made >= quota:
                    break
                WRITERS[wave.kind](net, wave, i, account, t)
                made += 1
            wave_index += 1


def _new_wave(net: Network, group: CampaignGroup, c: int, campaign: str, index: int, machine: bool) -> Wave:
    kind = group.kinds[(c + index) % len(group.kinds)]
    wave = Wave(campaign, index, kind, machine, link=f"https://bit.example/{campaign}-{index}")
    if kind == "message":
        _topic, w1, w2 = topic_words(net.rng)
        wave.message = CAMPAIGN_MESSAGES[(c + index) % len(CAMPAIGN_MESSAGES)].format(w1=w1, w2=w2)
        wave.tags = [f"{w1.replace(' ', '')}gate"]
    elif kind == "llm_paraphrase":
        by_message = paraphrases_by_message()
        # the messages with the most faithful rewordings first (see demo_posts/README.md)
        usable = sorted((m for m, v in by_message.items() if len(v) >= 2), key=lambda m: (-len(by_message[m]), m))
        wave.message = usable[(c * (group.waves or 1) + index) % len(usable)]
        versions = by_message[wave.message]
        wave.versions = [versions[int(i)] for i in net.rng.permutation(len(versions))]
    else:
        wave.message = vocabulary_text(net.rng, 12) + f" {campaign}b{index}"
        wave.target = f"{campaign}_target{index}"
        wave.tags = sorted({f"{campaign}tag{index}", "tag1"})  # tag1 is popular among organic accounts too
    return wave


def _post(net: Network, wave: Wave, account: str, t: int, text: str, **fields: object) -> SimulatedPost:
    return net.post(account, t, text, kind="campaign", machine=wave.machine, more_truth={"wave": wave.index}, **fields)


def _message(net: Network, wave: Wave, _i: int, account: str, t: int) -> None:
    """The message (lightly reworded by some) with the wave's link and hashtag; some repost the first post."""
    text = swap_paraphrase(net.rng, wave.message) if net.rng.random() < 0.4 else wave.message
    post = _post(net, wave, account, t, f"{text} {wave.link} #{wave.tags[0]}", urls=[wave.link], hashtags=wave.tags)
    if wave.first is None:
        wave.first = post
    elif net.rng.random() < 0.3:
        # Amplification: a burst of reposts of the wave's first post.
        post.repost_of = wave.first.post_id
        post.text = f"RT @{wave.first.account_id}: {wave.message} {wave.link} #{wave.tags[0]}"


def _llm_paraphrase(net: Network, wave: Wave, i: int, account: str, t: int) -> None:
    """The member's own model paraphrase of the message: no shared link, hashtag or wording."""
    _post(net, wave, account, t, wave.versions[i % len(wave.versions)])


def _repost(net: Network, wave: Wave, _i: int, account: str, t: int) -> None:
    _post(net, wave, account, t, f"RT {wave.target}", repost_of=wave.target)


def _text(net: Network, wave: Wave, _i: int, account: str, t: int) -> None:
    """The same text, with case, a leading @mention and doubled whitespace varied (QUT removes them)."""
    variant = wave.message.upper() if net.rng.random() < 0.3 else wave.message
    variant = f"@{account} " * int(net.rng.integers(0, 2)) + variant.replace(" ", "  ", 1)
    _post(net, wave, account, t, variant)


def _near_duplicate(net: Network, wave: Wave, _i: int, account: str, t: int) -> None:
    """The same text with one word swapped."""
    words = wave.message.split()
    words[int(net.rng.integers(0, len(words) - 1))] = vocabulary_text(net.rng, 1)
    _post(net, wave, account, t, " ".join(words))


def _link(net: Network, wave: Wave, _i: int, account: str, t: int) -> None:
    _post(net, wave, account, t, vocabulary_text(net.rng, 6) + f" {wave.link}", urls=[wave.link])


def _reply(net: Network, wave: Wave, _i: int, account: str, t: int) -> None:
    _post(net, wave, account, t, vocabulary_text(net.rng, 7), reply_to=wave.target)


def _hashtags(net: Network, wave: Wave, _i: int, account: str, t: int) -> None:
    text = vocabulary_text(net.rng, 5) + " " + " ".join(f"#{tag}" for tag in wave.tags)
    _post(net, wave, account, t, text, hashtags=list(wave.tags))


#: How a member writes its post in a wave of each kind.
WRITERS: dict[str, Callable[[Network, Wave, int, str, int], None]] = {
    "message": _message,
    "llm_paraphrase": _llm_paraphrase,
    "repost": _repost,
    "text": _text,
    "near_duplicate": _near_duplicate,
    "link": _link,
    "reply": _reply,
    "hashtags": _hashtags,
}
