"""A seeded simulator of a small social network: the demo stream and the tests' input.

It never uses real people's posts. Three kinds of accounts write:

* **organic** accounts post on their own schedule about a mix of topics, reply to and repost each
  other, share varied links and hashtags;
* **machine** accounts post fluent, generic assistant-style text; some of their posts leak chat
  boilerplate ("As an AI language model, ...") as real bot networks do;
* **campaigns**: groups of accounts that, in waves, post the same or lightly paraphrased message with
  the same link and hashtags within seconds of each other, and mass-repost a seed post;
* **LLM paraphrase campaigns** (``llm_campaigns``): accounts that each post their *own* language-model
  paraphrase of one message, with no shared link or hashtag: only the paraphrase network and the
  AI-text detector together catch them.

Machine-written text is real model output: SmolLM2-135M-Instruct's tweets and paraphrases, generated
by ``chorus aitext-generate`` from seeded personas, topics and registers and committed in
``stream/pipeline/demo_posts/`` (a few hundred posts), so the demo measures the detector on what a model
actually writes, not on templates. Organic posts are templates: no real person's words ship here.

Every post carries its ground truth in ``meta["sim"]`` (kind, campaign id, machine-written or not),
so detectors can be evaluated on the demo stream. ``malformed_messages`` yields one broken message
of every kind the validator rejects, with the reason it should get.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

TOPICS: dict[str, list[str]] = {
    "transit": ["bus", "tram", "bike lane", "train", "timetable", "station", "fare", "commute"],
    "food": ["bakery", "ramen", "market", "recipe", "coffee", "brunch", "soup", "tacos"],
    "sport": ["match", "league", "striker", "coach", "derby", "final", "transfer", "keeper"],
    "weather": ["rain", "storm", "heatwave", "fog", "forecast", "snow", "wind", "sunset"],
    "city": ["council", "housing", "rent", "park", "library", "roadworks", "festival", "museum"],
    "tech": ["laptop", "update", "battery", "phone", "app", "outage", "password", "printer"],
}
OPENERS = ["honestly", "ok so", "lol", "ugh", "today", "fun fact:", "PSA:", "not gonna lie", "wow", "hmm"]
ORGANIC_TEMPLATES = [
    "{o} the {w1} near my place is {adj} again",
    "anyone else think the {w1} and the {w2} are {adj} this week?",
    "{o} just saw the {w1}. {adj} is an understatement",
    "can't believe the {w1} got {adj}. who decided that",
    "{o} {w1} > {w2}, fight me",
    "new {w1} opened by the {w2}, it's {adj}",
    "my {w1} took forever today, {adj}",
    "{o} is it just me or is the {w2} {adj} lately",
]
ADJECTIVES = ["great", "awful", "weird", "packed", "closed", "fine", "wild", "slow", "perfect", "a mess"]
#: What the LLM paraphrase campaigns push (each member posts a model's rewording of one of these).
LLM_CAMPAIGN_MESSAGES = [
    "The council is hiding the real cost of the new stadium. Taxpayers will pay for decades. Vote no next week.",
    "Mail-in ballots in our county are not being checked properly. Demand a full audit before the results count.",
    "The new vaccine mandate at work is going too far. Nobody should lose their job over a personal health choice.",
]
LEAKED_BOILERPLATE = [
    "As an AI language model, I don't have personal opinions about the {w1}, but many people find it "
    "important.",
    "I'm sorry, but I can't assist with that. However, the {w1} is a popular topic.",
    "Certainly! Here is a tweet about the {w1}: The {w1} brings us together.",
]
CAMPAIGN_MESSAGES = [
    "The {w1} scandal is being covered up. Share before they delete this!",
    "Everyone is finally waking up about the {w1}. Vote NO on the {w2} plan!",
    "They don't want you to know what happened at the {w1}. Read this now.",
    "Our {w1} deserves better. Stand with us against the {w2} decision!",
]
PARAPHRASE_SWAPS = {
    "Share": "Spread this",
    "finally": "at last",
    "Read this now.": "Look at this.",
    "deserves better": "deserves more",
    "covered up": "hidden",
    "Everyone": "People",
}


#: Real model output for the machine accounts and the LLM paraphrase campaigns (see the module docstring).
DEMO_POSTS_DIR = Path(__file__).resolve().parent / "demo_posts"
MACHINE_POSTS_FILE = DEMO_POSTS_DIR / "smollm2_tweets.jsonl"
PARAPHRASES_FILE = DEMO_POSTS_DIR / "smollm2_paraphrases.jsonl"


@functools.lru_cache(maxsize=4)
def _jsonl(path: Path) -> tuple[dict[str, Any], ...]:
    with path.open(encoding="utf-8") as handle:
        return tuple(json.loads(line) for line in handle if line.strip())


def machine_written_texts() -> tuple[str, ...]:
    """The committed SmolLM2 tweets the machine accounts post."""
    return tuple(row["text"] for row in _jsonl(MACHINE_POSTS_FILE))


def paraphrases_by_message() -> dict[str, list[str]]:
    """Campaign message -> the committed SmolLM2 paraphrases of it, one per persona."""
    out: dict[str, list[str]] = {}
    for row in _jsonl(PARAPHRASES_FILE):
        out.setdefault(row["topic"], []).append(row["text"])
    return out


@dataclass(frozen=True)
class SimulationConfig:
    """Knobs of the simulated network; the defaults make a demo with every kind of behaviour."""

    seed: int = 7
    posts: int = 5_000
    organic_accounts: int = 400
    machine_accounts: int = 25
    campaigns: int = 4
    accounts_per_campaign: int = 12
    #: The stream covers this span, ending ``end`` (default: now, so no post is in the future).
    duration_s: float = 6 * 3600.0
    end: dt.datetime | None = None
    #: Share of posts written by machine accounts and by campaign waves.
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


def simulate_posts(config: SimulationConfig = SimulationConfig()) -> list[dict[str, Any]]:
    """The whole stream, sorted by time. Post ids are unique and stable for a given seed and size."""
    rng = np.random.default_rng(config.seed)
    end = config.end or dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(seconds=5)
    start_s = end.timestamp() - config.duration_s

    organic = [f"user_{i:04d}" for i in range(config.organic_accounts)]
    machines = [f"bot_{i:03d}" for i in range(config.machine_accounts)]
    campaign_accounts = {
        f"campaign_{c}": [f"acct_c{c}_{i:02d}" for i in range(config.accounts_per_campaign)]
        for c in range(config.campaigns)
    }

    n_campaign = int(config.posts * config.campaign_share) if config.campaigns else 0
    n_machine = int(config.posts * config.machine_share) if config.machine_accounts else 0
    llm_members = {
        f"llm_campaign_{c}": [f"acct_p{c}_{i:02d}" for i in range(config.accounts_per_llm_campaign)]
        for c in range(config.llm_campaigns)
    }
    llm_posts = _llm_campaign_posts(rng, llm_members, start_s, config)
    n_organic = config.posts - n_campaign - n_machine - len(llm_posts)

    posts: list[dict[str, Any]] = []
    posts += _organic_posts(rng, organic, n_organic, start_s, config.duration_s)
    posts += _machine_posts(rng, machines, n_machine, start_s, config.duration_s, config.leak_share)
    posts += _campaign_posts(rng, campaign_accounts, n_campaign, start_s, config)
    posts += llm_posts
    posts.sort(key=lambda p: (p["_t"], p["post_id"]))

    # Reposts and replies point at earlier posts; organic ones are sprinkled in by time order.
    for i, post in enumerate(posts):
        kind = post["meta"]["sim"]["kind"]
        if kind == "organic" and i > 10:
            roll = rng.random()
            target = posts[int(rng.integers(max(0, i - 200), i))]
            if roll < 0.08:
                post["repost_of"] = target["post_id"]
                post["text"] = f"RT @{target['account_id']}: {target['text']}"
            elif roll < 0.18:
                post["reply_to"] = target["post_id"]
                post["mentions"] = [target["account_id"]]
                post["text"] = f"@{target['account_id']} {post['text']}"

    for i, post in enumerate(posts):
        t = post.pop("_t")
        # Producers disagree on time formats; the stream sees ISO strings and epoch milliseconds.
        if i % 5 == 0:
            post["created_at"] = int(t * 1000)
        else:
            post["created_at"] = dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z")
    return posts


def _words(rng: np.random.Generator) -> tuple[str, str, str]:
    topic = list(TOPICS)[int(rng.integers(len(TOPICS)))]
    w1, w2 = rng.choice(TOPICS[topic], size=2, replace=False)
    return topic, str(w1), str(w2)


def _post(post_id: str, account: str, t: float, text: str, sim: dict[str, Any]) -> dict[str, Any]:
    return {
        "post_id": post_id,
        "account_id": account,
        "_t": t,
        "text": text,
        "lang": "en",
        "urls": [],
        "hashtags": [],
        "mentions": [],
        "meta": {"sim": sim},
    }


def _organic_posts(
    rng: np.random.Generator, accounts: list[str], n: int, start_s: float, duration_s: float
) -> list[dict[str, Any]]:
    # Heavy-tailed activity: a few accounts post a lot, most rarely, as on real networks.
    activity = rng.pareto(1.5, size=len(accounts)) + 0.1
    authors = rng.choice(len(accounts), size=n, p=activity / activity.sum())
    times = start_s + rng.random(n) * duration_s
    posts = []
    for i in range(n):
        topic, w1, w2 = _words(rng)
        template = ORGANIC_TEMPLATES[int(rng.integers(len(ORGANIC_TEMPLATES)))]
        text = template.format(
            o=OPENERS[int(rng.integers(len(OPENERS)))], w1=w1, w2=w2,
            adj=ADJECTIVES[int(rng.integers(len(ADJECTIVES)))],
        )
        post = _post(f"o{i:07d}", accounts[authors[i]], float(times[i]), text,
                     {"kind": "organic", "machine": False, "campaign": None})
        if rng.random() < 0.15:
            post["urls"] = [f"https://news.example/{topic}/{int(rng.integers(1_000_000))}"]
            post["text"] += " " + post["urls"][0]
        if rng.random() < 0.2:
            post["hashtags"] = [topic]
            post["text"] += f" #{topic}"
        posts.append(post)
    return posts


def _machine_posts(
    rng: np.random.Generator, accounts: list[str], n: int, start_s: float, duration_s: float,
    leak_share: float,
) -> list[dict[str, Any]]:
    times = start_s + rng.random(n) * duration_s
    posts = []
    for i in range(n):
        topic, w1, w2 = _words(rng)
        leaked = rng.random() < leak_share
        pool = LEAKED_BOILERPLATE if leaked else machine_written_texts()
        text = pool[int(rng.integers(len(pool)))]
        text = text.format(w1=w1, w2=w2) if leaked else text
        post = _post(f"m{i:07d}", accounts[int(rng.integers(len(accounts)))], float(times[i]), text,
                     {"kind": "machine", "machine": True, "campaign": None, "leaked_boilerplate": leaked})
        post["hashtags"] = [topic, "inspiration"] if rng.random() < 0.5 else []
        if post["hashtags"]:
            post["text"] += " " + " ".join(f"#{h}" for h in post["hashtags"])
        posts.append(post)
    return posts


def _campaign_posts(
    rng: np.random.Generator, campaigns: dict[str, list[str]], n: int, start_s: float,
    config: SimulationConfig,
) -> list[dict[str, Any]]:
    posts: list[dict[str, Any]] = []
    if not campaigns or n == 0:
        return posts
    counter = 0
    for c, (campaign, members) in enumerate(campaigns.items()):
        # Split n exactly: the stream has as many posts as asked for.
        per_campaign = n // len(campaigns) + (1 if c < n % len(campaigns) else 0)
        made = 0
        wave = 0
        while made < per_campaign:
            _topic, w1, w2 = _words(rng)
            wave_start = start_s + rng.random() * (config.duration_s - config.campaign_spread_s - 60)
            link = f"https://bit.example/{campaign}-{wave}"
            tag = f"{w1.replace(' ', '')}gate"
            message = CAMPAIGN_MESSAGES[(c + wave) % len(CAMPAIGN_MESSAGES)].format(w1=w1, w2=w2)
            seed_id = None
            for account in members:
                if made >= per_campaign:
                    break
                t = wave_start + rng.random() * config.campaign_spread_s
                text = _paraphrase(rng, message) if rng.random() < 0.4 else message
                post = _post(f"c{counter:07d}", account, float(t), f"{text} {link} #{tag}",
                             {"kind": "campaign", "machine": False, "campaign": campaign, "wave": wave})
                post["urls"] = [link]
                post["hashtags"] = [tag]
                if seed_id is None:
                    seed_id = post["post_id"]
                elif rng.random() < 0.3:
                    # Amplification: a burst of reposts of the wave's first post.
                    post["repost_of"] = seed_id
                    post["text"] = f"RT @{members[0]}: {message} {link} #{tag}"
                posts.append(post)
                counter += 1
                made += 1
            wave += 1
    return posts


def _llm_campaign_posts(
    rng: np.random.Generator, campaigns: dict[str, list[str]], start_s: float, config: SimulationConfig
) -> list[dict[str, Any]]:
    """Each wave: one message, every member posting its own model paraphrase of it within the spread."""
    posts: list[dict[str, Any]] = []
    if not campaigns:
        return posts
    by_message = paraphrases_by_message()
    # the messages with the most faithful rewordings first (see stream/pipeline/demo_posts/README.md)
    usable = [m for m, versions in by_message.items() if len(versions) >= 2]
    messages = sorted(usable, key=lambda m: (-len(by_message[m]), m))
    counter = 0
    for c, (campaign, members) in enumerate(campaigns.items()):
        for wave in range(config.llm_campaign_waves):
            message = messages[(c * config.llm_campaign_waves + wave) % len(messages)]
            versions = by_message[message]
            order = rng.permutation(len(versions))
            wave_start = start_s + rng.random() * (config.duration_s - config.campaign_spread_s - 60)
            for i, account in enumerate(members):
                text = versions[int(order[i % len(versions)])]
                t = wave_start + rng.random() * config.campaign_spread_s
                posts.append(_post(f"p{counter:07d}", account, float(t), text,
                                   {"kind": "campaign", "machine": True, "campaign": campaign, "wave": wave}))
                counter += 1
    return posts


def _paraphrase(rng: np.random.Generator, message: str) -> str:
    for old, new in PARAPHRASE_SWAPS.items():
        if old in message and rng.random() < 0.7:
            message = message.replace(old, new)
    return message


def malformed_messages(now: dt.datetime | None = None) -> Iterator[tuple[str, bytes]]:
    """One broken message of each kind the validator rejects: (expected reason, raw bytes)."""
    now = now or dt.datetime.now(dt.UTC)
    good = {"post_id": "bad-0", "account_id": "a", "created_at": int(now.timestamp()), "text": "hello"}

    def variant(i: int, **changes: Any) -> bytes:
        post = {**good, "post_id": f"bad-{i}", **changes}
        for key, value in list(post.items()):
            if value is _DROP:
                del post[key]
        return json.dumps(post).encode()

    yield "empty_message", b""
    yield "invalid_utf8", b'{"post_id": "bad-utf8", "text": "\xff\xfe"}'
    yield "not_json", b"this is not json {"
    yield "not_an_object", b'["a", "list", "is", "not", "a", "post"]'
    yield "missing_field", variant(1, account_id=_DROP)
    yield "wrong_type", variant(2, post_id=12345)
    yield "wrong_type", variant(3, urls="https://not-a-list.example")
    yield "invalid_timestamp", variant(4, created_at="last tuesday")
    yield "unsupported_schema_version", variant(5, schema_version=99)
    yield "nul_character", variant(9, text="hello\u0000world")
    yield "empty_text", variant(6, text="   ")
    yield "text_too_long", variant(7, text="x" * 40_000)
    yield "future_timestamp", variant(8, created_at=int(now.timestamp()) + 86_400)


_DROP = object()
