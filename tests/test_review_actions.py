"""Automated actions on the case (issue #15), on SQLite and PostgreSQL: what is in force on a post,
a dismissal that reverses the live actions it names in its own transaction, and the flag queue's
new columns, search, margin order and default filter.

What these prove: a post's actions read back with whether each is in force and why not; a dismissal
with ``reverse_actions`` reverses exactly those actions, writes the decision, its audit row (listing
the actions) and one ``policy_action.reverse`` row per action (naming the decision) together, and
the workers' outbox sees the reversals; a refused one (an action not in force, on another post,
unknown, a decision other than a dismissal, a case someone else holds, a reversal that loses a race,
a failed audit write) writes nothing at all; the queue counts the actions in force per post, searches
by post id, flag id, account id and text, sorts by margin over the threshold, and shows escalated
cases by default.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest
from test_console import button, go, notice, texts

from stream.policy import actions as policy_actions
from stream.policy.actions import pending_reversals, post_actions, reverse_actions
from stream.review import decisions
from stream.review.claims import claim
from stream.review.decisions import decide
from stream.review.queues import FlagFilter, flag_queue, next_flag
from stream.store.database import Store
from stream.store.reviewers import InvalidDecision, Reviewer

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=6)
ALICE = Reviewer("alice@example.org", "reviewer")
BOB = Reviewer("bob@example.org", "reviewer")
LEE = Reviewer("lee@example.org", "lead")
EARLIER = "an earlier reversal from the Automated actions page"

# Posts p0..p5; the example policy labelled and reduced the reach of p0, p1 and p3.
TEXTS = {
    "p0": "As an AI language model, I think 100% of voters agree",
    "p1": "Certainly! Here is a post about the election",
    "p2": "my cat knocked the coffee over again",
    "p3": "Vote early, vote often: a machine wrote this",
    "p4": "Escalated because the policy team must decide",
    "p5": "under_score and 50% off",
}
ACCOUNTS = {"p0": "acct-a", "p1": "acct-b", "p2": "acct-a", "p3": "acct-c", "p4": "acct-b", "p5": "acct-d"}


def _flag(post: str, detector: str, score: float, threshold: float | None, hours: int) -> dict[str, Any]:
    return {
        "flag_id": f"{detector}:{post}", "post_id": post, "account_id": ACCOUNTS[post], "detector": detector,
        "model_version": "v1", "score": score, "probability": None if threshold is None else min(score, 0.99),
        "threshold_name": "low_fpr", "threshold": threshold, "evidence": {},
        "post_created_at": T0, "flagged_at": T0 + timedelta(hours=hours),
    }  # fmt: skip


# Two detectors on different scales: aitext scores 0..1 (threshold 0.5), burst scores 0..100 (threshold 40).
FLAGS = [
    _flag("p0", "aitext", 0.97, 0.5, 0),  # margin 0.47
    _flag("p0", "burst", 41.0, 40.0, 1),  # margin 1.0, same post as the one above
    _flag("p1", "aitext", 0.62, 0.5, 2),  # margin 0.12
    _flag("p2", "aitext", 0.55, 0.5, 3),  # margin 0.05
    _flag("p3", "burst", 90.0, 40.0, 4),  # margin 50
    _flag("p4", "aitext", 0.80, 0.5, 5),  # escalated below
    _flag("p5", "aitext", 0.70, None, 5),  # no threshold: no margin
]


def _action(action_id: str, post: str, action: str, *, mode: str = "active", status: str = "emitted") -> dict:
    return {
        "action_id": action_id, "mode": mode, "status": status, "policy_id": "chorus-example",
        "policy_version": "1" if mode == "active" else "2", "rule_id": f"{action}-rule", "action": action,
        "post_id": post, "account_id": ACCOUNTS[post], "params": {}, "scores": {}, "evidence": {},
        "decided_at": T0 + timedelta(minutes=len(action_id)), "worker_id": "w1",
    }  # fmt: skip


ACTIONS = [
    _action("a0-label", "p0", "label"),
    _action("a0-reach", "p0", "reduce_reach"),
    _action("a0-shadow", "p0", "label", mode="shadow", status="shadow"),
    _action("a0-held", "p0", "reduce_reach", status="suppressed"),
    _action("a0-undone", "p0", "queue_review"),  # reversed in the fixture
    _action("a1-label", "p1", "label"),
    _action("a1-reach", "p1", "reduce_reach"),
    _action("a3-label", "p3", "label"),
]


@pytest.fixture
def store(review_db_url: str) -> Iterator[Store]:
    with Store.open(review_db_url) as opened:
        posts = [
            {"post_id": p, "account_id": ACCOUNTS[p], "created_at": T0, "text": text, "lang": "en"}
            for p, text in TEXTS.items()
        ]
        opened.write_batch(posts=posts, results=[], flags=FLAGS, dead_letters=[], actions=ACTIONS)
        assert reverse_actions(opened, LEE, ["a0-undone"], EARLIER).applied == ["a0-undone"]
        decide(opened, ALICE, ["aitext:p4"], "escalate", "needs_policy_call", now=NOW)
        yield opened


def audit_rows(store: Store) -> list[dict[str, Any]]:
    rows = store.frame("audit_log").sort("audit_id").to_dicts()
    for row in rows:
        row["before"] = json.loads(row["before"]) if row["before"] else None
        row["after"] = json.loads(row["after"]) if row["after"] else None
    return rows


def in_force(store: Store, post: str) -> list[str]:
    frame = post_actions(store, post)
    return frame.filter(frame["in_force"])["action_id"].to_list()


def snapshot(store: Store) -> tuple[Any, ...]:
    """Everything a refused decision must leave as it was."""
    return (
        store.frame("flags").sort("flag_id").select("flag_id", "status", "assignee").to_dicts(),
        store.count("review_decisions"),
        store.count("audit_log"),
        store.frame("policy_actions").sort("action_id").select("action_id", "reversed_at", "reversed_by").to_dicts(),
    )


# ---------------------------------------------------------------------------------------------
# What is in force on a post


def test_a_posts_actions_say_whether_each_is_in_force_and_why_not(store: Store) -> None:
    frame = post_actions(store, "p0")
    rows = {r["action_id"]: r for r in frame.iter_rows(named=True)}
    assert set(rows) == {"a0-label", "a0-reach", "a0-shadow", "a0-held", "a0-undone"}
    assert in_force(store, "p0") == ["a0-label", "a0-reach"]
    assert rows["a0-label"]["why_not"] is None and rows["a0-label"]["rule_id"] == "label-rule"
    assert rows["a0-label"]["policy_version"] == "1" and rows["a0-label"]["decided_at"] is not None
    assert "shadow record" in rows["a0-shadow"]["why_not"]
    assert "circuit breaker" in rows["a0-held"]["why_not"]
    assert rows["a0-undone"]["why_not"].startswith(f"already reversed by {LEE.name}")
    empty = post_actions(store, "p2")
    assert empty.is_empty() and empty.schema == frame.schema, "an empty list keeps its column types"


# ---------------------------------------------------------------------------------------------
# A dismissal that reverses live actions


def test_a_dismissal_reverses_exactly_the_actions_it_names_with_the_decision(store: Store) -> None:
    claim(store, ALICE, ["aitext:p0"])
    audit_before = len(audit_rows(store))
    outcome = decide(
        store, ALICE, ["aitext:p0"], "dismiss", "false_positive", "Quoted a chatbot to mock it.",
        reverse_actions=["a0-label"], now=NOW,
    )  # fmt: skip
    assert outcome.ok and outcome.applied == ["aitext:p0", "policy_action:a0-label"]
    decision_id = outcome.decision_ids["aitext:p0"]
    assert in_force(store, "p0") == ["a0-reach"], "the action not named stays in force"
    assert in_force(store, "p1") == ["a1-label", "a1-reach"]
    [label] = store.frame("policy_actions", where="action_id = 'a0-label'").to_dicts()
    assert (label["reversed_by"], label["reversed_at"]) == (ALICE.name, NOW)
    assert label["reversal_reason"] == (
        f"review decision {decision_id} dismissed flag aitext:p0 (false_positive): Quoted a chatbot to mock it."
    )

    new = audit_rows(store)[audit_before:]
    assert [(a["action"], a["subject_id"]) for a in new] == [
        ("flag.decide", "aitext:p0"),
        ("policy_action.reverse", "a0-label"),
    ], "one audit row for the decision, one per reversed action"
    decided, reversed_ = new
    assert decided["after"]["decision"] == "dismiss" and decided["after"]["decision_id"] == decision_id
    assert decided["after"]["reversed_actions"] == ["a0-label"], "the decision's audit row names the actions"
    assert reversed_["actor"] == ALICE.name and reversed_["before"]["post_id"] == "p0"
    assert reversed_["after"]["decision_id"] == decision_id and reversed_["after"]["flag_id"] == "aitext:p0"
    assert sorted(p.action_id for p in pending_reversals(store)) == ["a0-label", "a0-undone"], (
        "the workers relay it to the platform like any reversal"
    )
    [row] = store.frame("review_decisions", where="subject_id = 'aitext:p0'").to_dicts()
    assert (row["decision"], row["reviewer"]) == ("dismiss", ALICE.name)


def test_a_bulk_dismissal_reverses_the_actions_on_each_flags_post(store: Store) -> None:
    outcome = decide(
        store, BOB, ["aitext:p0", "burst:p0", "aitext:p1"], "dismiss", "false_positive",
        reverse_actions=["a0-label", "a0-reach", "a1-reach"], now=NOW,
    )  # fmt: skip
    assert outcome.ok
    assert sorted(a for a in outcome.applied if a.startswith("policy_action:")) == [
        "policy_action:a0-label", "policy_action:a0-reach", "policy_action:a1-reach",
    ]  # fmt: skip
    assert in_force(store, "p0") == [] and in_force(store, "p1") == ["a1-label"]
    decided = {a["subject_id"]: a["after"] for a in audit_rows(store) if a["action"] == "flag.decide"}
    assert decided["aitext:p0"]["reversed_actions"] == ["a0-label", "a0-reach"]
    assert decided["burst:p0"]["reversed_actions"] == ["a0-label", "a0-reach"], "both flags of p0 name them"
    assert decided["aitext:p1"]["reversed_actions"] == ["a1-reach"]
    reversals = [a for a in audit_rows(store) if a["action"] == "policy_action.reverse"]
    assert sorted(a["subject_id"] for a in reversals) == ["a0-label", "a0-reach", "a0-undone", "a1-reach"]
    assert {a["after"].get("flag_id") for a in reversals if a["subject_id"] != "a0-undone"} == {
        "aitext:p0", "aitext:p1",
    }, "each action is reversed once, by the first decision on its post"  # fmt: skip


def test_a_dismissal_without_reversals_leaves_the_actions_in_force(store: Store) -> None:
    outcome = decide(store, ALICE, ["aitext:p1"], "dismiss", "false_positive", reverse_actions=[], now=NOW)
    assert outcome.applied == ["aitext:p1"]
    assert in_force(store, "p1") == ["a1-label", "a1-reach"]
    [decided] = [a for a in audit_rows(store) if a["action"] == "flag.decide" and a["subject_id"] == "aitext:p1"]
    assert "reversed_actions" not in decided["after"]


@pytest.mark.parametrize(
    ("ids", "decision", "reason", "actions", "subject", "message"),
    [
        (["aitext:p0"], "dismiss", "false_positive", ["a0-label", "a0-shadow"], "flag", "a0-shadow: a shadow record"),
        (["aitext:p0"], "dismiss", "false_positive", ["a0-held"], "flag", "a0-held: held back by its rule's circuit"),
        (["aitext:p0"], "dismiss", "false_positive", ["a0-undone"], "flag", "a0-undone: already reversed by"),
        (["aitext:p0"], "dismiss", "false_positive", ["a1-label"], "flag", "a1-label: it is on post p1, not on"),
        (["aitext:p0"], "dismiss", "false_positive", ["nope"], "flag", "nope: no such action"),
        (["aitext:p0"], "confirm", "undisclosed_ai_text", ["a0-label"], "flag", "only a dismissal reverses"),
        (["aitext:p0"], "escalate", "needs_policy_call", ["a0-label"], "flag", "only a dismissal reverses"),
        (["camp-1"], "dismiss", "false_positive", ["a0-label"], "campaign", "a campaign decision does not reverse"),
    ],
    ids=["shadow", "suppressed", "reversed", "other-post", "unknown", "confirm", "escalate", "campaign"],
)
def test_a_reversal_that_cannot_be_made_refuses_the_whole_decision(
    store: Store, ids: list[str], decision: str, reason: str, actions: list[str], subject: str, message: str
) -> None:
    before = snapshot(store)
    with pytest.raises(InvalidDecision, match=message):
        decide(store, ALICE, ids, decision, reason, "Statement.", subject=subject, reverse_actions=actions, now=NOW)
    assert snapshot(store) == before, "nothing written: no decision, no audit row, no reversal"


def test_a_case_that_cannot_be_decided_leaves_every_case_and_action_alone(store: Store) -> None:
    claim(store, BOB, ["aitext:p1"])
    before = snapshot(store)
    outcome = decide(
        store, ALICE, ["aitext:p0", "aitext:p1"], "dismiss", "false_positive",
        reverse_actions=["a0-label", "a1-label"], now=NOW,
    )  # fmt: skip
    assert outcome.applied == [] and outcome.decision_ids == {}
    assert outcome.conflicts["aitext:p1"].startswith(f"claimed by {BOB.name}")
    assert "all of its cases or none" in outcome.conflicts["aitext:p0"]
    assert snapshot(store) == before


def test_a_reversal_that_loses_a_race_rolls_the_decision_back(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Someone reverses the action between the decision's check and its update: the update's
    compare-and-set (``reversed_at IS NULL``) misses, and the decision goes too."""
    stale = {"a0-label": {"action_id": "a0-label", "mode": "active", "status": "emitted", "post_id": "p0",
                          "reversed_at": None, "reversed_by": None}}  # fmt: skip
    monkeypatch.setattr(decisions, "read_actions", lambda conn, ids: stale)
    reverse_actions(store, LEE, ["a0-label"], EARLIER)
    before = snapshot(store)
    with pytest.raises(InvalidDecision, match=r"a0-label: already reversed by lee@example\.org"):
        decide(store, ALICE, ["aitext:p0"], "dismiss", "false_positive", reverse_actions=["a0-label"], now=NOW)
    assert snapshot(store) == before


