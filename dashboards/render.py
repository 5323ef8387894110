"""Safe rendering and charts: everything that turns posts (hostile input) into something on screen.

Posts are written by strangers, so anything they control (text, account ids, links, hashtags,
evidence) is shown as TEXT: ``st.text``, dataframe cells, chart tooltips, or HTML built here with
every piece escaped by :func:`html.escape`. It is never interpolated into Markdown (a link or an
image in Markdown is a tracking pixel or a phishing link) nor into raw HTML unescaped. Long texts
are cut to :data:`MAX_SHOWN_CHARS` with a note, so a 1 MB "post" cannot freeze the browser. Hidden
characters (bidi controls, zero-width and other invisible ones) in ids and texts are spelt out by
:func:`visible` (``⟨U+202E⟩``), in tables by :func:`visible_columns`, so nothing reads as what it is not.
"""

from __future__ import annotations

import html
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import altair as alt
import networkx as nx
import polars as pl
import streamlit as st

from dashboards import auth
from dashboards.data import NOTICE_KEY
from stream.review.edges import Edge, account_pairs

#: Characters of one post shown on screen; the rest is offered as a download.
MAX_SHOWN_CHARS = 20_000
#: Tokens highlighted inline; longer evidence is cut (a post is at most a few thousand tokens).
MAX_TOKENS = 5_000
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")
#: What :func:`_is_hidden` finds, as a (Rust) regular expression for polars: format characters and the
#: control characters other than tab and line feed.
HIDDEN_PATTERN = r"[\p{Cf}\x00-\x08\x0B-\x1F\x7F-\x9F]"


def _is_hidden(char: str) -> bool:
    """Characters that change how text reads without showing themselves: bidi controls, zero-width
    and other format characters (Unicode category Cf), and control characters other than the line
    breaks and tabs a post may legitimately contain."""
    category = unicodedata.category(char)
    return category == "Cf" or (category == "Cc" and char not in "\n\t")


def visible(value: object) -> str:
    """``value`` as a string in which every hidden character is spelt out, e.g. ``⟨U+202E⟩``.

    A right-to-left override makes the account ``gnp.exe`` display as ``exe.png``, and zero-width
    characters make two different ids look identical; analysts must see what is really there.
    Applied to every id and every post text the console shows.
    """
    text = "" if value is None else str(value)
    if not any(_is_hidden(c) for c in text):
        return text
    return "".join(f"⟨U+{ord(c):04X}⟩" if _is_hidden(c) else c for c in text)


def visible_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with :func:`visible` applied to its text columns, for showing (never for reading ids
    back: keep the original frame for that). Columns without a hidden character are left as they are,
    so the usual table costs one scan per column."""
    hidden = [
        name
        for name, dtype in frame.schema.items()
        if dtype == pl.String and frame[name].str.contains(HIDDEN_PATTERN).any()
    ]
    if not hidden:
        return frame
    return frame.with_columns(pl.col(name).map_elements(visible, return_dtype=pl.String) for name in hidden)


def md_escape(value: object) -> str:
    """Backslash-escape Markdown so a string from the data shows literally inside a Markdown element
    (hidden characters spelt out, as :func:`visible` does)."""
    return _MD_SPECIAL.sub(r"\\\1", visible(value))


def clip(text: str | None, limit: int = MAX_SHOWN_CHARS) -> tuple[str, bool]:
    """The first ``limit`` characters and whether anything was cut."""
    text = text or ""
    return (text, False) if len(text) <= limit else (text[:limit], True)


def post_text(text: str | None, *, key: str) -> None:
    """A post's text as plain text (never Markdown or HTML), hidden characters spelt out, cut when huge.

    The full text of a cut post is offered as a download to those who may take post text away
    (:func:`dashboards.auth.can_export_text`: not to viewers); the file is the text as posted.
    """
    shown, cut = clip(text)
    st.text(visible(shown) if shown else "(empty)")
    if cut:
        st.caption(f"Showing the first {MAX_SHOWN_CHARS:,} of {len(text or ''):,} characters.")
        if not auth.can_export_text(st.session_state.get("reviewer")):
            st.caption("Viewers read posts here but cannot download their text.")
            return
        st.download_button(
            "Download the full text",
            (text or "").encode(),
            file_name="post.txt",
            mime="text/plain",
            key=f"download-{key}",
        )


#: The columns of the console's tables that carry post text: a preview of it, or all of it.
POST_TEXT_COLUMNS = ("preview", "text")


def without_text_for_viewers(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` to show as a table: without its post-text columns (:data:`POST_TEXT_COLUMNS`) for those who
    may not take post text away (:func:`dashboards.auth.can_export_text`: viewers), with a caption saying so.

    Every ``st.dataframe`` has a toolbar with "Download as CSV" (and copies selected cells), and Streamlit
    can switch that off only for the whole server (``client.disableDataExport``), not for one role: so the
    text is left out of a viewer's tables, as it is left out of their labelled-decisions export. Viewers
    read each post on its page.
    """
    dropped = [name for name in POST_TEXT_COLUMNS if name in frame.columns]
    if not dropped or auth.can_export_text(st.session_state.get("reviewer")):
        return frame
    st.caption("Without the posts' text: a table can be downloaded, and viewers do not take post text away. "
               "Open a post to read it.")  # fmt: skip
    return frame.drop(dropped)


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.4g}" if isinstance(value, float) else html.escape(visible(value))


