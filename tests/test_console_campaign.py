"""The campaign pages (issue #15): each pair of matched posts once, the cut graph said, the queue ranked.

What these prove: the coordination stage's evidence (every matched pair listed in both directions
and again under each co-action type it shares) reads as one entry per pair of accounts with each
pair of posts once, oriented by account and with the seconds between them; a graph cut at the
stage's ``summary_edges`` says "the strongest N of M links" with M read back from the stage's
density (every possible pair when it stored none) and a density of what is drawn; the graph draws one
line per pair of accounts, its strength the co-action types' combined as the stage combines them and
each type named in its tooltip; the campaign
queue ranks the most coordinated and most machine-written campaigns first, in SQL on SQLite and
PostgreSQL, exactly as the pure rank says, under the queue's filters; the word diff escapes hostile
text and marks the changed words; and the pages show all of it, with "Open account" on the stored id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import combinations
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest
from test_console import button, go, texts
from test_console_safety import chart_rows

from dashboards.campaign_view import coverage_note, seconds_apart, word_diff_html
from dashboards.render import account_graph_chart, combined_strength, graph_layout, graph_links
from stream.config import CoordinatorSettings
from stream.review.campaigns import (
    RANK_SORT,
    UNKNOWN_MACHINE,
    campaign_detail,
    campaign_rank,
    ranked_campaign_queue,
)
from stream.review.edges import Edge, account_pairs, campaign_edges, instant, link_coverage
from stream.review.queues import CampaignFilter, campaign_queue
from stream.store.database import Store
from stream.store.tables import TABLES

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
NETWORKS = ("co_hashtag", "co_link", "co_paraphrase", "co_text")
RLO = "\u202e"
HOSTILE = '<script>alert(1)</script> <img src=x onerror="alert(2)"> **bold** [x](https://evil.example)'


# ---------------------------------------------------------------------------------------------
# A store written the way the coordination stage writes it


def post_row(post_id: str, account: str, at: datetime, text: str) -> dict[str, Any]:
    return {"post_id": post_id, "account_id": account, "created_at": at, "text": text, "lang": "en",
            "urls": ["https://news.example/a"], "hashtags": ["vote"]}  # fmt: skip


def result_row(post_id: str, probability: float | None, detector: str = "aitext") -> dict[str, Any]:
    return {"post_id": post_id, "detector": detector, "model_version": "test", "score": probability,
            "probability": probability, "threshold_name": "low_fpr", "threshold": 0.9,
            "flagged": False, "evidence": {}}  # fmt: skip


def stage_links(members: list[str], posts: dict[str, tuple[str, datetime]], cap: int) -> list[dict[str, Any]]:
    """Links as the coordinator's ``_member_links`` writes them: one per pair and type, each with the
    matched posts of both directions, strongest first, cut at ``cap``."""
    links = []
    for a, b in combinations(sorted(members), 2):
        (post_a, time_a), (post_b, time_b) = posts[a], posts[b]
        forth = {"post_1": post_a, "time_1": time_a.isoformat(), "post_2": post_b, "time_2": time_b.isoformat()}
        back = {"post_1": post_b, "time_1": time_b.isoformat(), "post_2": post_a, "time_2": time_a.isoformat()}
        for network in NETWORKS:
            links.append({"source": a, "target": b, "network": network, "weight": 1.0, "pair_weight": 1.0,
                          "co_actions": 2, "evidence": [forth, back]})  # fmt: skip
    return links[:cap]


def write_campaign(
    store: Store,
    campaign_id: str,
    members: list[str],
    *,
    score: float | None,
    summary: dict[str, Any],
    probabilities: float | None = None,
    texts: Callable[[int], str] | None = None,
    links: bool = False,
) -> None:
    """A campaign, its members' posts (one each, 3 s apart) with an AI-text probability, and, with
    ``links``, link evidence cut at the stage's default ``summary_edges``."""
    posts = {m: (f"{campaign_id}-p{i:02d}", T0 + timedelta(seconds=3 * i)) for i, m in enumerate(members)}
    rows = [
        post_row(pid, m, at, (texts or (lambda i: f"post {i}"))(i)) for i, (m, (pid, at)) in enumerate(posts.items())
    ]
    results = [result_row(pid, probabilities) for pid, _ in posts.values()] if probabilities is not None else []
    store.write_batch(posts=rows, results=results, flags=[], dead_letters=[])
    if links:
        summary = {**summary, "edges": stage_links(members, posts, CoordinatorSettings().summary_edges)}
    with store.transaction() as conn:
        conn.execute(sa.insert(TABLES["campaigns"]), [{
            "campaign_id": campaign_id, "first_seen": T0, "last_seen": T0 + timedelta(minutes=5),
            "size": len(members), "score": score, "status": "open", "summary": summary}])  # fmt: skip
        conn.execute(
            sa.insert(TABLES["campaign_members"]),
            [{"campaign_id": campaign_id, "account_id": m, "weight": 1.0, "evidence": {}} for m in members],
        )


