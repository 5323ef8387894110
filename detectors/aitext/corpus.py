"""Training pieces for the AI-text detector: post-length, cut the same way for both classes.

Why cut: the modern-LLM corpora are 80-600-word documents while posts are one to three sentences.
A detector trained on whole documents learns length, layout and domain; one trained on pieces cut
from human documents *and* their machine counterparts by one rule (:func:`cut_pieces`, applied to
every row whatever its label) learns only the writing. Tweets go through the same rule, so a tweet
of up to three sentences and 8-60 words stays whole.

Why strip markers: in AIGC-Election the machine tweets carry hashtags in 97% of rows against 21% of
the human ones, emoji in 51% against 11%. :func:`detectors.aitext.text.strip_markers` removes
hashtags, emoji and placeholders from both classes at training *and* scoring time (the same function
``triage`` calls), so the detector cannot lean on them.

Why split by key: a person's or a prompt's posts resemble each other, so rows of one account or
group in both train and evaluate would overstate quality. :func:`split_by_key` sends every key
whole to one split, by a stable hash, so adding data never moves an existing key.

All functions are pure (strings and frames in, strings and frames out); reading the corpora is
``stream``'s job (:mod:`stream.training.corpus`).
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Mapping

import polars as pl

from detectors.aitext.text import strip_markers

__all__ = ["strip_markers"]  # text preparation lives in detectors.aitext.text; re-exported for the corpus

#: A piece's length bounds in words (CJK characters count one word each) and its sentence count.
MIN_PIECE_WORDS, MAX_PIECE_WORDS, MAX_PIECE_SENTENCES = 8, 60, 3

#: Latin and CJK (U+3002, U+FF01, U+FF1F) sentence ends; CJK needs no space after them.
_SENTENCE_BREAK = re.compile(r"(?<=[.!?\u2026\u3002\uff01\uff1f])\s+|(?<=[\u3002\uff01\uff1f])|\n+")
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
_WORDISH = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")


def word_count(text: str) -> int:
    """Whitespace words, with each CJK character counted as one (those scripts have no spaces)."""
    return len(_WORDISH.findall(text))


def sentences(text: str) -> list[str]:
    """Sentences by end punctuation (Latin and CJK) and line breaks; empty ones dropped."""
    return [s.strip() for s in _SENTENCE_BREAK.split(text) if s and s.strip()]


def cut_pieces(
    text: str,
    *,
    min_words: int = MIN_PIECE_WORDS,
    max_words: int = MAX_PIECE_WORDS,
    max_sentences: int = MAX_PIECE_SENTENCES,
) -> list[str]:
    """Consecutive runs of 1-``max_sentences`` sentences of ``min_words``-``max_words`` words.

    Each piece's target sentence count (1, 2 or 3) comes from a hash of the text and its position,
    so the cut is reproducible and varied without a random state, and never looks at the label.
    A run still under ``min_words`` at ``max_sentences`` is dropped; so is one over ``max_words``.
    """
    parts = sentences(text)
    pieces: list[str] = []
    start = 0
    salt = zlib.crc32(text.encode("utf-8", "surrogatepass"))
    while start < len(parts):
        target = 1 + (salt + start) % max_sentences
        end, words = start, 0
        while end < len(parts) and (end - start < target or words < min_words) and end - start < max_sentences:
            words += word_count(parts[end])
            end += 1
        if min_words <= words <= max_words:
            pieces.append(" ".join(parts[start:end]))
        start = end
    return pieces


#: Generator families: ``source_model`` strings of the corpora mapped to the model family that wrote
#: them, so leave-one-generator-out removes a family (GPT-4o and GPT-4 are one vendor's, but different
#: models: they stay apart). Anything not listed keeps its own name.
GENERATOR_FAMILIES: Mapping[str, str] = {
    "gpt-4o": "gpt-4o",
    "gpt-4": "gpt-4",
    "gpt-3.5-turbo": "gpt-3.5",
    "davinci": "gpt-3",
    "claude-3-sonnet": "claude-3",
    "gemini-1.5": "gemini-1.5",
    "gemini-1.5-pro": "gemini-1.5",
    "llama-3-8b": "llama-3",
    "llama-3-70b": "llama-3",
    "llama-2-70b-chat": "llama-2",
    "llama2_7b": "llama-2",
    "llama2_13b": "llama-2",
    "llama2_70b": "llama-2",
    "vicuna-v1.3_7b": "vicuna",
    "vicuna-v1.3_13b": "vicuna",
    "vicuna-v1.3_33b": "vicuna",
    "qwen2.5-coder-0.5b": "qwen2.5",
    "qwen2.5-coder-1.5b": "qwen2.5",
    "gemma-3-270m": "gemma-3",
}
#: Families of instruction-tuned models from 2022 on: the ones the detector must catch.
MODERN_FAMILIES: frozenset[str] = frozenset(
    {
        "gpt-4o", "gpt-4", "gpt-3.5", "claude-3", "gemini-1.5", "llama-3", "llama-2", "vicuna",
        "smollm2", "qwen2.5", "gemma-3",
    }
)


def generator_family(source_model: str) -> str:
    """The family of ``source_model`` (``human`` stays ``human``)."""
    return GENERATOR_FAMILIES.get(source_model, source_model)


def stable_unit(key: str, seed: int) -> float:
    """A number in [0, 1) fixed by ``key`` and ``seed`` (SHA-1, so it is the same on every machine)."""
    digest = hashlib.sha1(f"{seed}:{key}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_by_key(
    frame: pl.DataFrame, key: str = "account", fractions: Mapping[str, float] | None = None, seed: int = 0
) -> pl.DataFrame:
    """``frame`` with a ``split`` column: every value of ``key`` whole in one of ``fractions``' splits."""
    fractions = dict(fractions or {"train": 0.6, "calibrate": 0.2, "evaluate": 0.2})
    total = sum(fractions.values())
    keys = frame.get_column(key).unique().sort().to_list()
    bounds: list[tuple[float, str]] = []
    acc = 0.0
    for name, share in fractions.items():
        acc += share / total
        bounds.append((acc, name))
    mapping = {}
    for k in keys:
        u = stable_unit(str(k), seed)
        mapping[k] = next((name for bound, name in bounds if u < bound), bounds[-1][1])
    return frame.with_columns(pl.col(key).replace_strict(mapping, return_dtype=pl.String).alias("split"))


def explode_pieces(frame: pl.DataFrame, text: str = "text") -> pl.DataFrame:
    """One row per piece of each row's ``text`` (other columns repeated), ``piece`` numbering them."""
    cut = frame.with_columns(
        pl.col(text).map_elements(cut_pieces, return_dtype=pl.List(pl.String)).alias(text)
    ).explode(text)
    return cut.drop_nulls(text).with_columns(pl.int_range(pl.len()).over("id").alias("piece"))