def plain_table_html(frame: pl.DataFrame) -> str:
    """``frame`` as a plain HTML table for ``st.html``: every cell spelt with :func:`visible` and escaped,
    numbers to four significant digits, no toolbar (nothing to download, search or copy as CSV)."""
    head = "".join(f"<th>{html.escape(visible(name))}</th>" for name in frame.columns)
    rows = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in frame.iter_rows())
    return (
        '<div style="max-height:320px;overflow:auto"><table class="chorus-plain-table" '
        'style="border-collapse:collapse;font-size:0.9em;text-align:left">'
        f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>"
    )


def text_pieces_table(frame: pl.DataFrame) -> None:
    """A table whose cells are pieces of a post's text (the tokens or words behind a detector's call):
    ``st.dataframe`` for those who may take post text away (:func:`dashboards.auth.can_export_text`), and
    for viewers the same rows as a plain table (:func:`plain_table_html`), which has no toolbar: a table's
    "Download as CSV" can be switched off only for the whole server, not for one role."""
    if auth.can_export_text(st.session_state.get("reviewer")):
        st.dataframe(frame, hide_index=True)
        return
    st.html(plain_table_html(frame))
    st.caption("A plain table, nothing to download: viewers read post text here but do not take it away.")


def _heat(value: float | None, low: float, high: float) -> str:
    """Background for a token: stronger for more predictable tokens (low surprisal)."""
    if value is None or high <= low:
        return "transparent"
    strength = 1.0 - (value - low) / (high - low)
    return f"rgba(255, 140, 0, {0.10 + 0.55 * strength:.2f})"


def surprisal_html(pairs: Sequence[tuple[str, float | None]]) -> str:
    """Tokens in order, each escaped, shaded by surprisal, with the value in a tooltip."""
    pairs = list(pairs[:MAX_TOKENS])
    values = [v for _, v in pairs if v is not None]
    low, high = (min(values), max(values)) if values else (0.0, 0.0)
    spans = []
    for token, value in pairs:
        title = "no value" if value is None else f"surprisal {value:.2f} bits"
        spans.append(
            f'<span title="{html.escape(title)}" style="background:{_heat(value, low, high)};'
            f'white-space:pre-wrap">{html.escape(visible(token))}</span>'
        )
    return (
        '<div style="font-family:monospace;line-height:1.7;border:1px solid #ddd;padding:0.5em">'
        + "".join(spans)
        + "</div>"
    )


def phrases_html(text: str, phrases: Iterable[str]) -> str | None:
    """The text with each evidence phrase marked (case-insensitive), all of it escaped; None if none occur."""
    shown = visible(clip(text)[0])
    wanted = sorted({visible(p) for p in phrases if isinstance(p, str) and p.strip()}, key=len, reverse=True)
    if not wanted:
        return None
    pattern = re.compile("|".join(re.escape(p) for p in wanted), re.IGNORECASE)
    parts, last, hits = [], 0, 0
    for match in pattern.finditer(shown):
        parts.append(html.escape(shown[last : match.start()]))
        parts.append(f'<mark style="background:rgba(255,140,0,0.45)">{html.escape(match.group(0))}</mark>')
        last, hits = match.end(), hits + 1
    if not hits:
        return None
    parts.append(html.escape(shown[last:]))
    return '<div style="white-space:pre-wrap;border:1px solid #ddd;padding:0.5em">' + "".join(parts) + "</div>"