@pytest.fixture
def store(review_db_url: str) -> Iterator[Store]:
    with Store.open(review_db_url) as opened:
        yield opened


WEB = [f"acct_{i:02d}" for i in range(12)]  # 12 accounts: 66 pairs, 4 types each, 50 links stored


def vote_text(i: int) -> str:
    return f"Everyone should vote early at the town hall on Sunday number {i}"


# ---------------------------------------------------------------------------------------------
# Each pair of matched posts once


def test_each_pair_of_matched_posts_reads_once_per_pair_of_accounts() -> None:
    t1, t2 = "2026-03-01T09:00:00.123456+00:00", "2026-03-01T09:00:04.723456+00:00"
    forth = {"post_1": "pa", "time_1": t1, "post_2": "pb", "time_2": t2}
    back = {"post_1": "pb", "time_1": t2, "post_2": "pa", "time_2": t1}
    other = {"post_1": "pa2", "time_1": "2026-03-01T08:00:00Z", "post_2": "pb2", "time_2": "2026-03-01T08:01:30Z"}
    edges = [
        Edge("a", "b", 0.5, "co_link", (forth, back)),
        Edge("a", "b", 0.8, "co_hashtag", (back, other)),
        Edge("b", "c", 0.3, "co_text", (forth,)),
    ]
    pairs = account_pairs(edges, {"pa": "a", "pb": "b", "pa2": "a", "pb2": "b"})
    assert [(p.source, p.target, p.networks, p.weight) for p in pairs] == [
        ("a", "b", ("co_hashtag", "co_link"), 0.8),
        ("b", "c", ("co_text",), 0.3),
    ]
    earliest, later = pairs[0].matched
    assert (earliest.post_1, earliest.post_2, earliest.networks) == ("pa2", "pb2", ("co_hashtag",))
    assert earliest.seconds_apart == 90.0
    assert (later.post_1, later.post_2, later.networks) == ("pa", "pb", ("co_hashtag", "co_link"))
    assert later.time_1 == datetime(2026, 3, 1, 9, 0, 0, 123456, tzinfo=UTC)
    assert later.seconds_apart == pytest.approx(4.6)
    # Without the posts' accounts a pair is still one entry, in the order the stage listed it first.
    [(_, unknown)] = [(p, p.matched) for p in account_pairs(edges[:1])]
    assert [(m.post_1, m.post_2) for m in unknown] == [("pa", "pb")]
    assert instant("not a time") is None and instant(None) is None
    assert instant("2026-03-01T09:00:00") == datetime(2026, 3, 1, 9, tzinfo=UTC), "naive is UTC"


def test_the_stored_evidence_reads_once_with_its_seconds_apart(store: Store) -> None:
    write_campaign(
        store, "web", WEB, score=1.0, summary={"density": 1.0}, probabilities=0.9, texts=vote_text, links=True
    )
    detail = campaign_detail(store, "web")
    assert detail is not None
    assert len(detail["edges"]) == 50, "one stored link per pair and type"
    pairs = detail["pairs"]
    assert len(pairs) == 13, "50 links of 4 types: 13 pairs of accounts"
    first = pairs[0]
    assert (first.source, first.target, first.networks) == ("acct_00", "acct_01", NETWORKS)
    [match] = first.matched  # 8 entries stored (2 directions x 4 types): one pair of posts
    assert (match.post_1, match.post_2, match.seconds_apart) == ("web-p00", "web-p01", 3.0)
    for pair in pairs:
        keys = [frozenset((m.post_1, m.post_2)) for m in pair.matched]
        assert len(keys) == len(set(keys))
        assert all(m.post_1.endswith(f"p{pair.source[-2:]}") for m in pair.matched), "left: the first account"


