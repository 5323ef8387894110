"""Campaign upserts: a replay changes nothing, reviewers' fields are never touched, members follow
the campaign, first/last seen only widen; and the records a graph run makes are what the console reads.
Runs on SQLite and, with CHORUS_TEST_PG_URL, on PostgreSQL (the ``review_db_url`` fixture)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

from detectors.coordination.graph import detect_campaigns
from detectors.coordination.incremental import CoActionState, IncrementalConfig, campaigns_from_state
from stream.config import ChorusConfig
from stream.coordination.coordinator import Coordinator, CoordinatorSettings, campaign_flag, campaign_records
from stream.review.edges import campaign_edges
from stream.simulation import generate_stream
from stream.store.campaigns import (
    CampaignRecord,
    campaign_version,
    load_campaigns,
    machine_shares,
    write_campaigns,
)
from stream.store.database import Store
from stream.store.tables import TABLES

T0 = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)


def record(cid: str, members: tuple[str, ...], first_h: int, last_h: int, score: float = 0.5) -> CampaignRecord:
    summary = {"density": 1.0, "detector": "coordination", "version": campaign_version(members)}
    return CampaignRecord(
        campaign_id=cid,
        members=members,
        first_seen=T0 + dt.timedelta(hours=first_h),
        last_seen=T0 + dt.timedelta(hours=last_h),
        score=score,
        summary=summary,
        member_weights=dict.fromkeys(members, 0.9),
        member_evidence={m: {"edges": []} for m in members},
    )


def test_campaign_upserts_are_idempotent_and_leave_reviewers_alone(review_db_url: str) -> None:
    store = Store.open(review_db_url)
    try:
        first = record("cmp-1", ("a", "b", "c"), 2, 3)
        assert write_campaigns(store, [first]).campaigns_changed == 1
        updated_at = store.frame("campaigns")["updated_at"][0]
        replay = write_campaigns(store, [first])
        assert (replay.campaigns_changed, replay.members_changed, replay.members_removed) == (0, 0, 0)
        assert store.frame("campaigns")["updated_at"][0] == updated_at
        with store.transaction() as conn:  # a reviewer claims the campaign
            conn.execute(sa.update(TABLES["campaigns"]).values(status="claimed", assignee="alice"))
        # The campaign evolves: one member leaves, one joins; an older co-action comes to light.
        later = record("cmp-1", ("a", "b", "d"), 1, 2, score=0.7)
        outcome = write_campaigns(store, [later])
        assert (outcome.campaigns_changed, outcome.members_removed) == (1, 1)
        row = store.frame("campaigns").row(0, named=True)
        assert (row["status"], row["assignee"], row["size"], row["score"]) == ("claimed", "alice", 3, 0.7)
        assert (row["first_seen"], row["last_seen"]) == (T0 + dt.timedelta(hours=1), T0 + dt.timedelta(hours=3))
        assert sorted(store.frame("campaign_members")["account_id"]) == ["a", "b", "d"]
        loaded = load_campaigns(store)["cmp-1"]
        assert loaded.members == frozenset({"a", "b", "d"}) and loaded.version == campaign_version(("a", "b", "d"))
        assert loaded.flagged_version is None
        write_campaigns(store, [later.flagged(later.version)])
        assert load_campaigns(store)["cmp-1"].flagged_version == later.version
        assert load_campaigns(store, seen_since=T0 + dt.timedelta(hours=4)) == {}
    finally:
        store.close()


def test_records_of_a_graph_run_carry_evidence_the_console_reads(review_db_url: str) -> None:
    stream = generate_stream(n_organic=200, n_campaigns=2, campaign_size=7, seed=4)
    state = CoActionState(IncrementalConfig(horizon_s=10**9))
    state.add(stream.posts)
    settings = CoordinatorSettings()
    result = campaigns_from_state(state, settings.campaign_config())
    records = campaign_records(result, settings)
    assert len(records) == len(result.members) >= 2
    assert records == campaign_records(result, settings)  # deterministic: a replay writes the same
    store = Store.open(review_db_url)
    try:
        write_campaigns(store, records)
        assert write_campaigns(store, campaign_records(result, settings)).campaigns_changed == 0
        for r in records:
            members = [{"account_id": m, "evidence": r.member_evidence[m]} for m in r.members]
            edges = campaign_edges(r.summary, members)
            assert edges and all(e.evidence for e in edges)
            assert {e.source for e in edges} | {e.target for e in edges} <= set(r.members)
            assert r.first_seen is not None and r.last_seen is not None and r.first_seen <= r.last_seen
            assert b'"flag_id":"coordination:' + r.campaign_id.encode() in campaign_flag(r, T0)
    finally:
        store.close()


def test_machine_shares_average_the_detectors_probabilities_over_member_posts(review_db_url: str) -> None:
    store = Store.open(review_db_url)
    try:
        posts = [
            {"post_id": f"p{i}", "account_id": account, "created_at": T0 + dt.timedelta(hours=i), "text": "x"}
            for i, account in enumerate(["a", "a", "b", "c", "z"])
        ]
        results = [
            {"post_id": f"p{i}", "detector": "aitext", "score": p or 0.0, "probability": p, "flagged": False}
            for i, p in enumerate([0.9, 0.7, 0.5, None, 0.1])
        ]
        store.write_batch(posts=posts, results=results, flags=[], dead_letters=[])
        shares = machine_shares(store, {"k1": ["a", "b", "c"], "k2": ["z"], "k3": ["nobody"]}, detector="aitext")
        assert shares["k1"] == pytest.approx((0.9 + 0.7 + 0.5) / 3)
        assert shares["k2"] == pytest.approx(0.1) and shares["k3"] is None
        since = machine_shares(store, {"k1": ["a", "b"]}, detector="aitext", since=T0 + dt.timedelta(hours=1))
        assert since["k1"] == pytest.approx((0.7 + 0.5) / 2)
    finally:
        store.close()


def test_the_coordinator_fills_machine_shares_from_the_workers_results(tmp_path: Path) -> None:
    stream = generate_stream(n_organic=150, n_campaigns=2, campaign_size=6, seed=4)
    posts = stream.posts
    store = Store.open(f"sqlite:///{tmp_path / 'chorus.db'}")
    try:
        store.write_batch(
            posts=posts.drop("machine_probability").to_dicts(),
            results=[
                {"post_id": pid, "detector": "aitext", "score": p, "probability": p, "flagged": False}
                for pid, p in posts.select("post_id", "machine_probability").iter_rows()
            ],
            flags=[],
            dead_letters=[],
        )
        settings = CoordinatorSettings(horizon_s=10**9, machine_detector="aitext")
        coordinator = Coordinator(ChorusConfig(), store, settings)
        coordinator.state.add(posts)
        result = coordinator._with_machine_shares(campaigns_from_state(coordinator.state, settings.campaign_config()))
        expected = detect_campaigns(posts, settings.campaign_config()).campaigns
        got = dict(result.campaigns.select("campaign_id", "machine_share").iter_rows())
        want = dict(expected.select("campaign_id", "machine_share").iter_rows())
        assert got == pytest.approx(want) and len(got) == 2
    finally:
        store.close()
