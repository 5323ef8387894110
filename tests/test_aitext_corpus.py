"""The modern-LLM corpus builder: one cutting rule for both classes, whole keys per split, markers stripped."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest

from detectors.aitext.corpus import (
    MAX_PIECE_WORDS,
    MIN_PIECE_WORDS,
    cut_pieces,
    generator_family,
    sentences,
    split_by_key,
    strip_markers,
    word_count,
)
from stream.models.weights import WeightMismatchError, verify_weight_file
from stream.training.corpus import Source, build_corpus

ARTICLE = (
    "The council met on Tuesday to discuss the new budget. Several members raised concerns about road repairs. "
    "The mayor said the plan would be revised before the next vote. Residents who attended were mostly supportive. "
    "One speaker asked why the library hours had been cut again this year. The answer did not satisfy everyone. "
    "A final decision is expected next month, after a second public hearing."
)
REWRITE = (
    "On Tuesday, the council convened to deliberate on the proposed budget. Members voiced concerns regarding "
    "road maintenance. The mayor assured attendees that the plan would be refined ahead of the upcoming vote. "
    "Most residents in attendance expressed support. Notably, one speaker questioned the repeated reduction in "
    "library hours. Ultimately, a decision is anticipated next month following a second hearing."
)


def test_pieces_are_post_length_and_the_cut_ignores_the_label() -> None:
    for text in (ARTICLE, REWRITE):
        pieces = cut_pieces(text)
        assert len(pieces) >= 2
        for piece in pieces:
            assert MIN_PIECE_WORDS <= word_count(piece) <= MAX_PIECE_WORDS
            assert 1 <= len(sentences(piece)) <= 3
            assert piece in text  # consecutive sentences, untouched
    # a short tweet stays whole; a too-short one is dropped; CJK counts characters as words
    assert cut_pieces("Can't believe the game went to overtime again, what a night for the fans!") == [
        "Can't believe the game went to overtime again, what a night for the fans!"
    ]
    assert cut_pieces("So tired.") == []
    assert word_count("我们今天去公园散步") == 9


def test_markers_are_stripped_from_any_post() -> None:
    raw = "BREAKING 🚨🇺🇸 Hunter's laptop #BidenCrimeFamily @bob https://t.co/x 👍🏽 big if true! #Delaware"
    assert strip_markers(raw) == "BREAKING Hunter's laptop big if true!"
    assert strip_markers("C# and F# are languages &#8220;quoted&#8221;") == "C# and F# are languages \u201cquoted\u201d"


def test_split_by_key_keeps_every_key_whole_and_is_stable() -> None:
    frame = pl.DataFrame({"account": [f"a{i % 50}" for i in range(1000)], "x": range(1000)})
    split = split_by_key(frame, seed=3)
    per_key = split.group_by("account").agg(pl.col("split").n_unique())
    assert per_key["split"].max() == 1
    assert set(split["split"]) == {"train", "calibrate", "evaluate"}
    again = split_by_key(frame.vstack(pl.DataFrame({"account": ["new"], "x": [0]})), seed=3)
    assert again.head(1000)["split"].to_list() == split["split"].to_list()  # adding a key moves no other


def test_generator_families_group_model_sizes_but_keep_vendors_models_apart() -> None:
    assert generator_family("llama-3-8b") == generator_family("llama-3-70b") == "llama-3"
    assert generator_family("gpt-4o") != generator_family("gpt-4")
    assert generator_family("human") == "human"


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def test_the_builder_on_a_tiny_corpus(tmp_path: Path) -> None:
    rows = []
    for i in range(40):
        group = f"item{i}"
        rows.append({"id": f"h{i}", "text": ARTICLE, "label": 0, "source_model": "human", "group": group})
        machine = REWRITE + f" #tag{i} 🚀"
        rows.append({"id": f"m{i}", "text": machine, "label": 1, "source_model": "gpt-4o", "group": group})
    _write_jsonl(tmp_path / "aitext" / "tiny.jsonl.gz", rows)
    generated = tmp_path / "generated.jsonl"
    generated.write_text(
        "".join(
            json.dumps({"text": REWRITE, "model": "smollm2", "persona": f"p{i % 4}", "topic": "t"}) + "\n"
            for i in range(12)
        )
    )
    tiny = [Source("tiny", "aitext/tiny.jsonl.gz", 10_000, 10_000)]
    corpus = build_corpus(tmp_path, sources=tiny, seed=1, generated=[generated])
    assert set(corpus["label"]) == {0, 1} and set(corpus["generator"]) == {"human", "gpt-4o", "smollm2"}
    local = corpus.filter(pl.col("source") == "local_models")
    assert local.height > 12 and set(local["label"]) == {1}  # cut like every other source
    # both classes went through the same cut: every piece is post-length, whatever its label
    words = corpus["text"].map_elements(word_count, return_dtype=pl.Int64)
    assert words.min() >= MIN_PIECE_WORDS - 2 and words.max() <= MAX_PIECE_WORDS  # stripping may drop a tag
    assert not corpus["text"].str.contains("#|🚀").any()
    # a group (a human item and its rewrite) lies whole in one split
    assert corpus.group_by("account").agg(pl.col("split").n_unique())["split"].max() == 1
    assert set(corpus["split"]) == {"train", "calibrate", "evaluate"}
    again = build_corpus(tmp_path, sources=tiny, seed=1, generated=[generated])
    assert again.equals(corpus)  # seeded and reproducible


def test_a_weight_file_with_another_sha256_is_refused(tmp_path: Path) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"not the weights")
    good = "5b6a4fb4b0b1b1d1a4b3f2ae4a1b9ce5e5b2a6cf8db5a37c5c5a2e1b7b1f8a70"
    with pytest.raises(WeightMismatchError, match="expected 5b6a4fb4"):
        verify_weight_file(weights, good)
    import hashlib

    assert verify_weight_file(weights, hashlib.sha256(b"not the weights").hexdigest()) == weights
