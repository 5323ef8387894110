"""Why a post was flagged, drawn: the score against its threshold, what moved it, the tokens, the account's share.

Each function returns a small piece of HTML for ``st.html``, built from the pure readings of
:mod:`stream.review.evidence`. Whatever came from a post or a detector (text, tokens, feature and
detector names) goes through :func:`dashboards.render.visible` (hidden characters spelt out) and
:func:`html.escape`, as everything in :mod:`dashboards.render` does; nothing here is Markdown.
Colours follow the console's evidence shading: orange pulls towards machine-written, blue towards human.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import polars as pl

from dashboards.render import clip, visible
from stream.review.evidence import AgainstThreshold, Contribution, DrivingWord, SurprisingToken

MACHINE, HUMAN, TRACK, MARK = "rgba(255,140,0,0.75)", "rgba(40,110,220,0.70)", "rgba(128,128,128,0.18)", "#d33"
#: Contributions drawn as bars; the rest are in the table below them.
TOP_CONTRIBUTIONS = 6
#: Height of the scroll boxes (the post's text, the text with its tokens marked), in pixels.
SCROLL_BOX_PX = 220


def _e(value: object) -> str:
    return html.escape(visible(value))


def _pct(value: float) -> str:
    return f"{value:.1%}"


def _bar_box(inner: str) -> str:
    return f'<div style="position:relative;height:14px;background:{TRACK};border-radius:7px;margin:4px 0">{inner}</div>'


def threshold_bar(view: AgainstThreshold, *, detector: str, threshold_name: str | None) -> str:
    """The probability (or the raw score) as a bar, the threshold as a red line, the margin in words."""
    name = _e(threshold_name or "threshold")
    crossed = view.crossed
    colour = MACHINE if crossed or crossed is None else HUMAN
    if view.probability is not None and view.probability_at_threshold is not None:
        fill, marker = view.probability, view.probability_at_threshold
        where = "over" if crossed else "under"
        margin = view.margin or 0.0
        words = (
            f"<strong>{_pct(view.probability)}</strong> machine-written against the threshold <i>{name}</i> at "
            f"{_pct(marker)}: log-odds {view.score:.2f} vs {view.threshold:.2f}, "
            f"<strong>{margin:+.2f}</strong> {where} the threshold"
        )
        scale = "0% — probability of machine authorship — 100%"
    else:
        low = min(0.0, view.score, view.threshold if view.threshold is not None else 0.0)
        high = max(view.score, view.threshold if view.threshold is not None else 0.0, 1e-9) * 1.25
        high = high if high > low else low + 1.0
        fill = (view.score - low) / (high - low)
        marker = None if view.threshold is None else (view.threshold - low) / (high - low)
        if view.threshold is None:
            words = f"score <strong>{view.score:.3g}</strong> (no threshold recorded)"
        else:
            where = "over" if crossed else "under"
            words = (
                f"score <strong>{view.score:.3g}</strong> against the threshold <i>{name}</i> = {view.threshold:.3g}: "
                f"<strong>{view.margin:+.3g}</strong> {where}"
            )
        if view.probability is not None:
            words += f"; calibrated probability {_pct(view.probability)}"
        else:
            words += " (this detector's score is not a probability)"
        scale = f"{low:.3g} — score — {high:.3g}"
    inner = (
        f'<div style="position:absolute;left:0;top:0;bottom:0;width:{100 * min(max(fill, 0.0), 1.0):.1f}%;'
        f'background:{colour};border-radius:7px"></div>'
    )
    if marker is not None:
        inner += (
            f'<div title="threshold {name}" style="position:absolute;top:-3px;bottom:-3px;'
            f'left:calc({100 * min(max(marker, 0.0), 1.0):.1f}% - 1px);width:3px;background:{MARK}"></div>'
        )
    return (
        f'<div class="chorus-threshold" style="margin:0.2em 0 0.8em 0">'
        f'<div style="font-size:0.9em"><strong>{_e(detector)}</strong>: {words}</div>'
        f"{_bar_box(inner)}"
        f'<div style="font-size:0.75em;opacity:0.7">{html.escape(scale)}</div></div>'
    )


def contribution_bars(contributions: Sequence[Contribution], *, limit: int = TOP_CONTRIBUTIONS) -> str:
    """The features that moved the score most, as bars either side of zero (right: towards machine)."""
    shown = list(contributions[:limit])
    if not shown:
        return ""
    widest = max(abs(c.log_odds) for c in shown) or 1.0
    rows = []
    for c in shown:
        width = 50 * abs(c.log_odds) / widest
        side = f"left:50%;width:{width:.1f}%" if c.log_odds >= 0 else f"left:{50 - width:.1f}%;width:{width:.1f}%"
        colour = MACHINE if c.log_odds >= 0 else HUMAN
        bar = f'<div style="position:absolute;top:2px;bottom:2px;{side};background:{colour};border-radius:3px"></div>'
        axis = '<div style="position:absolute;left:50%;top:0;bottom:0;width:1px;background:#888"></div>'
        rows.append(
            f'<tr title="{_e(c.feature)}"><td style="padding:2px 8px 2px 0">{_e(c.name)}</td>'
            f'<td style="width:40%;padding:2px 0"><div style="position:relative;height:16px">{axis}{bar}</div></td>'
            f'<td style="padding:2px 0 2px 8px;white-space:nowrap;font-family:monospace">{c.log_odds:+.2f}</td>'
            f'<td style="padding:2px 0 2px 8px;font-size:0.85em;opacity:0.8">{_e(c.direction)}</td></tr>'
        )
    return (
        '<table class="chorus-contributions" style="border-collapse:collapse;width:100%;font-size:0.9em">'
        + "".join(rows)
        + "</table>"
    )


def contributions_frame(contributions: Sequence[Contribution]) -> pl.DataFrame:
    """Every contribution as a table (what the bars show, and the rest)."""
    return pl.DataFrame(
        {
            "what it measures": [visible(c.name) for c in contributions],
            "feature": [visible(c.feature) for c in contributions],
            "log-odds": [c.log_odds for c in contributions],
            "pull": [c.direction for c in contributions],
            "value": [c.value for c in contributions],
        },
        schema={"what it measures": pl.String, "feature": pl.String, "log-odds": pl.Float64, "pull": pl.String,
                "value": pl.Float64},
    )  # fmt: skip


def tokens_frame(tokens: Sequence[SurprisingToken]) -> pl.DataFrame:
    """The surprising tokens as a table, most surprising first (whitespace shown as ␣)."""
    return pl.DataFrame(
        {
            "token": [visible(t.token).replace(" ", "␣") for t in tokens],
            "surprisal (nats)": [t.surprisal for t in tokens],
            "position": [t.position for t in tokens],
        },
        schema={"token": pl.String, "surprisal (nats)": pl.Float64, "position": pl.Int64},
    )


def words_frame(words: Sequence[DrivingWord]) -> pl.DataFrame:
    """The words that drove the call as a table, largest push first."""
    return pl.DataFrame(
        {
            "word": [visible(w.word) for w in words],
            "log-odds towards machine": [w.log_odds for w in words],
            "word number": [None if w.position is None else w.position + 1 for w in words],
        },
        schema={"word": pl.String, "log-odds towards machine": pl.Float64, "word number": pl.Int64},
    )


def word_spans(text: str, words: Sequence[DrivingWord], n_words: int) -> list[tuple[int, int, SurprisingToken]]:
    """Where the driving words are in ``text``, as spans :func:`marked_tokens` draws (tooltip: log-odds)."""
    from stream.review.evidence import locate_tokens

    as_tokens = [
        SurprisingToken(w.word, w.position, None if w.log_odds is None else w.log_odds) for w in words if w.word
    ]
    return locate_tokens(text, as_tokens, n_words)


def marked_tokens(text: str, spans: Sequence[tuple[int, int, SurprisingToken]], *, unit: str = "surprisal") -> str:
    """The post's text with the given token spans marked (tooltip: surprisal, position), in a scroll box."""
    shown, _ = clip(text)
    parts, last = [], 0
    for start, end, token in spans:
        if start < last or end > len(shown):
            continue
        if unit == "log-odds":
            tip = f"+{token.surprisal:.2f} log-odds towards machine-written" if token.surprisal is not None else ""
            if token.position is not None:
                tip += f", word {token.position + 1}"
        else:
            tip = f"surprisal {token.surprisal:.2f} nats" if token.surprisal is not None else "surprisal unknown"
            if token.position is not None:
                tip += f", token {token.position}"
        parts.append(_e(shown[last:start]))
        parts.append(
            f'<mark class="chorus-token" title="{html.escape(tip)}" '
            f'style="background:{MACHINE};border-radius:3px;padding:0 1px">{_e(shown[start:end])}</mark>'
        )
        last = end
    parts.append(_e(shown[last:]))
    return (
        f'<div style="white-space:pre-wrap;border:1px solid #ddd;padding:0.5em;max-height:{SCROLL_BOX_PX}px;'
        f'overflow:auto">{"".join(parts)}</div>'
    )