def test_a_failed_reversal_audit_undoes_the_decision(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The decision, its audit row and the reversals share one transaction: the last write failing undoes all."""
    append = store.append_audit

    def broken(**kwargs: Any) -> int:
        if kwargs["subject_type"] == policy_actions.AUDIT_ACTION_SUBJECT:
            raise RuntimeError("audit log unavailable")
        return append(**kwargs)

    before = snapshot(store)
    monkeypatch.setattr(store, "append_audit", broken)
    with pytest.raises(RuntimeError, match="audit log unavailable"):
        decide(store, ALICE, ["aitext:p0"], "dismiss", "false_positive", reverse_actions=["a0-label"], now=NOW)
    monkeypatch.undo()
    assert snapshot(store) == before


# ---------------------------------------------------------------------------------------------
# The queue: actions in force, margin, search, escalated by default


def queue_ids(store: Store, **kw: Any) -> list[str]:
    return flag_queue(store, FlagFilter(**kw), limit=100, now=NOW).rows["flag_id"].to_list()


def test_the_queue_shows_actions_in_force_probability_threshold_and_margin(store: Store) -> None:
    rows = {r["flag_id"]: r for r in flag_queue(store, FlagFilter(), limit=100, now=NOW).rows.iter_rows(named=True)}
    assert {f: r["actions_in_force"] for f, r in rows.items()} == {
        "aitext:p0": 2, "burst:p0": 2, "aitext:p1": 2, "aitext:p2": 0, "burst:p3": 1, "aitext:p4": 0, "aitext:p5": 0,
    }, "only what the platform applies now: no shadow, held-back or reversed action"  # fmt: skip
    assert rows["burst:p3"]["margin"] == pytest.approx(50.0) and rows["aitext:p0"]["margin"] == pytest.approx(0.47)
    assert rows["aitext:p5"]["margin"] is None, "no threshold, no margin"
    assert rows["aitext:p1"]["probability"] == pytest.approx(0.62) and rows["aitext:p1"]["threshold"] == 0.5
    decide(store, ALICE, ["aitext:p1"], "dismiss", "false_positive", reverse_actions=["a1-label"], now=NOW)
    [row] = flag_queue(store, FlagFilter(search="p1", statuses=()), now=NOW).rows.iter_rows(named=True)
    assert row["actions_in_force"] == 1, "the count follows the reversal"


def test_margin_order_puts_the_flags_furthest_over_their_own_threshold_first(store: Store) -> None:
    assert queue_ids(store, sort="margin") == [
        "burst:p3", "burst:p0", "aitext:p0", "aitext:p4", "aitext:p1", "aitext:p2", "aitext:p5",
    ]  # fmt: skip
    assert queue_ids(store, sort="score")[:2] == ["burst:p3", "burst:p0"]
    first = flag_queue(store, FlagFilter(sort="margin"), limit=3, offset=3, now=NOW).rows["flag_id"].to_list()
    assert first == ["aitext:p4", "aitext:p1", "aitext:p2"], "pages in the same order"
    assert next_flag(store, ALICE, FlagFilter(sort="margin")) == "burst:p3"


def test_escalated_cases_are_in_the_default_filter(store: Store) -> None:
    assert FlagFilter().statuses == ("open", "claimed", "escalated")
    assert "aitext:p4" in queue_ids(store)
    assert "aitext:p4" not in queue_ids(store, statuses=("open", "claimed"))
    decide(store, ALICE, ["aitext:p2"], "confirm", "undisclosed_ai_text", now=NOW)
    assert "aitext:p2" not in queue_ids(store), "decided cases are not"
    assert next_flag(store, ALICE, FlagFilter(search="p4")) is None, "an escalated case only comes to a lead"
    assert next_flag(store, LEE, FlagFilter(search="p4")) == "aitext:p4"


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("p0", ["aitext:p0", "burst:p0"]),  # post id, exactly
        ("  p3 ", ["burst:p3"]),  # blanks around it are ignored
        ("burst:p0", ["burst:p0"]),  # flag id
        ("acct-b", ["aitext:p1", "aitext:p4"]),  # account id
        ("LANGUAGE model", ["aitext:p0", "burst:p0"]),  # text, any case
        ("100% of", ["aitext:p0", "burst:p0"]),
        ("100%voters", []),  # % is a character, not a LIKE wildcard
        ("cat_knocked", []),  # nor is _
        ("under_SCORE", ["aitext:p5"]),
        ("acct-", []),  # an account id is matched exactly (the account filter is the prefix one)
        ("", ["aitext:p0", "burst:p0", "aitext:p1", "aitext:p2", "burst:p3", "aitext:p4", "aitext:p5"]),
        ("nothing like this", []),
    ],
)
def test_search_by_post_flag_account_or_text(store: Store, search: str, expected: list[str]) -> None:
    assert sorted(queue_ids(store, search=search)) == sorted(expected)


# ---------------------------------------------------------------------------------------------
# The console: the post view's section and checkbox, the queue's columns and search (AppTest)


@pytest.fixture
def console(store: Store, console_opener: Callable[..., Callable[..., AppTest]]) -> Callable[..., AppTest]:
    """``console(reviewer, role)``: the app as that reviewer (local mode) on this test's store."""
    return console_opener(store, ALICE.name)


def reversal_checkbox(at: AppTest) -> Any:
    [box] = [c for c in at.checkbox if c.label.startswith("Also reverse")]
    return box


def test_post_view_dismissal_with_the_checkbox_reverses_the_live_actions(
    console: Callable[..., AppTest], store: Store
) -> None:
    at = go(console(), "post", flag="aitext:p0")
    assert "Automated actions in force" in [h.value for h in at.subheader]
    assert {"label", "reduce_reach", "label-rule", "reduce_reach-rule", "chorus-example@1"} <= set(texts(at))
    assert [b.key for b in at.button if (b.key or "").startswith("post-auto-reverse-")] == [
        "post-auto-reverse-a0-label", "post-auto-reverse-a0-reach",
    ], "one reverse button per action in force"  # fmt: skip
    [others] = [e for e in at.expander if "not in force" in e.label]
    assert others.label.startswith("3 other automated record(s)")
    assert not [c for c in at.checkbox if c.label.startswith("Also reverse")], "offered with a dismissal only"

    button(at, "Dismiss").click().run()
    box = reversal_checkbox(at)
    assert box.value is True, "ticked by default"
    assert box.label.replace("\\", "") == (
        "Also reverse 2 automated action(s) in force on this post "
        "(label by rule label-rule, reduce_reach by rule reduce_reach-rule)"
    )
    assert any(c.value.startswith("Ticked by default") for c in at.caption), "and it says so"
    at.selectbox(key="post-reason-dismiss-0").select("false_positive").run()
    at.text_area(key="post-statement-0").input("A human quoting a chatbot.").run()
    button(at, "Submit").click().run()
    assert notice(at) == "3 done", notice(at)

    assert in_force(store, "p0") == []
    reversed_ = store.frame("policy_actions").filter(pl.col("action_id").is_in(["a0-label", "a0-reach"]))
    assert set(reversed_["reversed_by"]) == {ALICE.name}
    [decision] = store.frame("review_decisions", where="subject_id = 'aitext:p0'").to_dicts()
    assert decision["decision"] == "dismiss"
    [decided] = [a for a in audit_rows(store) if a["action"] == "flag.decide" and a["subject_id"] == "aitext:p0"]
    assert decided["after"]["reversed_actions"] == ["a0-label", "a0-reach"]
    assert "No automated action of the policies is in force on this post." in [c.value for c in at.caption]
    assert in_force(store, "p1") == ["a1-label", "a1-reach"], "other posts keep theirs"


def test_post_view_dismissal_with_the_checkbox_unticked_leaves_the_actions(
    console: Callable[..., AppTest], store: Store
) -> None:
    at = go(console(), "post", flag="aitext:p1")
    button(at, "Dismiss").click().run()
    reversal_checkbox(at).uncheck().run()
    at.selectbox(key="post-reason-dismiss-0").select("false_positive").run()
    button(at, "Submit").click().run()
    assert notice(at) == "1 done"
    assert in_force(store, "p1") == ["a1-label", "a1-reach"]
    assert store.frame("flags", where="flag_id = 'aitext:p1'")["status"][0] == "dismissed"

    confirm = go(console(), "post", flag="burst:p3")
    assert [b.key for b in confirm.button if (b.key or "").startswith("post-auto-reverse-")] == [
        "post-auto-reverse-a3-label"
    ]
    assert not [c for c in confirm.checkbox if c.label.startswith("Also reverse")], "a confirmation offers nothing"


def test_post_view_reverses_one_action_with_a_reason(console: Callable[..., AppTest], store: Store) -> None:
    at = go(console(), "post", post="p0")
    at.button(key="post-auto-reverse-a0-reach").click().run()
    assert "say why" in notice(at), "a reason is required"
    assert in_force(store, "p0") == ["a0-label", "a0-reach"]
    at.text_area(key="post-auto-reason-0").input("Reach was cut on a quote of a chatbot.").run()
    at.button(key="post-auto-reverse-a0-reach").click().run()
    assert notice(at) == "1 done"
    assert in_force(store, "p0") == ["a0-label"]
    [row] = store.frame("policy_actions", where="action_id = 'a0-reach'").to_dicts()
    assert (row["reversed_by"], row["reversal_reason"]) == (ALICE.name, "Reach was cut on a quote of a chatbot.")
    assert at.text_area(key="post-auto-reason-1").value == "", "the next reversal starts with an empty reason"
    assert [b.key for b in at.button if (b.key or "").startswith("post-auto-reverse-")] == [
        "post-auto-reverse-a0-label"
    ]

    viewer = go(console("vic@example.org", "viewer"), "post", post="p0")
    assert viewer.button(key="post-auto-reverse-a0-label").disabled


def test_queue_page_shows_margin_and_actions_in_force_and_searches(
    console: Callable[..., AppTest], store: Store
) -> None:
    hidden = "acct\u202egnp.exe"
    store.write_batch(
        posts=[{"post_id": "p9", "account_id": hidden, "created_at": T0, "text": "plain words", "lang": "en"}],
        results=[], flags=[{**_flag("p0", "aitext", 0.9, 0.5, 1), "flag_id": "aitext:p9", "post_id": "p9",
                            "account_id": hidden}], dead_letters=[],
    )  # fmt: skip
    at = console()
    assert at.multiselect(key="q-status").value == ["open", "claimed", "escalated"]
    table = at.dataframe[0].value
    assert {"score", "probability", "threshold", "margin", "in force"} <= set(table.columns)
    assert "aitext:p4" in set(store.frame("flags", where="status = 'escalated'")["flag_id"])
    assert "p4" in set(table["post_id"]), "escalated cases are in the default view"
    assert "acct⟨U+202E⟩gnp.exe" in set(table["account_id"]), "hidden characters are spelt out"
    in_force_by_post = dict(zip(table["post_id"], table["in force"], strict=True))
    assert in_force_by_post["p0"] == 2 and in_force_by_post["p3"] == 1 and in_force_by_post["p2"] == 0

    at.selectbox(key="q-sort").select("margin").run()
    assert at.dataframe[0].value["post_id"].tolist()[:2] == ["p3", "p0"]
    at.text_input(key="q-search").input("language MODEL").run()
    assert at.caption[0].value.startswith("2 flags match")
    assert set(at.dataframe[0].value["post_id"]) == {"p0"}
    at.text_input(key="q-search").input("acct-b").run()
    assert set(at.dataframe[0].value["post_id"]) == {"p1", "p4"}
