"""Broken messages for the pipeline's tests and the demo: one of every kind the validator rejects."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any


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
