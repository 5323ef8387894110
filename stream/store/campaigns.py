"""Campaigns in the store: what the coordinator writes, idempotently, and reads back at start.

The coordinator delivers at least once (it commits its offsets after the store and the flags), so
a restart can write the same campaigns again; every write here is an upsert that changes a row only
when its content differs, in ONE transaction per call, so a replay changes nothing:

* ``campaigns`` by ``campaign_id``: ``size``, ``score`` and ``summary`` are the coordinator's and
  are replaced when they differ; ``first_seen`` only ever moves earlier and ``last_seen`` later
  (both are event times of the campaign's co-actions, so a replay computes the same values);
  ``status`` and ``assignee`` belong to the reviewers and are never touched; ``updated_at`` moves
  only when something changed.
* ``campaign_members`` by ``(campaign_id, account_id)``: the campaign's current members with their
  weight and evidence; members that left the campaign are removed (the campaign's current make-up
  is what a reviewer decides on; its history is in the flags topic, one flag per version).

What has no column of its own lives in the JSON columns (the tables are
:mod:`stream.store.tables`'s, unchanged): ``campaigns.summary`` holds the scores (numeric keys, which
the console shows), ``edges`` (the strongest member links with their matched post pairs, the format
:func:`stream.review.edges.campaign_edges` reads), ``version`` (a digest of the sorted members: a new
version is a new flag), ``flagged_version`` (the last version produced to the flags topic, so a
restart does not announce it again) and ``detector``/``model_version``;
``campaign_members.evidence`` holds the member's own ``edges``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection

from stream.store.database import Store
from stream.store.tables import TABLES, utcnow

campaigns_t = TABLES["campaigns"]
members_t = TABLES["campaign_members"]

#: ``summary["detector"]`` of the campaigns the coordinator writes.
COORDINATION_DETECTOR = "coordination"


def campaign_version(members: Iterable[str]) -> str:
    """A digest of the sorted members: the same make-up is the same version, on any replay."""
    return hashlib.sha1("\n".join(sorted(members)).encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True)
class CampaignRecord:
    """One campaign as the coordinator found it at one graph run."""

    campaign_id: str
    members: tuple[str, ...]
    first_seen: dt.datetime | None
    last_seen: dt.datetime | None
    score: float | None
    summary: dict[str, Any]
    member_weights: Mapping[str, float] = field(default_factory=dict)
    member_evidence: Mapping[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return campaign_version(self.members)

    @property
    def flag_id(self) -> str:
        """Stable per campaign version: ``coordination:<campaign id>:<version>``."""
        return f"{COORDINATION_DETECTOR}:{self.campaign_id}:{self.version}"

    def flagged(self, version: str | None) -> CampaignRecord:
        """The same record with ``summary["flagged_version"]`` set."""
        return replace(self, summary={**self.summary, "flagged_version": version})


@dataclass(frozen=True)
class StoredCampaign:
    """What a restarted coordinator needs to know of a campaign it wrote before."""

    campaign_id: str
    members: frozenset[str]
    version: str | None
    flagged_version: str | None
    last_seen: dt.datetime | None


@dataclass
class WriteOutcome:
    """Rows a call changed (a replay changes none)."""

    campaigns_changed: int = 0
    members_changed: int = 0
    members_removed: int = 0


def _insert(store: Store) -> Any:
    return pg_dialect.insert if store.dialect == "postgresql" else sqlite_dialect.insert


def write_campaigns(store: Store, records: Sequence[CampaignRecord], *, now: dt.datetime | None = None) -> WriteOutcome:
    """Upsert campaigns and their members in one transaction (see the module docstring)."""
    outcome = WriteOutcome()
    if not records:
        return outcome
    now = now or utcnow()
    insert = _insert(store)
    ordered = sorted({r.campaign_id: r for r in records}.values(), key=lambda r: r.campaign_id)
    rows = [
        {
            "campaign_id": r.campaign_id,
            "first_seen": r.first_seen,
            "last_seen": r.last_seen,
            "size": len(r.members),
            "score": r.score,
            "summary": r.summary,
            "updated_at": now,
        }
        for r in ordered
    ]
    stmt = insert(campaigns_t)
    old, new = campaigns_t.c, stmt.excluded
    earlier = sa.case(
        (sa.or_(old.first_seen.is_(None), new.first_seen < old.first_seen), new.first_seen), else_=old.first_seen
    )
    later = sa.case(
        (sa.or_(old.last_seen.is_(None), new.last_seen > old.last_seen), new.last_seen), else_=old.last_seen
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["campaign_id"],
        set_={"first_seen": earlier, "last_seen": later, "size": new.size, "score": new.score,
              "summary": new.summary, "updated_at": new.updated_at},
        where=sa.or_(
            old.size.is_distinct_from(new.size),
            old.score.is_distinct_from(new.score),
            old.summary.is_distinct_from(new.summary),
            new.first_seen < old.first_seen,
            new.last_seen > old.last_seen,
            sa.and_(old.first_seen.is_(None), new.first_seen.is_not(None)),
            sa.and_(old.last_seen.is_(None), new.last_seen.is_not(None)),
        ),
    )  # fmt: skip
    member_rows = [
        {
            "campaign_id": r.campaign_id,
            "account_id": account,
            "weight": r.member_weights.get(account),
            "evidence": r.member_evidence.get(account),
        }
        for r in ordered
        for account in sorted(r.members)
    ]
    mstmt = insert(members_t)
    mstmt = mstmt.on_conflict_do_update(
        index_elements=["campaign_id", "account_id"],
        set_={"weight": mstmt.excluded.weight, "evidence": mstmt.excluded.evidence},
        where=sa.or_(
            members_t.c.weight.is_distinct_from(mstmt.excluded.weight),
            members_t.c.evidence.is_distinct_from(mstmt.excluded.evidence),
        ),
    )
    with store.transaction() as conn:
        # RETURNING counts the rows really written (an upsert whose WHERE fails returns none); an
        # executemany's rowcount is not reliable across drivers.
        outcome.campaigns_changed = len(conn.execute(stmt.returning(campaigns_t.c.campaign_id), rows).all())
        changed_members = mstmt.returning(members_t.c.account_id)
        outcome.members_changed = len(conn.execute(changed_members, member_rows).all())
        for r in ordered:
            gone = sa.delete(members_t).where(
                members_t.c.campaign_id == r.campaign_id, members_t.c.account_id.not_in(sorted(r.members))
            )
            outcome.members_removed += _rowcount(conn.execute(gone))
    return outcome


def _rowcount(result: Any) -> int:
    count = getattr(result, "rowcount", -1)
    return max(int(count), 0) if count is not None else 0


def load_campaigns(store: Store, *, seen_since: dt.datetime | None = None) -> dict[str, StoredCampaign]:
    """The coordinator's campaigns (``summary.detector == "coordination"``), with their members.

    ``seen_since`` keeps only campaigns active since then: the ones whose ids a restarted
    coordinator should carry on (older ones are history, and matching against them costs time).
    """
    query = sa.select(campaigns_t.c.campaign_id, campaigns_t.c.summary, campaigns_t.c.last_seen)
    if seen_since is not None:
        query = query.where(campaigns_t.c.last_seen >= seen_since)
    with store.engine.connect() as conn:
        heads = [row for row in conn.execute(query) if _summary(row.summary).get("detector") == COORDINATION_DETECTOR]
        members = _members_of(conn, [row.campaign_id for row in heads])
    return {
        row.campaign_id: StoredCampaign(
            campaign_id=row.campaign_id,
            members=frozenset(members.get(row.campaign_id, ())),
            version=_summary(row.summary).get("version"),
            flagged_version=_summary(row.summary).get("flagged_version"),
            last_seen=row.last_seen,
        )
        for row in heads
    }


def _members_of(conn: Connection, campaign_ids: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for start in range(0, len(campaign_ids), 500):  # bounded IN lists
        chunk = campaign_ids[start : start + 500]
        query = sa.select(members_t.c.campaign_id, members_t.c.account_id).where(members_t.c.campaign_id.in_(chunk))
        for campaign_id, account_id in conn.execute(query):
            out.setdefault(campaign_id, []).append(account_id)
    return out


def _summary(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        import json

        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return dict(value) if isinstance(value, Mapping) else {}


def machine_shares(
    store: Store,
    members: Mapping[str, Iterable[str]],
    *,
    detector: str,
    since: dt.datetime | None = None,
) -> dict[str, float | None]:
    """Per campaign, the mean machine-written probability of its members' posts since ``since``.

    The stream's posts carry no probability: the workers' AI-text detector writes one per post to
    ``detector_results``, so the coordinator reads it back for the campaign score the batch stage
    computes from a ``machine_probability`` column (posts without a result, or with a null
    probability, are left out; a campaign with none gets None).
    """
    posts_t, results_t = TABLES["posts"], TABLES["detector_results"]
    accounts = sorted({a for group in members.values() for a in group})
    sums: dict[str, tuple[float, int]] = {}
    with store.engine.connect() as conn:
        for start in range(0, len(accounts), 500):  # bounded IN lists
            probability = results_t.c.probability
            query = (
                sa.select(posts_t.c.account_id, sa.func.sum(probability), sa.func.count(probability))
                .select_from(results_t.join(posts_t, posts_t.c.post_id == results_t.c.post_id))
                .where(results_t.c.detector == detector, posts_t.c.account_id.in_(accounts[start : start + 500]))
                .group_by(posts_t.c.account_id)
            )
            if since is not None:
                query = query.where(posts_t.c.created_at >= since)
            for account_id, total, count in conn.execute(query):
                sums[account_id] = (float(total or 0.0), int(count or 0))
    shares: dict[str, float | None] = {}
    for campaign_id, group in members.items():
        total = sum(sums.get(a, (0.0, 0))[0] for a in group)
        count = sum(sums.get(a, (0.0, 0))[1] for a in group)
        shares[campaign_id] = total / count if count else None
    return shares
