"""Text normalisation and token sets, as polars expressions with QUT's semantics.

The co-text and co-similar networks are only comparable with the QUT Digital Observatory's
``coordination_network_toolkit`` (MIT) if two posts count as "the same text" or "similar" under
exactly the same rules. These expressions re-implement its two Python functions column-wise:

* :func:`normalised_text` is ``similarity.message_preprocessor``: lower-case, drop every
  ``@``-token (``@`` up to the next whitespace, wherever it starts, so ``x@y.com`` loses its tail),
  collapse whitespace. Measured: identical output on all 237,471 IRA tweets of the development set.
* :func:`token_set` is ``similarity.tokenize`` followed by the ``str.split()`` its Jaccard
  function applies: Unicode (UAX #29) word segments of the normalised-but-not-collapsed text,
  whitespace segments and lone ASCII apostrophes dropped, as a sorted set. polars' regex engine
  has no word-segmentation mode and no look-around, so the UAX #29 joining rules that matter for
  tweets (letters across ``' . : ·``, digits across ``, ; .``, emoji with modifiers and ZWJ
  sequences, flag pairs) are written out with Word_Break properties. ``regex`` 2026.11.19 dropped
  its old apostrophe-vowel elision rule (U+2019 then "a" was one token, now two), so this
  follows plain UAX #29 there; the lock pins that version (``tests/test_coordination_qut.py`` keeps
  the example). Measured: the same set as QUT
  on 237,461 of 237,471 IRA tweets (the 10 others are mojibake and Katakana/ideograph edge cases),
  and on thousands of property-test strings. Known departures: decomposed accents and lone
  combining marks, where the ``regex`` module itself departs from UAX #29.

Both are expressions, not Python loops, so they run at column speed inside lazy plans.
"""

from __future__ import annotations

import polars as pl

#: What Python's ``str.split()`` treats as whitespace: Unicode White_Space plus U+001C..U+001F.
_PY_WHITESPACE = r"\s\x{1C}-\x{1F}"

#: Characters that attach to the one before them (UAX #29 WB4), including emoji ZWJ sequences (WB3c).
_EXTEND = r"(?:[\p{WB=Extend}\p{WB=Format}]|\x{200D}\p{Extended_Pictographic}?)*"
_LETTER = rf"[\p{{WB=ALetter}}\p{{WB=Hebrew_Letter}}]{_EXTEND}"
_DIGIT = rf"\p{{WB=Numeric}}{_EXTEND}"
_CONNECTOR = rf"\p{{WB=ExtendNumLet}}{_EXTEND}"
_KATAKANA = rf"(?:\p{{WB=Katakana}}{_EXTEND})+"

#: Private-use marker placed around a punctuation mark that joins two word characters (WB6/7, WB11/12).
_JOIN_MARK = "\ue000"
_JOIN_LETTERS = rf"({_LETTER})([\p{{WB=MidLetter}}\p{{WB=MidNumLet}}\p{{WB=Single_Quote}}])({_LETTER})"
_JOIN_DIGITS = rf"({_DIGIT})([\p{{WB=MidNum}}\p{{WB=MidNumLet}}\p{{WB=Single_Quote}}])({_DIGIT})"
_JOIN_REPLACEMENT = f"${{1}}{_JOIN_MARK}${{2}}{_JOIN_MARK}${{3}}"
_LETTERS_DIGITS = rf"(?:{_LETTER}|{_DIGIT}|{_JOIN_MARK}[^{_JOIN_MARK}]+{_JOIN_MARK})+"
_RUN = f"(?:{_LETTERS_DIGITS}|{_KATAKANA})"
_CONNECTORS = f"(?:{_CONNECTOR})+"
#: Letter/digit runs and Katakana runs do not join each other, but both join through "_" (WB13a/b).
_WORD = (
    f"(?:{_CONNECTORS}(?:{_RUN}(?:{_CONNECTORS}{_RUN})*(?:{_CONNECTORS})?)?|{_RUN}(?:{_CONNECTORS}{_RUN})*(?:{_CONNECTORS})?)"
)
_SEGMENT = rf"{_WORD}|\p{{WB=Regional_Indicator}}{{2}}{_EXTEND}|[^{_PY_WHITESPACE}]{_EXTEND}"


def _strip_mentions(text: pl.Expr) -> pl.Expr:
    """Lower-case and drop ``@`` tokens: QUT's ``@.*?(?=(?:\\s|$))`` is ``@\\S*``."""
    return text.str.to_lowercase().str.replace_all(r"@\S*", "")


def normalised_text(text: pl.Expr | str = "text") -> pl.Expr:
    """QUT's co-tweet key: lower-cased, @mentions removed, whitespace runs collapsed to one space."""
    expr = pl.col(text) if isinstance(text, str) else text
    return _strip_mentions(expr).str.replace_all(f"[{_PY_WHITESPACE}]+", " ").str.strip_chars(" ")


def token_set(text: pl.Expr | str = "text") -> pl.Expr:
    """QUT's co-similar token set, as a sorted ``list[str]`` of distinct tokens."""
    expr = _strip_mentions(pl.col(text) if isinstance(text, str) else text)
    # Two passes: one pass cannot mark joins that share a character ("a.b.c" needs "a.b" and "b.c").
    for _ in range(2):
        expr = expr.str.replace_all(_JOIN_LETTERS, _JOIN_REPLACEMENT).str.replace_all(_JOIN_DIGITS, _JOIN_REPLACEMENT)
    return (
        expr.str.extract_all(_SEGMENT)
        .list.eval(pl.element().str.replace_all(_JOIN_MARK, ""))
        # QUT's split pattern swallows an ASCII apostrophe that starts a segment.
        .list.filter(pl.element() != "'")
        # QUT's Jaccard splits its token string on whitespace again: mimic it exactly.
        .list.join(" ")
        .str.extract_all(f"[^{_PY_WHITESPACE}]+")
        .list.unique()
        .list.sort()
    )


def hashtag_set(hashtags: pl.Expr | str = "hashtags") -> pl.Expr:
    """A post's hashtags as one comparable key: lower-cased, without ``#``, distinct, sorted, joined.

    Null when the post has no hashtag, so that posts without hashtags never share a "set".
    """
    expr = pl.col(hashtags) if isinstance(hashtags, str) else hashtags
    tags = (
        expr.list.eval(pl.element().str.strip_chars().str.strip_chars_start("#").str.to_lowercase())
        .list.filter(pl.element().str.len_chars() > 0)
        .list.unique()
        .list.sort()
    )
    return pl.when(tags.list.len() > 0).then(tags.list.join(" ")).otherwise(None)