# ---------------------------------------------------------------------------------------------
# One line per pair of accounts in the graph


def link_rows(chart: Any) -> list[dict[str, Any]]:
    """The rows the graph's lines are drawn from (the rule layer's data), as Vega-Lite receives them."""
    spec = chart.to_dict()
    [rule] = [layer for layer in spec["layer"] if layer["mark"]["type"] == "rule"]
    data = rule.get("data") or spec["data"]
    return list(data["values"]) if "values" in data else list(spec["datasets"][data["name"]])


def test_a_pair_linked_by_two_types_is_one_line_carrying_both() -> None:
    shared = {"post_1": "pa", "time_1": "2026-03-01T09:00:00Z", "post_2": "pb", "time_2": "2026-03-01T09:00:04Z"}
    other = {"post_1": "pa2", "time_1": "2026-03-01T09:10:00Z", "post_2": "pb2", "time_2": "2026-03-01T09:10:09Z"}
    edges = [
        Edge("a", "b", 0.5, "co_link", (shared,)),
        Edge("b", "a", 0.4, "co_hashtag", (shared, other)),  # the same pair, the other way round
        Edge("b", "c", 0.9, "co_text", (other,)),
    ]
    links = graph_links(edges)
    assert [(link.source, link.target) for link in links] == [("b", "c"), ("a", "b")], "one per pair, strongest first"
    both = links[1]
    assert both.types == (("co_link", 0.5), ("co_hashtag", 0.4)), "each type with its strength, strongest first"
    assert both.weight == pytest.approx(1 - (1 - 0.5) * (1 - 0.4)), "combined as the coordination stage does"
    assert both.matched == 2, "the pair of posts both types matched counts once"
    assert combined_strength([1.0, 0.3]) == 1.0 and combined_strength([]) == 0.0
    assert combined_strength([1.7, -0.2]) == 1.0, "strengths are taken between 0 and 1"

    nodes = pl.DataFrame({"account_id": ["a", "b", "c"], "posts": [1, 2, 1], "flags": [0, 1, 0]})
    positions = graph_layout(nodes["account_id"].to_list(), links)
    rows = link_rows(account_graph_chart(nodes, links, positions))
    assert len(rows) == 2, "two lines for three links: a and b are joined once"
    [ab] = [r for r in rows if {r["source"], r["target"]} == {"a", "b"}]
    assert ab["networks"] == "co_link 0.50, co_hashtag 0.40" and ab["types"] == 2
    assert ab["weight"] == pytest.approx(0.7) and ab["matched"] == 2
    assert (ab["x"], ab["y"], ab["x2"], ab["y2"]) == (*positions["a"], *positions["b"])


# ---------------------------------------------------------------------------------------------
# "The strongest N of M links"


def test_a_cut_graph_says_the_strongest_n_of_m(store: Store) -> None:
    write_campaign(store, "web", WEB, score=1.0, summary={"density": 1.0}, links=True)
    detail = campaign_detail(store, "web")
    assert detail is not None
    coverage = detail["coverage"]
    assert (coverage.shown_pairs, coverage.possible_pairs, coverage.linked_pairs) == (13, 66, 66)
    assert coverage.truncated and coverage.exact_total and coverage.total_pairs == 66
    assert coverage.cap == 50 and coverage.stored_links == 50
    assert coverage.shown_density == pytest.approx(13 / 66)
    note = coverage_note(coverage, stored_density=1.0)
    assert "the strongest 13 of 66 links" in note
    assert "at most 50 links per campaign" in note
    assert "13 of 66 pairs of members, 0.20" in note and "measured 1.00 over all its links" in note


def test_without_a_density_m_is_every_possible_pair(store: Store) -> None:
    write_campaign(store, "web", WEB, score=1.0, summary={}, links=True)
    detail = campaign_detail(store, "web")
    assert detail is not None
    coverage = detail["coverage"]
    assert coverage.linked_pairs is None and coverage.truncated and not coverage.exact_total
    assert coverage.total_pairs == 66
    assert "the strongest 13 of at most 66 links" in coverage_note(coverage)


