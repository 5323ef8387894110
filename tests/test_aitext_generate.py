"""``chorus aitext-generate``'s prompts, cleaning and weight joining, without running a model."""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl
import pytest

from stream.models.weights import ModelNotInstalledError, WeightMismatchError
from stream.training.corpus import imitation_accounts
from stream.training.generate import clean_generation, draw_prompts
from stream.training.generator_weights import GeneratorWeights, assemble

ACCOUNTS = {
    "ira_2017:a": ["first tweet of a about the rain", "second tweet of a, on the bus", "third one from a #city"],
    "ira_2017:b": ["b says the match was great", "b is at the market again", "b hates the new timetable"],
    "tweepfake:c": ["only one tweet here"],
}


def test_imitation_prompts_show_real_tweets_of_one_account_and_are_seeded() -> None:
    prompts = draw_prompts(200, seed=3, accounts=ACCOUNTS, imitate_share=0.5)
    assert prompts == draw_prompts(200, seed=3, accounts=ACCOUNTS, imitate_share=0.5)
    imitations = [p for p in prompts if p.register == "imitate"]
    assert 60 < len(imitations) < 140  # about half
    for p in imitations:
        assert p.persona in {"ira_2017:a", "ira_2017:b"}  # c has too few tweets to imitate
        assert len(set(p.examples)) == 3 and set(p.examples) <= set(ACCOUNTS[p.persona])
        assert all(f"- {e}" in p.instruction for e in p.examples)
        assert p.few_shot.startswith(f"Tweets by @{p.persona.split(':')[1]}:\n") and p.few_shot.endswith("\n-")
    others = [p for p in prompts if p.register != "imitate"]
    assert others and all(p.examples == () and p.topic for p in others)
    assert all(0.7 <= p.temperature <= 1.3 and 0.85 <= p.top_p <= 0.98 for p in prompts)


def test_imitation_needs_accounts_with_enough_tweets() -> None:
    with pytest.raises(ValueError, match="at least 3 tweets"):
        draw_prompts(5, seed=0, accounts={"x": ["one", "two"]}, imitate_share=1.0)


@pytest.mark.parametrize(
    ("answer", "post"),
    [
        ('Sure! Here it is:\n"Rain again in Berlin, my umbrella gave up on me today"', "Rain again in Berlin, my umbrella gave up on me today"),  # noqa: E501
        ("- finally home after the longest shift ever\n- next item", "finally home after the longest shift ever"),
        ("Absolutely, here is a new tweet the person might post next:", None),
        ("No quotes. No hashtags. No explanation. I want to talk about a new hobby!", None),
        ("Hey [Friend's Name], just watched your favorite movie! It's so awesome!", None),
        ("too short", None),
        ("Long enough sentence that ends here. And then it is cut off by", "Long enough sentence that ends here."),
    ],
)
def test_clean_generation_keeps_only_a_post(answer: str, post: str | None) -> None:
    assert clean_generation(answer) == post


def test_imitated_accounts_come_from_the_train_split_only() -> None:
    rows = []
    for split, account in (("train", "ira_2017:t"), ("evaluate", "ira_2017:e"), ("train", "tweeteval:x")):
        for i in range(4):
            rows.append(
                {"id": f"{account}{i}", "text_raw": f"tweet number {i} from {account} today", "label": 0,
                 "source": account.split(":")[0], "account": account, "split": split}
            )  # fmt: skip
    rows.append({"id": "m", "text_raw": "a machine tweet with enough words", "label": 1, "source": "ira_2017",
                 "account": "ira_2017:m", "split": "train"})  # fmt: skip
    accounts = imitation_accounts(pl.DataFrame(rows))
    assert list(accounts) == ["ira_2017:t"]
    assert sorted(accounts["ira_2017:t"]) == [f"tweet number {i} from ira_2017:t today" for i in range(4)]


def _parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunks: list[bytes]) -> tuple[str, ...]:
    modules = []
    for i, chunk in enumerate(chunks, start=1):
        data = tmp_path / "site" / f"fake_weights_part{i}" / "data"
        data.mkdir(parents=True)
        (data.parent / "__init__.py").write_text("")
        (data / f"part{i:02d}.bin").write_bytes(chunk)
        modules.append(f"fake_weights_part{i}")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return tuple(modules)


def test_parts_are_joined_in_order_and_checked_by_sha256(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chunks = [b"GGUF" + b"a" * 100, b"b" * 50, b"c" * 7]
    modules = _parts(tmp_path, monkeypatch, chunks)
    good = GeneratorWeights("fake", "fake", "fake.gguf", hashlib.sha256(b"".join(chunks)).hexdigest(), modules, "base")
    path = assemble(good, tmp_path / "models")
    assert path.read_bytes() == b"".join(chunks)
    assert not list((tmp_path / "models").glob("*.partial"))

    reordered = GeneratorWeights("r", "r", "r.gguf", good.sha256, tuple(reversed(modules)), "base")
    with pytest.raises(WeightMismatchError, match=r"r\.gguf"):
        assemble(reordered, tmp_path / "models")
    missing = GeneratorWeights("m", "m", "m.gguf", good.sha256, (*modules, "fake_weights_part9"), "base")
    with pytest.raises(ModelNotInstalledError, match="fake-weights-part9"):
        assemble(missing, tmp_path / "other")
