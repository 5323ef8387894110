"""What the campaign pages draw beyond the render basics: the word diff, the time gap, the link note, the rank.

Whatever came from a post or an account (text, ids, co-action types) goes through
:func:`dashboards.render.visible` (hidden characters spelt out) and then :func:`html.escape`
before it is put into HTML for ``st.html``; nothing here is Markdown. The readings themselves
(pairs of matched posts, how many links are shown, the rank) are :mod:`stream.review.edges` and
:mod:`stream.review.campaigns`, tested without Streamlit.
"""

from __future__ import annotations

import difflib
import html
from datetime import timedelta

import streamlit as st

from dashboards import data
from dashboards.render import clip, visible
from stream.review.campaigns import UNKNOWN_MACHINE, ranked_campaign_queue
from stream.review.edges import LinkCoverage
from stream.review.queues import CampaignFilter
from stream.store.database import Store
from stream.store.reading import QueuePage

#: Characters of each post compared word by word (the diff is quadratic in the worst case).
DIFF_CHARS = 2_000
DELETED, INSERTED = "rgba(220,50,50,0.22)", "rgba(40,160,70,0.25)"


def _e(value: object) -> str:
    return html.escape(visible(value))


def seconds_apart(seconds: float | None) -> str:
    """``"4.6 s apart"``, ``"83 s apart"``; empty when a time is missing."""
    if seconds is None:
        return ""
    return f"{seconds:.1f} s apart" if seconds < 10 else f"{seconds:,.0f} s apart"


def word_diff_html(text_1: str | None, text_2: str | None) -> str:
    """The two texts compared word by word (:mod:`difflib`), as one line of HTML for ``st.html``.

    Words only in the first text are struck through (``<del>``), words only in the second are
    marked (``<ins>``), shared words are plain; every word is spelt with :func:`visible` and
    escaped, so a post's markup shows as text. Whitespace is not compared (words are split on it
    and joined with one space). Each text is cut at :data:`DIFF_CHARS` characters first.
    """
    words_1 = clip(text_1 or "", DIFF_CHARS)[0].split()
    words_2 = clip(text_2 or "", DIFF_CHARS)[0].split()
    matcher = difflib.SequenceMatcher(a=words_1, b=words_2, autojunk=False)
    parts: list[str] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            parts.append(" ".join(_e(w) for w in words_1[i1:i2]))
            continue
        if op in ("delete", "replace"):
            gone = " ".join(_e(w) for w in words_1[i1:i2])
            parts.append(f'<del style="background:{DELETED}">{gone}</del>')
        if op in ("insert", "replace"):
            new = " ".join(_e(w) for w in words_2[j1:j2])
            parts.append(f'<ins style="background:{INSERTED};text-decoration:none">{new}</ins>')
    same = words_1 == words_2
    verdict = "identical word for word" if same else f"{matcher.ratio():.0%} of the words shared"
    legend = (
        f'<div style="font-size:0.8em;opacity:0.75">Word diff, {verdict}: '
        f'<del style="background:{DELETED}">struck</del> only in the left post, '
        f'<ins style="background:{INSERTED};text-decoration:none">marked</ins> only in the right post.</div>'
    )
    body = " ".join(p for p in parts if p)
    return (
        f'<div class="chorus-diff">{legend}'
        f'<div style="white-space:pre-wrap;overflow-wrap:anywhere;line-height:1.6">{body}</div></div>'
    )


def coverage_note(coverage: LinkCoverage, *, stored_density: float | None = None) -> str:
    """What the graph draws of the campaign's links, in words: "the strongest N of M links" when cut."""
    shown, possible = coverage.shown_pairs, coverage.possible_pairs
    drawn = (
        f"Density of the links shown: {shown} of {possible} pairs of members, {coverage.shown_density:.2f}"
        if coverage.shown_density is not None
        else "A campaign of one account has no pairs to link"
    )
    stage = ""
    if stored_density is not None:
        stage = f"; the coordination stage measured {stored_density:.2f} over all its links"
    if coverage.truncated:
        of = f"{coverage.total_pairs}" if coverage.exact_total else f"at most {coverage.total_pairs}"
        why = (
            f" (the coordination stage stores at most {coverage.cap} links per campaign, one per co-action type; "
            "the others are not in the store)"
            if coverage.cap is not None and coverage.stored_links >= coverage.cap
            else " (the others are not in the store)"
        )
        return f"The graph draws the strongest {shown} of {of} links between members{why}. {drawn}{stage}."
    if not shown:
        return f"There are no links between members to draw. {drawn}{stage}."
    return f"The graph draws all {shown} links between members. {drawn}{stage}."


RANK_CAPTION = (
    "Ranked most coordinated and most machine-written first: rank = coordination times machine. "
    "Coordination is the campaign's score from the coordination stage (density times synchrony; its density when it "
    "has no score). Machine is the mean probability that the members' posts are machine-written (the stage's "
    "machine share, else the detectors' calibrated probabilities of the members' posts); "
    f"with none it counts as {UNKNOWN_MACHINE:g} and the column is empty. Both run from 0 to 1, so a campaign "
    "comes first only when both are high."
)


@st.cache_data(ttl=data.READ_TTL_S, show_spinner=False)
def _ranked_queue(
    url: str, flt: CampaignFilter, limit: int, offset: int, sla_s: float, detector: str | None, _store: Store
) -> QueuePage:
    return ranked_campaign_queue(
        _store, flt, limit=limit, offset=offset, sla=timedelta(seconds=sla_s), detector=detector
    )


def ranked_queue(flt: CampaignFilter, *, limit: int, offset: int) -> QueuePage:
    """The campaign queue with each campaign's rank (:func:`stream.review.campaigns.ranked_campaign_queue`),
    cached like :mod:`dashboards.data`'s reads (keyed by the store URL; actions clear it), with the
    members' probabilities from ``[coordinator] machine_detector`` when set, else every detector's."""
    s = data.settings()
    return _ranked_queue(
        s.store_url, flt, limit, offset, s.sla.total_seconds(), s.coordination.machine_detector, data.store()
    )