def test_an_uncut_graph_says_it_draws_every_link() -> None:
    edges = [Edge("a", "b", 1.0, "co_link"), Edge("a", "c", 1.0, "co_link"), Edge("a", "b", 1.0, "co_text")]
    coverage = link_coverage(edges, ["a", "b", "c"], {"density": 2 / 3, "edges": [{}, {}, {}]}, cap=50)
    assert (coverage.shown_pairs, coverage.possible_pairs, coverage.total_pairs) == (2, 3, 2)
    assert not coverage.truncated
    assert coverage_note(coverage).startswith("The graph draws all 2 links between members.")
    # The stage's density says 3 pairs are linked and only 2 are here: cut, whatever the cap.
    cut = link_coverage(edges, ["a", "b", "c"], {"density": 1.0}, cap=50)
    assert cut.truncated and cut.total_pairs == 3
    # Links the console infers are never cut: no cap applies.
    inferred = [Edge("a", "b", 1.0, "co_link", inferred=True)]
    assert link_coverage(inferred, ["a", "b"], {}, cap=1).cap is None
    assert link_coverage(campaign_edges({}, []), ["solo"]).shown_density is None


# ---------------------------------------------------------------------------------------------
# The rank


def test_the_rank_is_coordination_times_machine() -> None:
    assert campaign_rank(0.6, 0.5, 0.95).rank == pytest.approx(0.57)
    assert campaign_rank(None, 0.5, 0.8).coordination == 0.5, "density when there is no score"
    assert campaign_rank(None, None, 0.8).rank == 0.0
    unknown = campaign_rank(0.8)
    assert unknown.machine == UNKNOWN_MACHINE and not unknown.machine_known and unknown.rank == pytest.approx(0.4)


def ranking_store(store: Store) -> None:
    write_campaign(store, "people", ["h1", "h2", "h3"], score=0.95, summary={"density": 1.0}, probabilities=0.1)
    write_campaign(store, "bots", ["b1", "b2", "b3", "b4"], score=0.6, summary={"density": 0.5}, probabilities=0.95)
    write_campaign(store, "tight-bots", ["t1", "t2"], score=1.0, summary={"machine_share": 0.9})
    write_campaign(store, "unknown", ["u1", "u2"], score=0.8, summary={"density": "n/a"})
    write_campaign(store, "density-only", ["d1", "d2", "d3"], score=None, summary={"density": 0.5}, probabilities=0.8)


def test_the_campaign_queue_ranks_coordinated_machine_campaigns_first(store: Store) -> None:
    ranking_store(store)
    page = ranked_campaign_queue(store, CampaignFilter(sort=RANK_SORT))
    rows = page.rows.to_dicts()
    assert [r["campaign_id"] for r in rows] == ["tight-bots", "bots", "density-only", "unknown", "people"]
    assert page.total == 5
    expected = {
        "tight-bots": campaign_rank(1.0, None, 0.9),
        "bots": campaign_rank(0.6, 0.5, 0.95),
        "density-only": campaign_rank(None, 0.5, 0.8),
        "unknown": campaign_rank(0.8, None, None),
        "people": campaign_rank(0.95, 1.0, 0.1),
    }
    for row in rows:
        parts = expected[row["campaign_id"]]
        assert row["rank"] == pytest.approx(parts.rank), row
        assert row["coordination"] == pytest.approx(parts.coordination)
        assert (row["machine"] is None) == (not parts.machine_known)
    # "density-only" (0.4, 3 accounts) and "unknown" (0.4, 2 accounts) tie: the larger first.
    assert rows[2]["rank"] == pytest.approx(rows[3]["rank"])
    second = ranked_campaign_queue(store, CampaignFilter(sort=RANK_SORT), limit=2, offset=2)
    assert second.rows["campaign_id"].to_list() == ["density-only", "unknown"] and second.total == 5


