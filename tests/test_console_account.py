"""The account page (issue #15): its data on SQLite and PostgreSQL, and the page driven like a user.

What these prove: for one account the store gives back its posts newest first and a page at a time,
each with its flags and highest calibrated probability; its flags by detector and status; its
machine share per UTC day with a 95% Wilson interval that contains the mean; the campaigns it is in
with their size and score; the automated actions on its posts, in force or why not, with the
conditions that held; every decision on its flags and campaigns with who reversed it; the audit
entries about it; and nothing of any other account. The page (``?account=ID`` or an id typed in)
shows the posts, a decision and an id with a right-to-left override spelt out, draws the share with
its band, and opens a post.

The stores are small and written through the worker's own write path and the review functions;
the helpers come from ``test_review`` (posts, flags, campaign) and ``test_console`` (driving the app).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy.engine import make_url
from streamlit.testing.v1 import AppTest
from test_console import button, go, texts, write_flagged_post
from test_review import ALICE, LEE, T0, _campaign, _flag, _post, fid

from detectors.aitext.aggregate import wilson_interval
from stream.policy.actions import reverse_actions
from stream.review.account_page import (
    account_actions,
    account_audit,
    account_campaigns,
    account_counts,
    account_decisions,
    account_flags,
    account_post_page,
    machine_share_by_day,
)
from stream.review.decisions import decide
from stream.review.reversal import reverse
from stream.store.database import Store

#: The account under test: posts p1, p5, p9, p13, p17 on day one (all flagged by ``aitext``), and
#: three more on day two; ``acct3`` shares its campaign, ``acct2`` is someone else.
ACCOUNT = "acct1"
DAY_ONE = {"p1": 0.9, "p5": 0.8, "p9": 0.7, "p13": float("nan"), "p17": 0.6}
DAY_TWO = {"p40": 0.2, "p41": 0.3, "p42": 0.1}
RLO = "\u202e"


def _result(post_id: str, probability: float | None, detector: str = "aitext", score: float = 0.95) -> dict:
    return {"post_id": post_id, "detector": detector, "model_version": "v1", "score": score,
            "probability": probability, "threshold_name": "default", "threshold": 0.5, "flagged": True,
            "evidence": {}}  # fmt: skip


def _action(action_id: str, post_id: str, account: str, *, mode: str = "active", status: str = "emitted") -> dict:
    return {"action_id": action_id, "mode": mode, "status": status, "policy_id": "pol", "policy_version": "1",
            "rule_id": "label-ai", "action": "label", "post_id": post_id, "account_id": account,
            "params": {"label": "likely machine-written"}, "scores": {},
            "evidence": {"conditions": ["detector.aitext.probability >= 0.8", "account.aitext.n_posts >= 3"]},
            "decided_at": T0 + timedelta(hours=2), "worker_id": "w1"}  # fmt: skip


@pytest.fixture
def store(review_db_url: str) -> Iterator[Store]:
    """test_review's twenty posts of four accounts, each flagged, plus scores, actions, a campaign, decisions."""
    with Store.open(review_db_url) as opened:
        later = [_post(40 + k, account_id=ACCOUNT, created_at=T0 + timedelta(days=1, minutes=k)) for k in range(3)]
        opened.write_batch(
            posts=[_post(i) for i in range(20)] + later,
            results=[_result(p, v) for p, v in {**DAY_ONE, **DAY_TWO, "p2": 0.99}.items()]
            + [_result("p5", None, detector="llm_boilerplate", score=1.0)],
            flags=[_flag(i) for i in range(20)]
            + [_flag(5, flag_id="llm_boilerplate:p5", detector="llm_boilerplate", score=1.0)],
            dead_letters=[],
            actions=[
                _action("act-live", "p1", ACCOUNT),
                _action("act-reversed", "p5", ACCOUNT),
                _action("act-shadow", "p9", ACCOUNT, mode="shadow", status="shadow"),
                _action("act-other", "p2", "acct2"),
            ],
        )
        _campaign(opened)  # camp-1: acct1 and acct3
        reverse_actions(opened, LEE, ["act-reversed"], "quoted a chatbot, not machine-written")
        decide(opened, ALICE, [fid(1)], "confirm", "undisclosed_ai_text")
        removed = decide(opened, ALICE, [fid(9)], "remove", "spam", "Spam.").decision_ids[fid(9)]
        reverse(opened, LEE, [removed], "appeal_upheld", "The author showed drafts.")
        decide(opened, LEE, ["camp-1"], "confirm", "coordinated_inauthentic", subject="campaign",
               include_member_flags=False)  # fmt: skip
        decide(opened, ALICE, [fid(2)], "confirm", "spam")  # acct2's: not on this account's page
        yield opened


# ---------------------------------------------------------------------------------------------
# Data


