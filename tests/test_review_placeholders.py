"""Placeholders in a statement of reasons (stream/review/placeholders.py), pure: no store, no Streamlit.

What these prove: known placeholders are filled from the case's values, each occurrence, in one pass
(a value that looks like a placeholder is not filled again), and left as written when the case has no
value; free ``[[...]]`` placeholders are found as written (multi-line and empty ones too) and never
filled; what is left to fill is listed and the refusal names it; braces around other words are not
placeholders but are reported as a template's typo; the reason code fills ``{reason}`` in words.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from stream.review.placeholders import (
    KNOWN_PLACEHOLDERS,
    case_values,
    fill,
    free_placeholders,
    known_placeholders,
    refusal,
    unfilled,
    unknown_placeholders,
)
from stream.review.vocabulary import REASON_CODES

TEMPLATE = (
    "Your post {post_id} from account {account} was labelled: {reason}. "
    "[[explain what was misleading]]. Posted {posted_at}; see also {post_id}."
)


def test_known_placeholders_are_filled_from_the_case_every_time_they_occur() -> None:
    values = case_values(
        account="acct-7", post_id="p42", posted_at=datetime(2026, 5, 4, 9, 30, tzinfo=UTC),
        reason_code="undisclosed_ai_text",
    )  # fmt: skip
    filled = fill(TEMPLATE, values)
    assert filled == (
        "Your post p42 from account acct-7 was labelled: Machine-written text presented as a person's own. "
        "[[explain what was misleading]]. Posted 2026-05-04 09:30 UTC; see also p42."
    )
    assert unfilled(filled) == ["[[explain what was misleading]]"]


def test_a_placeholder_without_a_value_stays_and_is_left_to_fill() -> None:
    filled = fill("Account {account} is in campaign {campaign}.", case_values(account="acct-7"))
    assert filled == "Account acct-7 is in campaign {campaign}."
    assert unfilled(filled) == ["{campaign}"]
    assert fill("{account}", {"account": ""}) == "{account}", "an empty value fills nothing"


def test_filling_is_one_pass_values_are_never_filled_again() -> None:
    assert fill("{account} / {post_id}", {"account": "{post_id}", "post_id": "p1"}) == "{post_id} / p1"


def test_free_placeholders_are_found_as_written_and_never_filled() -> None:
    text = "A [[first thing]] and [[a\nsecond]] and [[]] and [[first thing]] again; [single] is text."
    assert free_placeholders(text) == ["[[first thing]]", "[[a\nsecond]]", "[[]]"]
    assert fill(text, {"account": "x"}) == text
    assert free_placeholders(None) == [] and unfilled("") == []


def test_other_braces_are_text_and_a_templates_typo() -> None:
    text = "Hi {acount}, your {post_id} and {} and {1} are here"
    assert known_placeholders(text) == ["post_id"]
    assert unknown_placeholders(text) == ["{acount}"]
    assert fill(text, {"post_id": "p1"}) == "Hi {acount}, your p1 and {} and {1} are here"
    assert unfilled(fill(text, {"post_id": "p1"})) == [], "a typo is not something a reviewer is asked to fill"


def test_the_refusal_names_what_is_left_and_nothing_when_done() -> None:
    message = refusal("Because [[why]] in {campaign}")
    assert message is not None
    assert "2 placeholder(s)" in message and "[[why]]" in message and "{campaign}" in message
    assert refusal("All written out.") is None
    many = " ".join(f"[[{i}]]" for i in range(8))
    assert "and 3 more" in (refusal(many) or "")


def test_case_values_leave_out_what_the_case_lacks_and_write_times_in_utc() -> None:
    assert case_values() == {}
    plus_two = timezone(timedelta(hours=2))
    values = case_values(campaign="camp-1", posted_at=datetime(2026, 5, 4, 11, 0, tzinfo=plus_two), reason_code="spam")
    assert values == {
        "campaign": "camp-1", "posted_at": "2026-05-04 09:00 UTC", "reason_code": "spam",
        "reason": REASON_CODES["spam"].description,
    }  # fmt: skip
    assert "reason" not in case_values(reason_code="no_such_code")
    assert set(case_values(account="a", post_id="p", campaign="c", detector="d", reason_code="spam",
                           posted_at=datetime(2026, 1, 1, tzinfo=UTC))) == set(KNOWN_PLACEHOLDERS)  # fmt: skip
