"""Placeholders in a statement of reasons (pure): those the case fills, and those a reviewer must.

A statement template (:mod:`stream.review.templates`, after Bluesky Ozone's communication templates)
is text with two kinds of placeholder:

* **known** ones, ``{account}``, ``{post_id}``, ``{reason}``, ... (:data:`KNOWN_PLACEHOLDERS`): the
  case fills them (:func:`fill`, with the values :func:`case_values` reads off the case). Braces
  around any other word are plain text in a statement; a template with one is refused when it is
  saved (:func:`unknown_placeholders`), since that is a typo nobody would fill.
* **free** ones, ``[[explain what was misleading]]``: the reviewer replaces each with what they
  found. A statement with one left, or with a known one the case could not fill, is not sent:
  :func:`unfilled` lists them and :func:`refusal` says so in the reviewer's words.

Filling is one pass over the text: a value that itself looks like a placeholder (an account named
``{post_id}``) is written as it is, never filled again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime

from stream.review.vocabulary import REASON_CODES

#: The placeholders a case fills, with what each becomes.
KNOWN_PLACEHOLDERS: dict[str, str] = {
    "account": "the account id",
    "post_id": "the post id",
    "campaign": "the campaign id",
    "detector": "the detector that flagged the post",
    "posted_at": "when the post was published (UTC)",
    "reason": "the chosen reason code, in words",
    "reason_code": "the chosen reason code",
}

#: ``{name}``: a known placeholder when ``name`` is in :data:`KNOWN_PLACEHOLDERS`.
_BRACED = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: ``[[what to write]]``: a free placeholder (one line or several; ``[[]]`` too).
_FREE = re.compile(r"\[\[(.*?)\]\]", re.DOTALL)


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def free_placeholders(text: str | None) -> list[str]:
    """The ``[[...]]`` placeholders in ``text`` as written, first occurrence first, each once."""
    return _unique([match.group(0) for match in _FREE.finditer(text or "")])


def known_placeholders(text: str | None) -> list[str]:
    """The names of the known placeholders in ``text`` (``"account"`` for ``{account}``), each once."""
    return _unique([name for name in _BRACED.findall(text or "") if name in KNOWN_PLACEHOLDERS])


def unknown_placeholders(text: str | None) -> list[str]:
    """``{word}`` in ``text`` where ``word`` is no known placeholder (a template's typo), as written."""
    return _unique([f"{{{name}}}" for name in _BRACED.findall(text or "") if name not in KNOWN_PLACEHOLDERS])


def fill(text: str | None, values: Mapping[str, str | None]) -> str:
    """``text`` with each known placeholder that has a non-empty value in ``values`` replaced by it.

    Placeholders without a value stay as written (:func:`unfilled` finds them); free placeholders
    and unknown braces are never touched.
    """

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        value = values.get(name) if name in KNOWN_PLACEHOLDERS else None
        return value if value else match.group(0)

    return _BRACED.sub(replace, text or "")


def unfilled(text: str | None) -> list[str]:
    """What still has to be filled before ``text`` can be sent: its free placeholders, then the known
    ones left in it (``{campaign}`` in a statement about a post that is in no campaign)."""
    return free_placeholders(text) + [f"{{{name}}}" for name in known_placeholders(text)]


def refusal(text: str | None) -> str | None:
    """Why a statement cannot be sent yet, for the reviewer; None when nothing is left to fill."""
    left = unfilled(text)
    if not left:
        return None
    shown = ", ".join(left[:5]) + (f" and {len(left) - 5} more" if len(left) > 5 else "")
    return (
        f"Nothing was decided: the statement of reasons still has {len(left)} placeholder(s) to fill: {shown}. "
        "Replace each with what you found; the user is told this statement as it stands."
    )


def _utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive one is taken as UTC already (the store hands back aware UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def case_values(
    *,
    account: str | None = None,
    post_id: str | None = None,
    campaign: str | None = None,
    detector: str | None = None,
    posted_at: datetime | None = None,
    reason_code: str | None = None,
) -> dict[str, str]:
    """The values of the known placeholders a case has (those it lacks are left out, so they stay unfilled)."""
    values = {
        "account": account,
        "post_id": post_id,
        "campaign": campaign,
        "detector": detector,
        "posted_at": _utc(posted_at).strftime("%Y-%m-%d %H:%M UTC") if posted_at is not None else None,
        "reason_code": reason_code,
        "reason": REASON_CODES[reason_code].description if reason_code in REASON_CODES else None,
    }
    return {name: value for name, value in values.items() if value}
