"""The post format: what is accepted, what is quarantined and why, and that the fast path agrees."""

from __future__ import annotations

import base64
import datetime as dt
import json

import msgspec
import numpy as np
import polars as pl
import pytest

from stream.kafka.messages import (
    REJECTION_REASONS,
    EmbeddedPostV1,
    PostValidator,
    RawMessage,
    encode_embedding,
    encode_post,
)
from stream.simulation import SimulationConfig, malformed_messages, simulate_posts

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


def messages(*values: bytes) -> list[RawMessage]:
    return [RawMessage("posts", 0, i, None, v) for i, v in enumerate(values)]


def post(**fields: object) -> bytes:
    base = {"post_id": "p1", "account_id": "a1", "created_at": "2026-11-22T11:00:00Z", "text": "hello"}
    return json.dumps({**base, **fields}).encode()


@pytest.mark.parametrize(
    ("created_at", "expected"),
    [
        ("2026-11-22T11:00:00Z", dt.datetime(2026, 11, 22, 11, 0, tzinfo=dt.UTC)),
        ("2026-11-22T13:00:00+02:00", dt.datetime(2026, 11, 22, 11, 0, tzinfo=dt.UTC)),
        ("2026-11-22T11:00:00.250", dt.datetime(2026, 11, 22, 11, 0, 0, 250_000, tzinfo=dt.UTC)),
        (1795345200, dt.datetime(2026, 11, 22, 11, 0, tzinfo=dt.UTC)),
        (1795345200.5, dt.datetime(2026, 11, 22, 11, 0, 0, 500_000, tzinfo=dt.UTC)),
        (1795345200123, dt.datetime(2026, 11, 22, 11, 0, 0, 123_000, tzinfo=dt.UTC)),
    ],
)
def test_timestamps_in_every_accepted_form_become_utc(created_at: object, expected: dt.datetime) -> None:
    batch = PostValidator().validate(messages(post(created_at=created_at)), now=NOW)
    assert batch.rejected == []
    assert batch.posts["created_at"][0] == expected


def test_a_full_post_keeps_every_field() -> None:
    raw = post(lang="en", reply_to="p0", repost_of=None, quote_of="p9", urls=["https://x.example/a"],
               hashtags=["tag"], mentions=["bob"], meta={"client": "web", "n": 3}, unknown_future_field=1)
    batch = PostValidator().validate([RawMessage("posts", 3, 42, b"a1", raw)], now=NOW)
    row = batch.posts.row(0, named=True)
    assert row["reply_to"] == "p0" and row["quote_of"] == "p9" and row["repost_of"] is None
    assert row["urls"] == ["https://x.example/a"] and row["hashtags"] == ["tag"] and row["mentions"] == ["bob"]
    assert (row["source_topic"], row["source_partition"], row["source_offset"]) == ("posts", 3, 42)
    assert batch.records[0].meta == {"client": "web", "n": 3}
    assert batch.posts.schema["created_at"] == pl.Datetime("us", "UTC")


def test_every_kind_of_malformed_message_is_rejected_with_its_reason() -> None:
    broken = list(malformed_messages(now=NOW))
    assert {reason for reason, _ in broken} == set(REJECTION_REASONS) - {"message_too_large", "store_rejected"}
    good = [encode_post(p) for p in simulate_posts(SimulationConfig(posts=20, end=NOW))]
    batch = PostValidator().validate(messages(*good, *(raw for _, raw in broken)), now=NOW)
    assert batch.posts.height == 20
    got = {r.message.offset: r.reason for r in batch.rejected}
    assert got == {20 + i: reason for i, (reason, _) in enumerate(broken)}
    assert all(r.error for r in batch.rejected)


def test_oversized_messages_are_rejected_before_parsing() -> None:
    validator = PostValidator(max_message_bytes=100)
    batch = validator.validate(messages(post(text="x" * 200)), now=NOW)
    assert [r.reason for r in batch.rejected] == ["message_too_large"]
    assert "limit is 100" in batch.rejected[0].error


def test_text_size_limit_counts_bytes_not_characters() -> None:
    validator = PostValidator(max_text_bytes=10)
    batch = validator.validate(messages(post(post_id="a", text="ééééé"), post(post_id="b", text="éééééé")), now=NOW)
    assert batch.posts["post_id"].to_list() == ["a"]
    assert [r.reason for r in batch.rejected] == ["text_too_long"]