def test_the_ranked_queue_filters_and_sorts_as_the_queue_does(store: Store) -> None:
    ranking_store(store)
    with store.transaction() as conn:
        conn.execute(sa.update(TABLES["campaigns"]).where(TABLES["campaigns"].c.campaign_id == "people")
                     .values(status="claimed", assignee="alice@example.org"))  # fmt: skip
    filters = [
        CampaignFilter(),
        CampaignFilter(statuses=("claimed",)),
        CampaignFilter(min_score=0.7),
        CampaignFilter(min_size=3),
        CampaignFilter(account="b"),
        CampaignFilter(assignee=""),
        CampaignFilter(assignee="alice@example.org", sort="size"),
    ]
    for flt in filters:
        plain = campaign_queue(store, flt, now=T0)
        ranked = ranked_campaign_queue(store, flt, now=T0)
        assert ranked.total == plain.total, flt
        assert set(ranked.rows["campaign_id"]) == set(plain.rows["campaign_id"]), flt
        assert dict(ranked.rows.select("campaign_id", "open_flags").iter_rows()) == dict(
            plain.rows.select("campaign_id", "open_flags").iter_rows()
        )
        if flt.sort != RANK_SORT:
            assert ranked.rows["campaign_id"].to_list() == plain.rows["campaign_id"].to_list(), flt
    assert ranked_campaign_queue(store, now=T0).rows["sla_left_s"].to_list() == pytest.approx([24 * 3600.0] * 5)
    with pytest.raises(ValueError, match="unknown sort"):
        ranked_campaign_queue(store, CampaignFilter(sort="nope"))


def test_the_machine_share_can_come_from_one_detector(store: Store) -> None:
    write_campaign(store, "bots", ["b1", "b2"], score=1.0, summary={}, probabilities=0.9)
    store.write_batch(posts=[], results=[result_row("bots-p00", 0.1, "other"), result_row("bots-p01", 0.1, "other")],
                      flags=[], dead_letters=[])  # fmt: skip
    [every] = ranked_campaign_queue(store).rows["machine"].to_list()
    [aitext] = ranked_campaign_queue(store, detector="aitext").rows["machine"].to_list()
    assert (every, aitext) == (pytest.approx(0.5), pytest.approx(0.9))


# ---------------------------------------------------------------------------------------------
# The word diff and the time gap


def test_the_word_diff_escapes_hostile_text_and_marks_changed_words() -> None:
    diff = word_diff_html(f"Vote early {HOSTILE} on Sunday", f"Vote late {HOSTILE} on Sunday user-{RLO}gnp.exe")
    assert "<script" not in diff and "<img" not in diff and 'onerror="' not in diff
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in diff and "onerror=&quot;alert(2)&quot;" in diff
    assert '<del style="background:rgba(220,50,50,0.22)">early</del>' in diff
    assert ">late</ins>" in diff and ">user-⟨U+202E⟩gnp.exe</ins>" in diff
    assert RLO not in diff
    assert "Vote" in diff and "Sunday" in diff and "Vote</del>" not in diff, "shared words stay plain"
    same = word_diff_html("same  words\nhere", "same words here")
    assert "identical word for word" in same and "<del" not in same.split("</div>", 1)[1]
    assert "<ins" not in same.split("</div>", 1)[1]


def test_seconds_apart_reads_as_seconds() -> None:
    assert seconds_apart(4.6) == "4.6 s apart"
    assert seconds_apart(83.2) == "83 s apart"
    assert seconds_apart(5_400) == "5,400 s apart"
    assert seconds_apart(None) == ""


# ---------------------------------------------------------------------------------------------
# The pages


@pytest.fixture
def console(tmp_path: Path, console_opener: Callable[..., Callable[..., AppTest]]) -> Iterator[Callable[..., AppTest]]:
    """The app in local mode on a small SQLite store: a 12-account campaign cut at 50 stored links,
    one of whose posts is hostile markup, and two others to rank."""
    with Store.open(f"sqlite:///{tmp_path / 'campaign.db'}") as opened:
        write_campaign(opened, "web", WEB, score=1.0, summary={"density": 1.0, "synchrony": 1.0}, probabilities=0.9,
                       texts=lambda i: HOSTILE if i == 1 else vote_text(i), links=True)  # fmt: skip
        write_campaign(opened, "people", ["h1", "h2", "h3"], score=0.95, summary={"density": 1.0}, probabilities=0.1)
        write_campaign(opened, "loose", ["l1", "l2"], score=0.3, summary={"density": 0.3}, probabilities=0.95)
        yield console_opener(opened, "ann@example.org")