def test_counts_and_flags_by_detector_and_status(store: Store) -> None:
    counts = account_counts(store, ACCOUNT)
    assert counts["known"] and counts["posts"] == 8 and counts["flags"] == 6
    assert counts["flags_by_status"] == {"confirmed": 1, "open": 5}  # p9's removal was reversed: open again
    assert counts["undecided_flags"] == 5 and counts["campaigns"] == 1
    assert (counts["actions"], counts["actions_in_force"]) == (3, 1)
    assert counts["decisions"] == 4  # confirm p1, remove p9, its reversal, the campaign's confirmation
    assert counts["first_post"] == T0 + timedelta(minutes=1)
    assert counts["last_post"] == T0 + timedelta(days=1, minutes=2)
    unknown = account_counts(store, "nobody")
    assert not unknown["known"] and unknown["posts"] == 0 and unknown["first_post"] is None

    flags = account_flags(store, ACCOUNT)
    assert flags.select("detector", "status", "flags").rows() == [
        ("aitext", "confirmed", 1), ("aitext", "open", 4), ("llm_boilerplate", "open", 1),
    ]  # fmt: skip
    assert flags.schema["last_flagged"] == pl.Datetime("us", "UTC")
    assert account_flags(store, "nobody").is_empty()


def test_posts_newest_first_paged_with_flags_and_probability(store: Store) -> None:
    first = account_post_page(store, ACCOUNT, limit=3, offset=0)
    assert first.total == 8 and first.rows["post_id"].to_list() == ["p42", "p41", "p40"]
    assert first.rows["flags"].to_list() == ["", "", ""]
    assert first.rows["probability"].to_list() == pytest.approx([0.1, 0.3, 0.2])
    rest = account_post_page(store, ACCOUNT, limit=10, offset=3)
    assert rest.rows["post_id"].to_list() == ["p17", "p13", "p9", "p5", "p1"]
    p5 = rest.rows.row(3, named=True)
    assert p5["flags"] == "aitext: open, llm_boilerplate: open" and p5["undecided_flags"] == 2
    assert (p5["probability"], p5["probability_detector"], p5["max_score"]) == (0.8, "aitext", 1.0)
    assert p5["actions_in_force"] == 0  # its action was reversed
    p1 = rest.rows.row(4, named=True)
    assert p1["flags"] == "aitext: confirmed" and p1["actions_in_force"] == 1
    assert p1["preview"].startswith("post 1:")
    p13 = rest.rows.row(1, named=True)
    assert p13["probability"] is None and p13["max_score"] == 0.95, "not calibrated (NaN): no probability"
    empty = account_post_page(store, "nobody")
    assert empty.total == 0 and empty.rows.schema == first.rows.schema


def test_machine_share_per_day_with_a_wilson_interval(store: Store) -> None:
    share = machine_share_by_day(store, ACCOUNT)
    assert share["day"].to_list() == [date(2026, 3, 1), date(2026, 3, 2)]
    assert share["detector"].to_list() == ["aitext", "aitext"], "a detector without probabilities has no rows"
    assert share["posts"].to_list() == [4, 3], "p13 has no probability"
    assert share["machine_share"].to_list() == pytest.approx([(0.9 + 0.8 + 0.7 + 0.6) / 4, 0.2])
    lower, upper = wilson_interval(3.0, 4)
    assert (share["share_lower"][0], share["share_upper"][0]) == (pytest.approx(lower), pytest.approx(upper))
    for row in share.iter_rows(named=True):
        assert 0.0 <= row["share_lower"] <= row["machine_share"] <= row["share_upper"] <= 1.0
    assert machine_share_by_day(store, "nobody").schema == share.schema


def test_a_post_late_in_the_evening_utc_counts_on_its_utc_day(review_db_url: str) -> None:
    """Days are UTC days whatever the database session's time zone (PostgreSQL: set to UTC+14 here)."""
    url = make_url(review_db_url)
    if url.get_backend_name() == "postgresql":
        options = f"{url.query.get('options', '')} -ctimezone=Pacific/Kiritimati".strip()
        url = url.update_query_dict({"options": options})
    with Store.open(url.render_as_string(hide_password=False)) as opened:
        late = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
        opened.write_batch(
            posts=[_post(1, account_id="late", created_at=late)], results=[_result("p1", 0.5)], flags=[],
            dead_letters=[],
        )  # fmt: skip
        assert machine_share_by_day(opened, "late")["day"].to_list() == [date(2026, 3, 1)]