def age(seconds: float | None) -> str:
    """Seconds as '3d 4h', '5h 10m', '7m', '40s'."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return ""
    seconds = abs(int(seconds))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m" if minutes else f"{seconds}s"


def sla_text(seconds_left: float | None) -> str:
    """'overdue 3h 0m' or 'due in 5h 10m'."""
    if seconds_left is None:
        return ""
    return f"overdue {age(seconds_left)}" if seconds_left < 0 else f"due in {age(seconds_left)}"


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


# --------------------------------------------------------------------------------------------
# Charts


@dataclass(frozen=True)
class GraphLink:
    """One line of the account graph: a pair of accounts and every co-action type that links them.

    ``weight`` is the types' strengths combined (:func:`combined_strength`); ``types`` holds each type
    with its own strength, strongest first; ``matched`` counts the pairs of matched posts behind the
    link, each once whatever the types that matched it (:func:`stream.review.edges.account_pairs`).
    """

    source: str
    target: str
    weight: float
    types: tuple[tuple[str, float], ...]
    matched: int


def combined_strength(strengths: Iterable[float]) -> float:
    """Per-type link strengths combined into one, as the coordination stage combines them into its account
    graph's edge (:func:`detectors.coordination.graph.account_graph`, the ``pair_weight`` it stores): the
    noisy-or ``1 - prod(1 - s)``, each strength taken between 0 and 1. Two types at 0.5 make 0.75: a pair
    linked in more ways is more strongly linked, never more than 1."""
    return 1.0 - math.prod(1.0 - min(max(s, 0.0), 1.0) for s in strengths)


def graph_links(edges: Sequence[Edge]) -> list[GraphLink]:
    """The links to draw, one per pair of accounts whatever the co-action types (the stage stores one link
    per type, so a pair linked by several would be drawn as several lines on top of each other), strongest
    first (then by ids)."""
    strengths: dict[tuple[str, str], dict[str, float]] = {}
    for edge in edges:
        a, b = sorted((edge.source, edge.target))
        types = strengths.setdefault((a, b), {})
        types[edge.network] = max(types.get(edge.network, 0.0), edge.weight)
    links = []
    for pair in account_pairs(edges):
        types = strengths[(pair.source, pair.target)]
        ranked = tuple(sorted(types.items(), key=lambda t: (-t[1], t[0])))
        links.append(GraphLink(pair.source, pair.target, combined_strength(types.values()), ranked, len(pair.matched)))
    return sorted(links, key=lambda link: (-link.weight, link.source, link.target))


def graph_layout(nodes: Sequence[str], links: Sequence[GraphLink], *, seed: int = 7) -> dict[str, tuple[float, float]]:
    """Node positions: a seeded spring layout, so the same campaign always draws the same way; linked
    accounts pull together as strongly as their combined link."""
    graph = nx.Graph()
    graph.add_nodes_from(nodes)
    for link in links:
        graph.add_edge(link.source, link.target, weight=max(link.weight, 0.01))
    if graph.number_of_nodes() == 0:
        return {}
    positions = nx.spring_layout(graph, seed=seed, weight="weight")
    return {str(node): (float(x), float(y)) for node, (x, y) in positions.items()}


def account_graph_chart(
    nodes: pl.DataFrame, links: Sequence[GraphLink], positions: Mapping[str, tuple[float, float]]
) -> alt.LayerChart:
    """Accounts as circles (size: posts, colour: undecided flags), one line per linked pair (width: the
    combined strength; colour: how many co-action types link the pair; tooltip: each type and its strength).

    Interactive: zoom and pan, tooltips with the numbers, click a node to select its account.
    ``nodes`` has ``account_id``, ``posts``, ``flags``; ``links`` are :func:`graph_links`. Labels and
    tooltips show ids through :func:`visible`; a click selects the stored ``account_id``.
    """
    node_rows = [
        {
            **row,
            "account": visible(row["account_id"]),
            "x": positions.get(row["account_id"], (0.0, 0.0))[0],
            "y": positions.get(row["account_id"], (0.0, 0.0))[1],
        }
        for row in nodes.to_dicts()
    ]
    edge_rows = [
        {
            "source": visible(link.source),
            "target": visible(link.target),
            "networks": ", ".join(f"{visible(network)} {strength:.2f}" for network, strength in link.types),
            "types": len(link.types),
            "weight": link.weight,
            "matched": link.matched,
            "x": positions[link.source][0],
            "y": positions[link.source][1],
            "x2": positions[link.target][0],
            "y2": positions[link.target][1],
        }
        for link in links
        if link.source in positions and link.target in positions
    ]
    axis = alt.Axis(title=None, labels=False, ticks=False, grid=False, domain=False)
    # Padding keeps the outermost nodes and their labels inside the plot.
    x_scale, y_scale = alt.Scale(zero=False, nice=False, padding=40), alt.Scale(zero=False, nice=False, padding=30)
    pick = alt.selection_point(fields=["account_id"], name="account", on="click")
    links = (
        alt.Chart(alt.Data(values=edge_rows))
        .mark_rule(opacity=0.55)
        .encode(
            x=alt.X("x:Q", axis=axis, scale=x_scale),
            y=alt.Y("y:Q", axis=axis, scale=y_scale),
            x2="x2:Q",
            y2="y2:Q",
            strokeWidth=alt.StrokeWidth("weight:Q", scale=alt.Scale(domain=[0, 1], range=[1, 6]), legend=None),
            color=alt.Color("types:O", title="co-action types", scale=alt.Scale(scheme="purples")),
            tooltip=[
                "source:N",
                "target:N",
                alt.Tooltip("networks:N", title="co-action types (strength)"),
                alt.Tooltip("weight:Q", title="combined strength", format=".2f"),
                alt.Tooltip("matched:Q", title="matched posts"),
            ],
        )
    )
    dots = (
        alt.Chart(alt.Data(values=node_rows))
        .mark_circle(stroke="black", strokeWidth=0.5, opacity=0.95)
        .encode(
            x=alt.X("x:Q", axis=axis, scale=x_scale),
            y=alt.Y("y:Q", axis=axis, scale=y_scale),
            size=alt.Size("posts:Q", scale=alt.Scale(range=[80, 700]), title="posts"),
            fill=alt.Fill("flags:Q", scale=alt.Scale(scheme="orangered"), title="undecided flags"),
            tooltip=[alt.Tooltip("account:N", title="account_id"), "posts:Q", "flags:Q"],
        )
        .add_params(pick)
    )
    layers = [links, dots]
    if len(node_rows) <= 40:
        layers.append(
            alt.Chart(alt.Data(values=node_rows))
            .mark_text(dy=-14, fontSize=10)
            .encode(
                x=alt.X("x:Q", axis=axis, scale=x_scale), y=alt.Y("y:Q", axis=axis, scale=y_scale), text="account:N"
            )
        )
    return alt.layer(*layers).properties(height=420).interactive()


def timeline_chart(timeline: pl.DataFrame) -> alt.Chart:
    """Member posts over time, one row per account: bursts line up vertically."""
    frame = visible_columns(timeline.select("post_id", "account_id", "created_at", "preview")).with_columns(
        pl.col("created_at").dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    return (
        alt.Chart(alt.Data(values=frame.to_dicts()))
        .mark_tick(thickness=2, size=14)
        .encode(
            x=alt.X("created_at:T", title="posted (UTC)"),
            y=alt.Y("account_id:N", title=None),
            tooltip=["account_id:N", "post_id:N", "created_at:T", "preview:N"],
        )
        .properties(height=min(40 + 26 * frame["account_id"].n_unique(), 600))
        .interactive()
    )


def _vega_type(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.Datetime):
        return "T"
    return "Q" if dtype.is_numeric() else "N"


#: Timestamps as Vega reads them: ISO 8601 in UTC with milliseconds (batches a worker writes within
#: one second stay apart instead of piling up on one x and drawing the line up and down).
VEGA_TIME = "%Y-%m-%dT%H:%M:%S%.3fZ"


def time_axis_format(start: datetime | None, end: datetime | None) -> str:
    """A d3 time format for an axis from ``start`` to ``end``: seconds over minutes, the day when the
    span crosses days, so every label says what it is without Vega's mixed ``:30`` / ``.500`` labels."""
    span = (end - start).total_seconds() if start is not None and end is not None else 0.0
    if span <= 15 * 60:
        return "%H:%M:%S"
    if span <= 36 * 3_600 and start is not None and end is not None and start.date() == end.date():
        return "%H:%M"
    return "%b %d %H:%M" if span <= 14 * 86_400 else "%Y-%m-%d"


