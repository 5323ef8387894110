"""The overview's numbers and the console's frame (issue #15): decisions that stand, time axes, quick search.

What these prove: a reversed decision is not counted as a reviewer's decision nor as a label in the
detectors' precision (a reversal of one case, a campaign's reversal that takes its member flags'
decisions with it, and a case decided again after its reversal), on SQLite and PostgreSQL; the
overview's time charts put UTC datetimes on a time axis, keeping batches of one second apart; the
quick search finds a flag, a post, an account or text exactly as the queue's search does; in the
running app the sidebar's quick search opens the post, the account or the searched queue from any
page, ``/`` is wired to it, and a newly opened case starts at its top.

The stores are small and written through the worker's write path and the review functions
(``test_review``'s posts and flags, ``test_console``'s helpers for driving the app); no broker.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest
from test_console import go, notice, texts
from test_review import ALICE, BOB, LEE, T0, _campaign, _flag, _post, fid

from dashboards import render
from stream.review.decisions import decide
from stream.review.labels import detector_precision
from stream.review.metrics import decisions_by_reviewer, flag_volume, worker_throughput
from stream.review.reversal import reverse
from stream.review.search import Found, find
from stream.store.database import Store
from stream.store.tables import TABLES

#: acct1 and acct3 post the odd posts: ten aitext flags, the members of camp-1.
MEMBER_FLAGS = [fid(i) for i in range(20) if i % 2 == 1]


def _metrics(at_s: float, worker: str, posts_per_s: float, lag: int) -> dict[str, Any]:
    return {"at": T0 + timedelta(seconds=at_s), "worker_id": worker, "batch_size": 50, "valid": 50, "rejected": 0,
            "flagged": 3, "lag_total": lag, "lag": {"0": lag}, "timings": {}, "posts_per_s": posts_per_s}  # fmt: skip


@pytest.fixture
def store(review_db_url: str) -> Iterator[Store]:
    """test_review's twenty flagged posts; decisions, reversals, a campaign decided and reversed, worker metrics."""
    with Store.open(review_db_url) as opened:
        opened.write_batch(
            posts=[_post(i) for i in range(20)], results=[], flags=[_flag(i) for i in range(20)], dead_letters=[]
        )
        with opened.transaction() as conn:  # three batches in one second, then one later
            conn.execute(
                sa.insert(TABLES["worker_metrics"]),
                [_metrics(0.1, "w1", 100, 40), _metrics(0.5, "w1", 300, 20), _metrics(0.9, "w2", 200, 10),
                 _metrics(65.0, "w1", 250, 0)],
            )  # fmt: skip
        decide(opened, ALICE, [fid(0), fid(2)], "confirm", "undisclosed_ai_text")
        decide(opened, ALICE, [fid(4)], "dismiss", "false_positive")
        wrong = decide(opened, ALICE, [fid(6)], "dismiss", "false_positive").decision_ids[fid(6)]
        reverse(opened, ALICE, [wrong], "reviewer_error", "Misclick.")
        decide(opened, BOB, [fid(6)], "confirm", "undisclosed_ai_text")  # decided again after the reversal
        appealed = decide(opened, ALICE, [fid(8)], "confirm", "spam").decision_ids[fid(8)]
        reverse(opened, LEE, [appealed], "appeal_upheld", "The author showed drafts.")
        decide(opened, BOB, [fid(10)], "dismiss", "false_positive")
        _campaign(opened)
        campaign = decide(
            opened, LEE, ["camp-1"], "confirm", "coordinated_inauthentic", subject="campaign", include_member_flags=True
        )
        assert len(campaign.applied) == 1 + len(MEMBER_FLAGS)
        reverse(opened, LEE, [campaign.decision_ids["camp-1"]], "reviewer_error", "Wrong cluster.")
        yield opened


# ---------------------------------------------------------------------------------------------
# Decisions that stand


def test_reversed_decisions_are_not_counted_as_decisions(store: Store) -> None:
    counts = {
        (r["reviewer"], r["decision"]): (r["decisions"], r["reversed"]) for r in decisions_by_reviewer(store).to_dicts()
    }
    assert counts == {
        (ALICE.name, "confirm"): (2, 1),  # p0 and p2 stand; p8 was reversed on appeal
        (ALICE.name, "dismiss"): (1, 1),  # p4 stands; p6 was a misclick, reversed
        (BOB.name, "confirm"): (1, 0),  # p6, decided again after the reversal
        (BOB.name, "dismiss"): (1, 0),
        (LEE.name, "confirm"): (0, 1 + len(MEMBER_FLAGS)),  # the campaign and its members' flags, all reversed
    }
    assert "reverse" not in set(decisions_by_reviewer(store)["decision"]), "a reversal is not a decision"
    # every decision row is counted once: as standing or as reversed
    rows = store.frame("review_decisions")
    made = rows.filter(pl.col("decision") != "reverse").height
    assert sum(d + r for d, r in counts.values()) == made