def test_future_skew_is_configurable() -> None:
    soon = (NOW + dt.timedelta(seconds=60)).isoformat()
    assert PostValidator(future_skew_s=300).validate(messages(post(created_at=soon)), now=NOW).rejected == []
    late = PostValidator(future_skew_s=30).validate(messages(post(created_at=soon)), now=NOW)
    assert [r.reason for r in late.rejected] == ["future_timestamp"]


def test_two_posts_spliced_into_one_message_are_not_smuggled_through() -> None:
    spliced = post(post_id="x") + b"," + post(post_id="y")
    batch = PostValidator().validate(messages(post(post_id="ok"), spliced), now=NOW)
    assert batch.posts["post_id"].to_list() == ["ok"]
    assert [r.reason for r in batch.rejected] == ["not_json"]


def test_fast_path_and_message_by_message_path_agree() -> None:
    raws = [encode_post(p) for p in simulate_posts(SimulationConfig(posts=300, end=NOW))]
    validator = PostValidator()
    fast = validator.validate(messages(*raws), now=NOW)
    slow = validator.validate(messages(*raws, b"not json"), now=NOW)
    assert fast.posts.equals(slow.posts)
    assert [r.reason for r in slow.rejected] == ["not_json"]


def test_a_post_repeated_in_one_batch_is_kept_once_last_copy_wins() -> None:
    batch = PostValidator().validate(messages(post(text="first"), post(text="second")), now=NOW)
    assert batch.posts["text"].to_list() == ["second"]
    assert len(batch.records) == 1 and batch.records[0].text == "second"


def test_an_empty_batch_is_fine() -> None:
    batch = PostValidator().validate([], now=NOW)
    assert batch.posts.height == 0 and batch.rejected == []


def test_embedded_posts_carry_their_vector_exactly_and_bad_vectors_are_rejected() -> None:
    vector = np.array([0.1, -2.5, 3e-8, 1.0], dtype=np.float32)
    post = {"post_id": "e1", "account_id": "a", "created_at": 1.7e9, "text": "hello"}
    good = msgspec.json.encode(EmbeddedPostV1(**post, embedding=encode_embedding(vector), embedding_model="m"))
    plain = msgspec.json.encode({**post, "post_id": "e2"})
    truncated = msgspec.json.encode({**post, "post_id": "e3", "embedding": base64.b64encode(b"abcdef").decode()})
    messages = [RawMessage("t", 0, i, None, v) for i, v in enumerate([good, plain, truncated])]
    batch = PostValidator(embeddings=True).validate(messages)
    assert batch.posts["post_id"].to_list() == ["e1", "e2"]
    assert np.array_equal(np.array(batch.posts["embedding"][0], dtype=np.float32), vector)  # bit for bit
    assert batch.posts["embedding"][1] is None  # a post without one takes part in every other type
    assert [(r.message.offset, r.reason) for r in batch.rejected] == [(2, "wrong_type")]
    assert "multiple of 4" in batch.rejected[0].error
    # A NaN row (not scored) is sent as no embedding; a plain validator ignores the field.
    assert encode_embedding(np.array([np.nan, 1.0])) is None
    assert "embedding" not in PostValidator().validate(messages[:1]).posts.columns


def test_invalid_utf8_is_named_as_such_whatever_the_json_library_says() -> None:
    # msgspec 0.23 reports bad UTF-8 as a plain decode error; the reason must not follow its wording.
    inside_a_string = b'{"post_id": "u1", "account_id": "a", "created_at": 1.7e9, "text": "caf\xc3"}'
    lone_surrogate = b'{"post_id": "u2", "account_id": "a", "created_at": 1.7e9, "text": "\xed\xa0\x80"}'
    outside = b'\xff{"post_id": "u3"}'
    for batch in (messages(inside_a_string, lone_surrogate, outside), messages(post(post_id="ok"), inside_a_string)):
        rejected = PostValidator().validate(batch, now=NOW).rejected
        assert rejected and {r.reason for r in rejected} == {"invalid_utf8"}
        assert all("not valid UTF-8: byte" in r.error for r in rejected)