def test_campaigns_actions_decisions_and_audit_of_the_account_only(store: Store) -> None:
    campaigns = account_campaigns(store, ACCOUNT)
    assert campaigns.select("campaign_id", "size", "score").rows() == [("camp-1", 2, 0.9)]
    assert account_campaigns(store, "acct2").is_empty()

    actions = account_actions(store, ACCOUNT)
    assert sorted(actions["action_id"]) == ["act-live", "act-reversed", "act-shadow"]
    by_id = {row["action_id"]: row for row in actions.iter_rows(named=True)}
    assert by_id["act-live"]["in_force"] and by_id["act-live"]["why_not"] is None
    assert by_id["act-live"]["why"] == "detector.aitext.probability >= 0.8 and account.aitext.n_posts >= 3"
    assert by_id["act-reversed"]["why_not"].startswith(f"already reversed by {LEE.name}")
    assert by_id["act-reversed"]["reversal_reason"] == "quoted a chatbot, not machine-written"
    assert by_id["act-shadow"]["why_not"].startswith("a shadow record")

    decisions = account_decisions(store, ACCOUNT)
    assert decisions.select("decision", "subject_type", "subject_id", "post_id", "reviewer").rows() == [
        ("confirm", "campaign", "camp-1", None, LEE.name),
        ("reverse", "flag", fid(9), "p9", LEE.name),
        ("remove", "flag", fid(9), "p9", ALICE.name),
        ("confirm", "flag", fid(1), "p1", ALICE.name),
    ]  # fmt: skip
    assert decisions["reversed"].to_list() == [False, False, True, False]
    removal = decisions.row(2, named=True)
    assert removal["reversed_by"] == decisions["decision_id"][1] == decisions["decision_id"][2] + 1
    assert decisions["reverses_decision_id"][1] == removal["decision_id"]
    assert decisions["decided_at"].dtype == pl.Datetime("us", "UTC")
    assert account_decisions(store, ACCOUNT, limit=1).height == 1
    assert account_decisions(store, "nobody").is_empty()

    audit = account_audit(store, ACCOUNT)
    assert audit["action"].to_list() == ["flag.reverse", "flag.decide", "flag.decide", "policy_action.reverse"]
    assert set(audit["subject_id"]) == {fid(1), fid(9), "act-reversed"}, "not acct2's, not the campaign's"


# ---------------------------------------------------------------------------------------------
# The page

RLO_ACCOUNT = f"user-{RLO}gnp.exe"


@pytest.fixture
def console(tmp_path: Path, console_opener: Callable[..., Callable[..., AppTest]]) -> Iterator[Callable[..., AppTest]]:
    """The app in local mode on a small SQLite store: an account whose id hides a right-to-left override,
    with two flagged posts, one of them decided."""
    with Store.open(f"sqlite:///{tmp_path / 'account.db'}") as opened:
        first = write_flagged_post(opened, "rlo-post-1", "Totally organic opinion.", RLO_ACCOUNT, {})
        write_flagged_post(opened, f"rlo-post-{RLO}2", "Another organic one.", RLO_ACCOUNT, {})
        decide(opened, ALICE, [first], "confirm", "undisclosed_ai_text", "Boilerplate of a chatbot.")
        yield console_opener(opened, "ann@example.org")


def _table(at: AppTest, key_prefix: str) -> Any:
    [table] = [d for d in at.dataframe if (d.key or "").startswith(key_prefix)]
    return table


def test_the_page_shows_posts_decisions_and_the_id_spelt_out(console: Callable[..., AppTest]) -> None:
    at = go(console(), "account", account=RLO_ACCOUNT)
    assert at.title[0].value == "Account"
    shown = texts(at)
    assert "user-⟨U+202E⟩gnp.exe" in shown and RLO_ACCOUNT not in shown, "the override is spelt out"
    assert [m.value for m in at.metric][:3] == ["2", "2", "1"], "posts, flags, undecided flags"

    posts = _table(at, "acct-posts-table").value
    assert sorted(posts["post_id"]) == ["rlo-post-1", "rlo-post-⟨U+202E⟩2"]
    assert set(posts["flags"]) == {"aitext: confirmed", "aitext: open"}
    assert list(posts["probability"]) == pytest.approx([0.93, 0.93])
    assert all(str(v).endswith(" UTC") for v in posts["created_at"]), "readable dates, not ISO strings"

    decisions = _table(at, "acct-decisions-table").value
    assert list(decisions["decision"]) == ["confirm"] and list(decisions["reviewer"]) == [ALICE.name]
    assert list(decisions["statement"]) == ["Boilerplate of a chatbot."]
    assert list(decisions["reversed"]) == [False]
    assert at.get("vega_lite_chart"), "the machine share over time, with its band"
    for frame in (t.value for t in at.dataframe):
        for column in frame.columns:
            assert not any(RLO in str(v) for v in frame[column]), f"hidden character in column {column}"


def test_a_post_opens_from_the_account_page(console: Callable[..., AppTest]) -> None:
    at = go(console(), "account", account=RLO_ACCOUNT)
    assert button(at, "Open post").disabled, "nothing selected yet"
    table = _table(at, "acct-posts-table")
    row = list(table.value["post_id"]).index("rlo-post-1")
    at.session_state[table.key] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    at.run()
    button(at, "Open post").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Post"
    assert "rlo-post-1" in texts(at)


def test_an_id_typed_in_opens_the_account(console: Callable[..., AppTest]) -> None:
    at = go(console(), "account")
    assert at.text_input(key="account-open").label == "Account id"
    at.text_input(key="account-open").input(RLO_ACCOUNT).run()
    assert not at.exception, at.exception
    assert "user-⟨U+202E⟩gnp.exe" in texts(at)
    assert len(_table(at, "acct-posts-table").value) == 2

    unknown = go(console(), "account", account="nobody")
    assert any("no posts, flags, campaigns or automated actions" in e.value for e in unknown.error)