def test_precision_reads_only_the_decisions_that_stand(store: Store) -> None:
    precision = detector_precision(store, cutoffs=(0.55,))
    rows = {(r["detector"], r["threshold_name"]): r for r in precision.to_dicts()}
    # llm_boilerplate: p0, p2, p6 (BOB's) confirmed; p4, p10 dismissed; p6's dismissal and p8's confirmation
    # were reversed and count for nothing
    default = rows[("llm_boilerplate", "default")]
    assert (default["decided"], default["confirmed"], default["dismissed"]) == (5, 3, 2)
    assert default["precision"] == pytest.approx(3 / 5)
    above = rows[("llm_boilerplate", ">= 0.55")]  # p6 (0.56) and p10 (0.6)
    assert (above["decided"], above["confirmed"]) == (2, 1)
    assert not any(detector == "aitext" for detector, _ in rows), "the campaign's member decisions were reversed"


def test_an_empty_store_has_no_decisions_to_count(review_db_url: str) -> None:
    with Store.open(review_db_url) as empty:
        frame = decisions_by_reviewer(empty)
    assert frame.is_empty() and frame.columns == ["reviewer", "decision", "decisions", "reversed"]


# ---------------------------------------------------------------------------------------------
# Time axes


def test_throughput_and_lag_are_drawn_on_a_utc_time_axis(store: Store) -> None:
    throughput = worker_throughput(store)
    assert throughput.schema["at"] == pl.Datetime("us", "UTC"), "real datetimes, not text"
    for value in ("posts_per_s", "lag_total"):
        spec = render.counts_chart(
            throughput.select("at", "worker_id", value), "at", value, "worker_id", kind="line", y_title=value
        ).to_dict()
        x = spec["encoding"]["x"]
        assert x["type"] == "temporal" and x["scale"]["type"] == "utc" and x["title"] == "time (UTC)"
        assert x["axis"]["labelAngle"] == 0
        # about a minute of batches: labels to the second, written by labelExpr (Streamlit's Vega ignores `format`)
        assert x["axis"]["labelExpr"] == "utcFormat(datum.value, '%H:%M:%S')"
        values = spec["data"]["values"]
        stamps = [row["at"] for row in values]
        assert stamps[:3] == ["2026-03-01T09:00:00.100Z", "2026-03-01T09:00:00.500Z", "2026-03-01T09:00:00.900Z"]
        assert len(set(stamps)) == len(stamps), "three batches in one second stay three points in time"
        assert values[0]["at_utc"] == "2026-03-01 09:00:00.100", "the tooltip's time, as text in UTC"
        assert {"field": "at_utc", "title": "at (UTC)", "type": "nominal"} in spec["encoding"]["tooltip"]


def test_flags_over_time_fill_their_buckets(store: Store) -> None:
    volume = flag_volume(store, by="flagged_at", unit="hour")
    spec = render.counts_chart(volume, "bucket", "flags", "detector", bucket="hour").to_dict()
    x = spec["encoding"]["x"]
    assert x["timeUnit"] == "utcyearmonthdatehours" and x["axis"]["labelExpr"].endswith("'%b %d %H:00')")
    ticks = x["axis"]["values"]
    assert 1 <= len(ticks) <= 12 and ticks[0] == {"utc": True, "year": 2026, "month": 3, "date": 1, "hours": 9}
    assert spec["mark"]["width"] == {"band": 0.9}
    assert spec["encoding"]["y"]["axis"]["tickMinStep"] == 1, "counts: no half flags on the axis"


def test_the_time_axis_is_labelled_for_the_span() -> None:
    assert render.time_axis_format(T0, T0 + timedelta(minutes=5)) == "%H:%M:%S"
    assert render.time_axis_format(T0, T0 + timedelta(hours=6)) == "%H:%M"
    assert render.time_axis_format(T0, T0 + timedelta(days=3)) == "%b %d %H:%M"
    assert render.time_axis_format(T0, T0 + timedelta(days=60)) == "%Y-%m-%d"
    assert render.time_axis_format(None, None) == "%H:%M:%S"


# ---------------------------------------------------------------------------------------------
# Quick search


def test_quick_search_finds_a_flag_a_post_an_account_or_text(store: Store) -> None:
    assert find(store, f"  {fid(3)} ") == Found("flag", fid(3))
    assert find(store, "p3") == Found("post", "p3")
    assert find(store, "acct2") == Found("account", "acct2")
    text = find(store, "POST 1")  # the queue's search: any case, in the posts' text
    assert text == Found("text", "POST 1", flags=11)  # post 1, post 10 .. post 19
    assert find(store, "nothing like this") == Found("text", "nothing like this", flags=0)
    assert find(store, "100%") == Found("text", "100%", flags=0), "% is a plain character, as in the queue"
    assert find(store, "   ") is None


