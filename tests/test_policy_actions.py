"""Reviewing automated actions (stream/policy/actions.py) on SQLite and PostgreSQL: the list and its
filters, reversal (who may, what may be reversed, audited, once), the reversal outbox, alerts and
acknowledgement, and the migration that added the outbox column to an existing version-2 store."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from stream.policy.actions import (
    REVERSAL_SCHEMA,
    ActionFilter,
    PendingReversal,
    acknowledge_alerts,
    action_counts,
    action_detail,
    action_list,
    alert_list,
    mark_reversals_emitted,
    open_breakers,
    pending_reversals,
    reverse_actions,
)
from stream.store import migrations
from stream.store.database import Store
from stream.store.reviewers import InvalidDecision, PermissionDenied, Reviewer
from stream.store.tables import TABLES

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
LEAD = Reviewer("lead@example.org", "lead")
ANA = Reviewer("ana@example.org", "reviewer")
VIEWER = Reviewer("vic@example.org", "viewer")
REASON = "threshold too low for replies; incident 17"


def _action(i: int, *, mode: str = "active", status: str = "emitted", rule: str = "label-ai") -> dict:
    return {
        "action_id": f"act-{i:03d}", "mode": mode, "status": status, "policy_id": "pol",
        "policy_version": "1" if mode == "active" else "2", "rule_id": rule,
        "action": "label" if rule == "label-ai" else "queue_review", "post_id": f"p{i}",
        "account_id": f"acct{i % 3}", "params": {"label": "likely machine-written"},
        "scores": {"aitext": {"probability": 0.9}}, "evidence": {"conditions": ["aitext >= default"]},
        "decided_at": T0 + timedelta(seconds=i), "worker_id": "w1",
    }  # fmt: skip


def _alert(rule: str, kind: str, worker: str, minutes: int) -> dict:
    return {"at": T0 + timedelta(minutes=minutes), "kind": kind, "policy_id": "pol", "policy_version": "1",
            "rule_id": rule, "share": 0.6, "matched": 600, "posts": 1000, "settings": {"max_share": 0.2},
            "worker_id": worker}


@pytest.fixture
def store(review_db_url: str):
    with Store.open(review_db_url) as opened:
        posts = [{"post_id": f"p{i}", "account_id": f"acct{i % 3}", "created_at": T0, "text": f"post number {i}"}
                 for i in range(12)]
        actions = [_action(i) for i in range(8)]
        actions += [_action(8, status="suppressed"), _action(9, mode="shadow", status="shadow")]
        actions += [_action(i, rule="review-replies") for i in (10, 11)]
        alerts = [_alert("label-ai", "breaker_tripped", "w1", 1), _alert("label-ai", "breaker_recovered", "w1", 5),
                  _alert("review-replies", "breaker_tripped", "w2", 6)]
        opened.write_batch(posts=posts, results=[], flags=[], dead_letters=[], actions=actions, alerts=alerts)
        yield opened


def _audit(store: Store) -> list[dict]:
    return store.frame("audit_log").sort("audit_id").to_dicts()


def test_list_filters_and_paginates_newest_first(store: Store) -> None:
    page = action_list(store, limit=4)
    assert page.total == 11, "active records only by default (8 emitted, 1 suppressed, 2 review rules)"
    assert page.rows["action_id"].to_list() == ["act-011", "act-010", "act-008", "act-007"]
    assert page.rows["preview"][0] == "post number 11"
    second = action_list(store, limit=4, offset=4)
    assert not set(second.rows["action_id"]) & set(page.rows["action_id"])
    assert action_list(store, ActionFilter(modes=("shadow",))).rows["action_id"].to_list() == ["act-009"]
    assert action_list(store, ActionFilter(statuses=("suppressed",))).total == 1
    assert action_list(store, ActionFilter(rule_id="review-replies")).total == 2
    assert action_list(store, ActionFilter(account="acct0")).total == 3, "p0 p3 p6 (p9 is a shadow record)"
    assert action_list(store, ActionFilter(policy="pol@2", modes=())).total == 1
    with pytest.raises(ValueError, match="unknown status"):
        action_list(store, ActionFilter(statuses=("deleted",)))


def test_reversal_is_audited_refused_for_what_never_reached_the_platform_and_done_once(store: Store) -> None:
    outcome = reverse_actions(store, ANA, ["act-001", "act-008", "act-009", "act-404", "act-001"], REASON)
    assert outcome.applied == ["act-001"]
    assert "circuit breaker" in outcome.conflicts["act-008"]
    assert "shadow" in outcome.conflicts["act-009"]
    assert outcome.conflicts["act-404"] == "no such action"

    detail = action_detail(store, "act-001")
    assert detail is not None
    assert detail["reversed_by"] == ANA.name and detail["reversal_reason"] == REASON
    assert detail["text"] == "post number 1" and detail["evidence"] == {"conditions": ["aitext >= default"]}
    audit = _audit(store)
    assert len(audit) == 1
    assert audit[0]["action"] == "policy_action.reverse" and audit[0]["subject_id"] == "act-001"
    assert audit[0]["actor"] == ANA.name and json.loads(audit[0]["before"])["status"] == "emitted"

    again = reverse_actions(store, LEAD, ["act-001"], REASON)
    assert again.applied == [] and "already reversed by ana@example.org" in again.conflicts["act-001"]
    assert len(_audit(store)) == 1, "a refused reversal writes nothing"
    assert action_list(store, ActionFilter(reversed=True)).rows["action_id"].to_list() == ["act-001"]
    assert action_list(store, ActionFilter(reversed=False)).total == 10


def test_viewers_cannot_reverse_and_a_reason_is_required(store: Store) -> None:
    with pytest.raises(PermissionDenied, match="viewer"):
        reverse_actions(store, VIEWER, ["act-001"], REASON)
    with pytest.raises(InvalidDecision, match="say why"):
        reverse_actions(store, ANA, ["act-001"], "  oops ")
    assert action_detail(store, "act-001")["reversed_at"] is None
    assert _audit(store) == []


def test_two_reviewers_reversing_at_once_one_wins(store: Store) -> None:
    results: dict[str, object] = {}
    barrier = threading.Barrier(2)

    def reverse(reviewer: Reviewer) -> None:
        barrier.wait()
        results[reviewer.name] = reverse_actions(store, reviewer, ["act-002"], REASON)

    threads = [threading.Thread(target=reverse, args=(r,)) for r in (ANA, LEAD)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    applied = [name for name, outcome in results.items() if outcome.applied]  # type: ignore[attr-defined]
    assert len(applied) == 1
    assert [a["subject_id"] for a in _audit(store)] == ["act-002"]
    assert action_detail(store, "act-002")["reversed_by"] == applied[0]


def test_reversal_outbox_marks_each_once(store: Store) -> None:
    assert pending_reversals(store) == []
    reverse_actions(store, LEAD, ["act-003", "act-004"], REASON)
    pending = pending_reversals(store)
    assert [p.action_id for p in pending] == ["act-003", "act-004"]
    assert isinstance(pending[0], PendingReversal) and pending[0].reason == REASON
    message = pending[0].message()
    assert REVERSAL_SCHEMA.encode() in message and b'"reversal_id":"act-003:reversal"' in message
    assert mark_reversals_emitted(store, ["act-003"]) == 1
    assert mark_reversals_emitted(store, ["act-003"]) == 0, "already marked: a second relay changes nothing"
    assert [p.action_id for p in pending_reversals(store)] == ["act-004"]


def test_counts_per_rule(store: Store) -> None:
    reverse_actions(store, LEAD, ["act-000"], REASON)
    counts = action_counts(store)
    emitted = counts.filter((counts["rule_id"] == "label-ai") & (counts["status"] == "emitted")).row(0, named=True)
    assert emitted["actions"] == 8 and emitted["reversed"] == 1


def test_open_breakers_and_acknowledgement(store: Store) -> None:
    open_now = open_breakers(store)
    assert open_now.select("rule_id", "worker_id").rows() == [("review-replies", "w2")], (
        "label-ai tripped then recovered on w1; review-replies is still open on w2"
    )
    alerts = alert_list(store)
    assert alerts.height == 3 and '"max_share"' in alerts["settings"][0]
    ids = alerts["alert_id"].to_list()
    with pytest.raises(PermissionDenied):
        acknowledge_alerts(store, VIEWER, ids[:1])
    outcome = acknowledge_alerts(store, ANA, ids[:2])
    assert sorted(outcome.applied) == sorted(str(i) for i in ids[:2])
    assert acknowledge_alerts(store, LEAD, ids[:1]).unchanged == [str(ids[0])]
    assert alert_list(store, unacknowledged_only=True)["alert_id"].to_list() == ids[2:]
    assert open_breakers(store).height == 1, "acknowledging does not close a breaker"
    assert [a["action"] for a in _audit(store)] == ["policy_alert.acknowledge"] * 2


def test_a_version_2_store_upgrades_with_its_actions_kept(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v2.db'}"
    with Store.open(url, migrate=False) as old:
        with old.transaction() as conn:
            migrations.upgrade(conn, migrations.MIGRATIONS[:2])
            conn.execute(sa.insert(TABLES["posts"]).values(post_id="p1", account_id="a", ingested_at=T0))
            row = _action(1)
            conn.execute(sa.text(
                "INSERT INTO policy_actions (action_id, mode, status, policy_id, policy_version, rule_id, action, "
                "post_id, account_id, decided_at) VALUES (:action_id, :mode, :status, :policy_id, :policy_version, "
                ":rule_id, :action, :post_id, :account_id, '2026-11-01 12:00:01.000000')"
            ), row)
        assert old.migrate() == list(range(3, migrations.HEAD_VERSION + 1))
        assert reverse_actions(old, LEAD, ["act-001"], REASON).applied == ["act-001"]
        assert [p.action_id for p in pending_reversals(old)] == ["act-001"]
