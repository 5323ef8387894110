"""What simulated accounts write: word lists, templates, and the committed model output.

No real person's words ship here. Organic demo posts are templates over topic words; the co-action
stream's texts are Zipf draws from a made-up vocabulary (so organic texts share common words, as
real ones do); machine-written demo posts are real SmolLM2 output committed in ``demo_posts/``
(see its README for the commands that wrote them).
"""

from __future__ import annotations

import functools
import json
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
    "As an AI language model, I don't have personal opinions about the {w1}, but many people find it important.",
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
#: The co-action stream's vocabulary: ``w0`` (most common) .. ``w399``, plus words whose case,
#: apostrophes and dots exercise text normalisation.
VOCABULARY = np.array([f"w{i}" for i in range(400)] + ["Vote", "NEWS", "today", "don't", "U.S.A."])

#: Real model output for the machine accounts and the LLM paraphrase campaigns.
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


def topic_words(rng: np.random.Generator) -> tuple[str, str, str]:
    """A topic and two different words of it."""
    topic = list(TOPICS)[int(rng.integers(len(TOPICS)))]
    w1, w2 = rng.choice(TOPICS[topic], size=2, replace=False)
    return topic, str(w1), str(w2)


def template_text(rng: np.random.Generator) -> tuple[str, str]:
    """An organic demo post's text from a template, and its topic."""
    topic, w1, w2 = topic_words(rng)
    template = ORGANIC_TEMPLATES[int(rng.integers(len(ORGANIC_TEMPLATES)))]
    text = template.format(
        o=OPENERS[int(rng.integers(len(OPENERS)))], w1=w1, w2=w2, adj=ADJECTIVES[int(rng.integers(len(ADJECTIVES)))]
    )
    return text, topic


def vocabulary_text(rng: np.random.Generator, n: int) -> str:
    """``n`` words drawn Zipf-like, so that unrelated texts share common words as real ones do."""
    ranks = np.minimum(rng.zipf(1.3, size=n), len(VOCABULARY)) - 1
    return " ".join(VOCABULARY[ranks])


def swap_paraphrase(rng: np.random.Generator, message: str) -> str:
    """A campaign member's light rewording of the message (a few fixed word swaps, each likely)."""
    for old, new in PARAPHRASE_SWAPS.items():
        if old in message and rng.random() < 0.7:
            message = message.replace(old, new)
    return message