def test_the_campaign_page_shows_each_pair_once_with_its_gap_and_the_cut(console: Callable[..., AppTest]) -> None:
    at = go(console(), "campaign", campaign="web")
    captions = [c.value for c in at.caption]
    assert any("the strongest 13 of 66 links" in c for c in captions), captions
    metric = next(m for m in at.metric if m.label == "Density of links shown")
    assert metric.value == "0.20"

    links = next(d.value for d in at.dataframe if "matched posts" in d.value.columns)
    assert len(links) == 13 and list(links["matched posts"]) == [1] * 13
    assert list(links.iloc[0][["source", "target"]]) == ["acct_00", "acct_01"]
    assert links.iloc[0]["networks"] == ", ".join(NETWORKS)
    # The graph: 50 stored links (one per pair and type) are 13 lines, one per pair, each with its types.
    drawn = [r for r in chart_rows(at) if "networks" in r]
    assert len(drawn) == 13, "one line per pair of accounts, not one per co-action type"
    assert len({(r["source"], r["target"]) for r in drawn}) == 13
    by_pair = {(r["source"], r["target"]): r for r in drawn}
    assert by_pair[("acct_00", "acct_01")]["networks"] == ", ".join(f"{n} 1.00" for n in sorted(NETWORKS))
    assert by_pair[("acct_01", "acct_03")]["types"] == 2, "the cut left this pair two of its four types"

    shown = texts(at)
    left = [t for t in shown if t.startswith("acct_00 · ")]
    right = [t for t in shown if t.startswith("acct_01 · ")]
    assert left == ["acct_00 · 2026-03-01 09:00:00 UTC"], "the pair once, its time readable"
    assert right == ["acct_01 · 2026-03-01 09:00:03 UTC"]
    assert HOSTILE in shown, "the post's text as text"
    assert any(c.startswith("3.0 s apart · matched as co\\_hashtag") for c in captions), captions
    [diff] = [h.value for h in at.get("html") if "chorus-diff" in h.value]
    assert "&lt;script&gt;" in diff and "<script" not in diff and "<del" in diff and "<ins" in diff


def test_open_account_opens_the_account_page(console: Callable[..., AppTest]) -> None:
    at = go(console(), "campaign", campaign="web")
    at.selectbox(key="campaign-account").select("acct_03").run()
    button(at, "Open account").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Account"
    assert "acct_03" in texts(at)

    at = go(console(), "campaign", campaign="web")
    button(at, "Open account acct\\_01").click().run()
    assert at.title[0].value == "Account" and "acct_01" in texts(at)


def test_the_campaign_queue_puts_the_machine_network_first(console: Callable[..., AppTest]) -> None:
    at = go(console(), "campaigns")
    table = at.dataframe[0].value
    assert list(table["campaign_id"]) == ["web", "loose", "people"]
    assert list(table["rank"]) == pytest.approx([0.9, 0.285, 0.095])
    assert any(c.value.startswith("Ranked most coordinated and most machine-written first") for c in at.caption)
    at.selectbox(key="c-sort").select("size").run()
    assert list(at.dataframe[0].value["campaign_id"]) == ["web", "people", "loose"]


def test_the_queue_opens_the_selected_cases_account(
    tmp_path: Path, console_opener: Callable[..., Callable[..., AppTest]]
) -> None:
    from test_console import write_flagged_post

    with Store.open(f"sqlite:///{tmp_path / 'queue.db'}") as opened:
        write_flagged_post(opened, "q-post-1", "Some text.", f"user-{RLO}gnp.exe", {})
        at = console_opener(opened, "ann@example.org")()
        assert button(at, "Open account").disabled, "nothing selected yet"
        [table] = [d for d in at.dataframe if (d.key or "").startswith("q")]
        at.session_state[table.key] = {"selection": {"rows": [0], "columns": [], "cells": []}}
        at.run()
        button(at, "Open account").click().run()
        assert not at.exception, at.exception
        assert at.title[0].value == "Account"
        assert "user-⟨U+202E⟩gnp.exe" in texts(at), "the stored id opened, spelt out"
