"""Flags and campaigns behind one interface: read a case, change it only if unchanged, record it.

The building blocks that :mod:`~stream.review.claims`, :mod:`~stream.review.decisions` and
:mod:`~stream.review.reversal` share, so the three apply one concurrency rule and write one audit
format. Not for pages: they call the action modules.

**Concurrency is optimistic.** Every change reads the case, checks the rules against what it read,
and updates with ``WHERE status = <read> AND assignee IS NOT DISTINCT FROM <read>``
(:func:`compare_and_set`). If someone else changed the case in between, the update matches no
row and the caller reports what happened (:func:`moved_on`) instead of overwriting it. On
PostgreSQL (READ COMMITTED) the second UPDATE waits for the first's row lock and then re-checks
its WHERE against the new row; on SQLite write transactions are serialised by ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from stream.store import reviewers
from stream.store.database import Store
from stream.store.reading import chunks
from stream.store.reviewers import Reviewer
from stream.store.tables import TABLES

flags_t = TABLES["flags"]
campaigns_t = TABLES["campaigns"]
decisions_t = TABLES["review_decisions"]


@dataclass(frozen=True)
class Kind:
    """A type of case: its audit ``subject_type``, its table and that table's key."""

    subject_type: str
    table: sa.Table
    key: sa.Column[Any]


KINDS: dict[str, Kind] = {
    "flag": Kind("flag", flags_t, flags_t.c.flag_id),
    "campaign": Kind("campaign", campaigns_t, campaigns_t.c.campaign_id),
}


def kind_of(subject: str) -> Kind:
    """The case type named ``subject``; a ValueError naming the two there are otherwise."""
    try:
        return KINDS[subject]
    except KeyError:
        raise ValueError(f"unknown case type {subject!r}; use 'flag' or 'campaign'") from None


@dataclass(frozen=True)
class Case:
    """A case as read: the state a compare-and-set checks against."""

    case_id: str
    status: str
    assignee: str | None

    def state(self) -> dict[str, Any]:
        """The audit row's ``before``."""
        return {"status": self.status, "assignee": self.assignee}


def unique(ids: Iterable[Any]) -> list[str]:
    """Ids as strings, duplicates dropped, first order kept (a bulk selection may repeat a case)."""
    return list(dict.fromkeys(str(i) for i in ids))


def read_cases(conn: Connection, kind: Kind, ids: Sequence[str]) -> dict[str, Case]:
    """The cases that exist among ``ids``, by id."""
    cases: dict[str, Case] = {}
    for chunk in chunks(ids):
        query = sa.select(kind.key, kind.table.c.status, kind.table.c.assignee).where(kind.key.in_(chunk))
        for case_id, status, assignee in conn.execute(query):
            cases[case_id] = Case(case_id, status, assignee)
    return cases


def compare_and_set(conn: Connection, kind: Kind, case: Case, values: Mapping[str, Any]) -> bool:
    """Change ``case`` only if it is still as read; False means someone changed it meanwhile."""
    result = conn.execute(
        sa.update(kind.table)
        .where(
            kind.key == case.case_id,
            kind.table.c.status == case.status,
            kind.table.c.assignee.is_not_distinct_from(case.assignee),
        )
        .values(**values)
    )
    return result.rowcount == 1


def moved_on(conn: Connection, kind: Kind, case_id: str) -> str:
    """Why a compare-and-set missed: what the case looks like now, in words for the reviewer."""
    now = read_cases(conn, kind, [case_id]).get(case_id)
    if now is None:
        return "it no longer exists"
    described = f"{now.status}, held by {now.assignee}" if now.assignee else now.status
    return f"someone changed it meanwhile (now {described}); reload and try again"


def claim_values(kind: Kind, assignee: str | None, now: datetime) -> dict[str, Any]:
    """The columns that say who holds a case (and since when, where the table keeps it)."""
    values: dict[str, Any] = {"assignee": assignee}
    if "claimed_at" in kind.table.c:
        values["claimed_at"] = now if assignee else None
    return values


def audit(
    store: Store,
    conn: Connection,
    reviewer: Reviewer,
    kind: Kind,
    action: str,
    case_id: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
) -> None:
    """The audit row of one change to a case (``flag.claim``, ``campaign.decide``, ...), in its transaction."""
    reviewers.audit(
        store,
        conn,
        reviewer,
        action=f"{kind.subject_type}.{action}",
        subject_type=kind.subject_type,
        subject_id=case_id,
        before=before,
        after=after,
    )


def insert_decision(conn: Connection, values: Mapping[str, Any]) -> int:
    """Append a ``review_decisions`` row (a decision or a reversal); returns its id."""
    result = conn.execute(sa.insert(decisions_t).values(**values))
    return int(result.inserted_primary_key[0])