# ---------------------------------------------------------------------------------------------
# The running app


@pytest.fixture
def console(store: Store, console_opener: Callable[..., Callable[..., AppTest]]) -> Callable[..., AppTest]:
    """The app in local mode on this module's store, as a reviewer."""
    return console_opener(store, "ann@example.org")


def quick_search(at: AppTest, text: str) -> AppTest:
    """Type into the sidebar's search box and press Enter (submit its form)."""
    at.sidebar.text_input(key=render.QUICK_SEARCH_KEY).input(text)
    [submit] = [b for b in at.sidebar.button if b.label == "Search"]
    submit.click().run()
    assert not at.exception, at.exception
    return at


def scripts(at: AppTest) -> list[str]:
    return [h.value for h in at.get("html")]


def test_the_overview_counts_standing_decisions_and_fits_its_tables(console: Callable[..., AppTest]) -> None:
    at = go(console(), "overview")
    tables = {tuple(d.value.columns): d.value for d in at.dataframe}
    by_reviewer = tables[("reviewer", "decision", "decisions", "reversed")]
    shown = {(row.reviewer, row.decision): (row.decisions, row.reversed) for row in by_reviewer.itertuples()}
    assert shown == {
        (ALICE.name, "confirm"): (2, 1),
        (ALICE.name, "dismiss"): (1, 1),
        (BOB.name, "confirm"): (1, 0),
        (BOB.name, "dismiss"): (1, 0),
        (LEE.name, "confirm"): (0, 1 + len(MEMBER_FLAGS)),
    }, "reversed decisions are counted apart, reversals not at all"
    precision = next(d for d in at.dataframe if "precision" in d.value.columns)
    columns = json.loads(precision.proto.columns)
    assert all(columns[c]["width"] in ("small", "medium") for c in precision.value.columns), "sized to fit"
    charts = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    time_axes = [c["encoding"]["x"] for c in charts if c.get("encoding", {}).get("x", {}).get("type") == "temporal"]
    assert len(time_axes) == 3, "flags over time, throughput, lag"
    assert all(x["scale"]["type"] == "utc" and x["title"] == "time (UTC)" for x in time_axes)


def test_quick_search_opens_a_post_an_account_or_the_searched_queue(console: Callable[..., AppTest]) -> None:
    at = go(console(), "overview")
    assert render.QUICK_SEARCH_HOTKEY in scripts(at), "/ focuses the box on every page"

    quick_search(at, fid(3))
    assert at.title[0].value == "Post" and "p3" in texts(at)

    quick_search(at, "acct2")
    assert at.title[0].value == "Account" and "acct2" in texts(at)

    quick_search(at, "p4")
    assert at.title[0].value == "Post" and "p4" in texts(at)

    quick_search(at, "post 1")
    assert at.title[0].value == "Flag queue"
    assert at.text_input(key="q-search").value == "post 1"
    assert "11 flags in any state match" in " ".join(i.value for i in at.info)
    assert at.caption[0].value.startswith("10 flags match"), "post 1 and 11-19 are undecided; 10 was dismissed"

    quick_search(go(at, "history"), "no such words anywhere")
    assert at.title[0].value == "Decisions & audit", "nothing found: stay where you are"
    assert "Nothing matches" in notice(at)


def test_submit_and_next_opens_the_next_case_at_its_top(console: Callable[..., AppTest]) -> None:
    at = console()
    assert not [s for s in scripts(at) if "scrollTop = 0" in s], "the first page of the session is left as it is"
    go(at, "post", flag=fid(3))
    [opened] = [s for s in scripts(at) if "scrollTop = 0" in s]  # from the queue to a case: its top
    at.run()  # a rerun on the same case (a click, a choice): the reviewer keeps their place
    assert not [s for s in scripts(at) if "scrollTop = 0" in s]

    at.selectbox(key="post-decision-0").select("confirm").run()
    at.selectbox(key="post-reason-confirm-0").select("undisclosed_ai_text").run()
    [submit_next] = [b for b in at.button if b.label == "Submit and next"]
    submit_next.click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Post" and "p3" not in texts(at), "the next case is open"
    [scroll] = [s for s in scripts(at) if "scrollTop = 0" in s]  # and it starts at its top
    assert scroll != opened, "a script of its own, so the browser runs it again"

    go(at, "post", flag=fid(7))  # any other case opened later gets a script of its own, run again
    [again] = [s for s in scripts(at) if "scrollTop = 0" in s]
    assert again != scroll


def test_the_page_scripts_carry_no_data() -> None:
    """The frame's scripts are constants and a counter: nothing from the store (a post) can get into them."""
    assert f'".st-key-{render.QUICK_SEARCH_KEY} input"' in render.QUICK_SEARCH_HOTKEY.replace("\n", "")
    assert render.scroll_to_top_html(7) != render.scroll_to_top_html(8)
    assert "const visit = 7;" in render.scroll_to_top_html(7)