def share_interval(
    detector: str, share: float | None, lower: float | None, upper: float | None, recent_posts: int | None
) -> str:
    """An account's machine share as a dot on 0-100% with its 95% interval as a band."""
    if share is None:
        return ""
    band = ""
    if lower is not None and upper is not None:
        band = (
            f'<div title="95% interval" style="position:absolute;top:2px;bottom:2px;left:{100 * lower:.1f}%;'
            f'width:{100 * max(upper - lower, 0.0):.1f}%;background:{MACHINE};opacity:0.45;border-radius:5px"></div>'
        )
    dot = (
        f'<div style="position:absolute;top:-2px;width:10px;height:18px;left:calc({100 * share:.1f}% - 5px);'
        f'background:{MACHINE};border:1px solid #333;border-radius:5px"></div>'
    )
    interval = f" (95% interval {_pct(lower)} to {_pct(upper)})" if lower is not None and upper is not None else ""
    posts = f" of its last {recent_posts} scored posts" if recent_posts else ""
    return (
        '<div class="chorus-share" style="margin:0.2em 0 0.6em 0"><div style="font-size:0.9em">'
        f"<strong>{_e(detector)}</strong>: machine share <strong>{_pct(share)}</strong>{interval}"
        f"{html.escape(posts)}</div>{_bar_box(band + dot)}</div>"
    )


def action_panel_css(key: str) -> str:
    """Keep the container ``st.container(key=key)`` in view while the page scrolls (a sticky panel).

    Streamlit wraps the container in a layout box of its own height, so the wrapper is what sticks,
    inside a column stretched to the height of the row; the panel scrolls within itself when it is
    taller than the window. Its elements keep their height then: the panel is a flex column, and without
    ``flex-shrink: 0`` the one element that may shrink (the statement box, which scrolls within itself)
    took all the overflow and was squashed to a few pixels. In a browser without ``:has`` the panel stays
    at the top of its column.
    """
    cls = f".st-key-{key}"
    return (
        "<style>"
        f'div[data-testid="stColumn"]:has({cls}) {{align-self: stretch;}}'
        f'div[data-testid="stColumn"]:has({cls}) > div {{height: 100%;}}'
        f"div:has(> {cls}), {cls} {{position: sticky; top: 3.75rem; z-index: 2;}}"
        f"{cls} {{max-height: calc(100vh - 4.5rem); overflow-y: auto;}}"
        f"{cls} > * {{flex-shrink: 0;}}"
        "</style>"
    )