#: Time buckets a bar chart can be drawn in: the bucket -> Vega-Lite's UTC time unit and the label format.
TIME_BUCKETS: dict[str, tuple[str, str]] = {
    "hour": ("utcyearmonthdatehours", "%b %d %H:00"),
    "day": ("utcyearmonthdate", "%Y-%m-%d"),
}


def _time_x(frame: pl.DataFrame, x: str, bucket: str | None = None) -> alt.X:
    """A UTC time axis over ``frame[x]``: labels formatted for its span (or its ``bucket``), level.

    The labels are written by ``labelExpr``: the Vega that Streamlit embeds ignores an axis ``format``
    on a time axis and falls back to its mixed ``09 AM`` / ``:05`` labels (``format`` stays for other
    renderers of the spec).
    """
    values = frame[x].drop_nulls()
    ticks: dict[str, Any] = {"tickCount": 6}
    if bucket is not None:
        unit, label = TIME_BUCKETS[bucket]
        field = f"{unit}({x}):T"
        # A tick on each bucket (at most 12 of them, as Vega-Lite date-times in UTC): a tick between two
        # buckets would repeat its bucket's label (Streamlit's Vega draws nothing with a tick interval).
        starts = values.unique().sort().to_list()
        ticks = {
            "values": [
                {"utc": True, "year": t.year, "month": t.month, "date": t.day, "hours": t.hour}
                for t in starts[:: max(1, -(-len(starts) // 12))]
            ]
        }
    else:
        start, end = (values.min(), values.max()) if values.len() else (None, None)
        field, label = f"{x}:T", time_axis_format(start, end)
    return alt.X(
        field,
        title="time (UTC)",
        scale=alt.Scale(type="utc"),
        axis=alt.Axis(
            format=label,
            formatType="utc",
            labelExpr=f"utcFormat(datum.value, '{label}')",
            labelAngle=0,
            labelOverlap=True,
            grid=True,
            **ticks,
        ),
    )


def _tooltip(column: str, dtype: pl.DataType) -> alt.Tooltip:
    """A column in the tooltip; a datetime as the UTC text :func:`counts_chart` sends beside it (a time
    format on a tooltip reads NaN in the Vega that Streamlit embeds)."""
    if isinstance(dtype, pl.Datetime):
        return alt.Tooltip(f"{column}_utc:N", title=f"{column} (UTC)")
    return alt.Tooltip(f"{column}:{_vega_type(dtype)}")


def counts_chart(
    frame: pl.DataFrame,
    x: str,
    y: str,
    color: str | None = None,
    *,
    kind: str = "bar",
    y_title: str | None = None,
    color_title: str | None = None,
    bucket: str | None = None,
) -> alt.Chart:
    """A small bar or line chart over a frame.

    A datetime ``x`` is drawn on a UTC time axis (timestamps sent as ISO text with milliseconds, so
    Vega parses them in UTC and keeps batches of one second apart), labelled by the span it covers;
    with ``bucket`` (:data:`TIME_BUCKETS`: ``x`` holds the start of each hour or day) each bar fills its
    hour or day and is labelled as one. Anything else is categories. ``y_title`` and ``color_title``
    name the axis and the legend.
    """
    temporal = isinstance(frame.schema[x], pl.Datetime)
    stamps = [c for c, t in frame.schema.items() if isinstance(t, pl.Datetime)]
    data = visible_columns(frame).with_columns(
        *[pl.col(c).dt.strftime(VEGA_TIME) for c in stamps],
        *[pl.col(c).dt.strftime("%Y-%m-%d %H:%M:%S%.3f").alias(f"{c}_utc") for c in stamps],
    )
    chart = alt.Chart(alt.Data(values=data.to_dicts()))
    if kind == "line":
        mark = chart.mark_line(point=True)
    else:  # a bar of a bucket fills most of its hour or day
        mark = chart.mark_bar(width=alt.RelativeBandSize(0.9)) if temporal and bucket else chart.mark_bar()
    encoding: dict[str, Any] = {
        "x": _time_x(frame, x, bucket) if temporal else alt.X(f"{x}:N", title=None, axis=alt.Axis(labelLimit=240)),
        "y": alt.Y(
            f"{y}:Q",
            title=y_title if y_title is not None else y,
            axis=alt.Axis(tickMinStep=1) if frame.schema[y].is_integer() else alt.Axis(),  # counts: no 0.5
        ),
        "tooltip": [_tooltip(c, t) for c, t in frame.schema.items()],
    }
    if color:
        encoding["color"] = alt.Color(f"{color}:N", title=color_title if color_title is not None else color)
    return mark.encode(**encoding).properties(height=260)


# --------------------------------------------------------------------------------------------
# Page scripts: constant JavaScript for the console's frame (``st.html(..., unsafe_allow_javascript=True)``).
# They carry no data from the store, so nothing a stranger wrote can reach them.

#: The frame's style: Streamlit leaves 6rem above a page's title, under a 3.75rem header; 3rem is
#: enough (the title's own top padding clears the header), which gives every page 3rem more of its
#: first screen: the post's decision panel, submit button included, fits a 1440x900 window
#: (``tests/test_console_browser.py`` measures it).
FRAME_CSS = '<style>[data-testid="stMainBlockContainer"] {padding-top: 3rem !important;}</style>'

#: Widget key of the frame's quick search box (its container has the CSS class ``st-key-<key>``).
QUICK_SEARCH_KEY = "quick-search"

#: ``/`` on any page focuses the quick search box (Streamlit has no shortcut that focuses a text box).
#: Not while typing in a text box, nor with Ctrl/Alt/Cmd; a collapsed sidebar is opened first. The
#: listener is installed once per browser tab, however often the frame reruns.
QUICK_SEARCH_HOTKEY = (
    """<script>
(() => {
  if (window.__chorusQuickSearch) return;
  window.__chorusQuickSearch = true;
  const selector = ".st-key-"""
    + QUICK_SEARCH_KEY
    + """ input";
  const typing = (el) => el && (el.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName));
  document.addEventListener("keydown", (event) => {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    event.preventDefault();
    const shown = () => { const box = document.querySelector(selector); return box && box.offsetParent ? box : null; };
    if (!shown()) {
      const open = document.querySelector(
        '[data-testid="stExpandSidebarButton"], [data-testid="stSidebarCollapsedControl"] button');
      if (open) open.click();
    }
    const focus = (tries) => {
      const box = shown();
      if (box) { box.focus(); box.select(); } else if (tries > 0) setTimeout(() => focus(tries - 1), 100);
    };
    focus(20);
  }, true);
})();
</script>"""
)


def scroll_to_top_html(visit: int) -> str:
    """A script that scrolls the page to its top: a newly opened case (submit and next, a search, a
    link) starts at its title, not where the reviewer had scrolled on the one before. ``visit`` (a
    counter) makes each script new, so it runs again for the next case."""
    return (
        "<script>(() => {"
        f"const visit = {int(visit)};"
        "const top = () => {"
        'for (const el of document.querySelectorAll(\'[data-testid="stMain"], [data-testid="stAppViewContainer"]\')) '
        "el.scrollTop = 0;"
        "window.scrollTo(0, 0);"
        "};"
        "top(); requestAnimationFrame(top); setTimeout(top, 200);"
        "})();</script>"
    )


def show_notice() -> None:
    """The banner an action left for this run (see ``data.notify``); conflicts listed as a table."""
    notice = st.session_state.pop(NOTICE_KEY, None)
    if not notice:
        return
    box = {"success": st.success, "warning": st.warning, "error": st.error}.get(notice["level"], st.info)
    box(md_escape(notice["message"]))
    if notice["details"]:
        st.dataframe(
            visible_columns(
                pl.DataFrame({"case": list(notice["details"]), "why not": list(notice["details"].values())})
            ),
            hide_index=True,
        )
