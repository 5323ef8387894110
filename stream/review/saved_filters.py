"""Saved filters of the flag queue: a reviewer's named sets of filters, and the team's shared ones.

What is saved is the queue page's choices (:class:`QueueChoices`: search, statuses, detectors,
languages, account prefix, minimum score, age window, whom it is assigned to, sort), not a
:class:`~stream.review.queues.FlagFilter`: "assigned to me" and "past the SLA" mean the reviewer who
applies the filter and the SLA configured then. :meth:`QueueChoices.flag_filter` turns choices into
the queue's filter, so the page and a saved filter read the same way.

Anyone signed in may save filters for themselves (they change no case); only a lead shares one
with the team. Saving under a name you already use replaces that filter. You delete your own
filters; a lead also deletes shared ones. Saved filters are a preference, not a review action:
nothing here writes the audit log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from stream.review.queues import FLAG_SORTS, FlagFilter
from stream.review.vocabulary import UNDECIDED
from stream.store.database import Store
from stream.store.reading import json_object, read_rows
from stream.store.reviewers import InvalidDecision, Outcome, PermissionDenied, Reviewer
from stream.store.tables import FLAG_STATUSES, TABLES, utcnow

filters_t = TABLES["saved_filters"]

#: The queue's age windows by code: (label, minimum age, maximum age) in seconds; ``"sla"``: the SLA.
AGE_WINDOWS: dict[str, tuple[str, float | str | None, float | None]] = {
    "any": ("any age", None, None),
    "overdue": ("overdue (past the SLA)", "sla", None),
    "last_hour": ("flagged in the last hour", None, 3_600.0),
    "last_day": ("flagged in the last 24 hours", None, 86_400.0),
    "older_than_day": ("older than 24 hours", 86_400.0, None),
}
#: Whom the queue's cases are assigned to: anyone, nobody, the reviewer looking.
ASSIGNED: tuple[str, ...] = ("anyone", "unassigned", "me")
#: Longest filter name.
MAX_NAME_CHARS = 80


@dataclass(frozen=True)
class QueueChoices:
    """What the flag queue's filter widgets hold; the defaults are the queue's default view."""

    search: str = ""
    statuses: tuple[str, ...] = UNDECIDED
    detectors: tuple[str, ...] = ()
    langs: tuple[str, ...] = ()
    account: str = ""
    min_score: float | None = None
    age: str = "any"
    assigned: str = "anyone"
    sort: str = "score"
    #: What :meth:`from_saved` could not take over (a sort or an age window no longer offered).
    dropped: tuple[str, ...] = field(default=(), compare=False)

    def flag_filter(self, *, reviewer: str, sla_s: float) -> FlagFilter:
        """The queue's filter for ``reviewer`` (who "me" is) under an SLA of ``sla_s`` seconds."""
        _, min_age, max_age = AGE_WINDOWS[self.age]
        return FlagFilter(
            statuses=self.statuses,
            detectors=self.detectors,
            langs=self.langs,
            account=self.account,
            assignee={"anyone": None, "unassigned": "", "me": reviewer}[self.assigned],
            min_score=self.min_score,
            min_age_s=sla_s if min_age == "sla" else min_age,
            max_age_s=max_age,
            search=self.search,
            sort=self.sort,
        )

    def as_json(self) -> dict[str, Any]:
        """What is stored: every choice, lists for tuples."""
        saved = asdict(self)
        saved.pop("dropped")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in saved.items()}

    def check(self) -> QueueChoices:
        """These choices if the queue can show them; InvalidDecision naming the first that it cannot."""
        if not set(self.statuses) <= set(FLAG_STATUSES):
            raise InvalidDecision(f"unknown status in {list(self.statuses)}; statuses are {', '.join(FLAG_STATUSES)}")
        if self.age not in AGE_WINDOWS:
            raise InvalidDecision(f"unknown age window {self.age!r}; windows are {', '.join(AGE_WINDOWS)}")
        if self.assigned not in ASSIGNED:
            raise InvalidDecision(f"unknown assignment {self.assigned!r}; use {', '.join(ASSIGNED)}")
        if self.sort not in FLAG_SORTS:
            raise InvalidDecision(f"unknown sort {self.sort!r}; sorts are {', '.join(FLAG_SORTS)}")
        return self

    @classmethod
    def from_saved(cls, saved: Mapping[str, Any]) -> QueueChoices:
        """Choices read back from the store: what the queue still offers is taken, the rest is left at the
        default and named in ``dropped`` (a filter saved before a sort was removed still applies)."""
        default = cls()
        dropped: list[str] = []

        def strings(name: str, allowed: Sequence[str] | None = None) -> tuple[str, ...]:
            value = saved.get(name, getattr(default, name))
            if not isinstance(value, list | tuple):
                return getattr(default, name)
            kept = tuple(str(v) for v in value if allowed is None or v in allowed)
            dropped.extend(f"{name}: {v}" for v in value if allowed is not None and v not in allowed)
            return kept

        def one_of(name: str, allowed: Sequence[str]) -> str:
            value = saved.get(name, getattr(default, name))
            if value in allowed:
                return str(value)
            dropped.append(f"{name}: {value}")
            return getattr(default, name)

        min_score = saved.get("min_score")
        return cls(
            search=str(saved.get("search") or ""),
            statuses=strings("statuses", FLAG_STATUSES),
            detectors=strings("detectors"),
            langs=strings("langs"),
            account=str(saved.get("account") or ""),
            min_score=float(min_score) if isinstance(min_score, int | float) else None,
            age=one_of("age", tuple(AGE_WINDOWS)),
            assigned=one_of("assigned", ASSIGNED),
            sort=one_of("sort", tuple(FLAG_SORTS)),
            dropped=tuple(dropped),
        )


@dataclass(frozen=True)
class SavedFilter:
    """A saved filter as the queue page offers it."""

    filter_id: int
    name: str
    owner: str
    shared: bool
    choices: QueueChoices
    updated_at: datetime

    def label(self, reviewer: str) -> str:
        """How the picker names it: yours, or the team's with who shared it."""
        if self.owner == reviewer:
            return f"{self.name} (yours{', shared with the team' if self.shared else ''})"
        return f"{self.name} (team, by {self.owner})"


def saved_filters(store: Store, reviewer: str) -> list[SavedFilter]:
    """``reviewer``'s own filters, then those shared with the team by others, each by name."""
    query = (
        sa.select(filters_t)
        .where(sa.or_(filters_t.c.owner == reviewer, filters_t.c.shared))
        .order_by((filters_t.c.owner != reviewer), filters_t.c.name, filters_t.c.filter_id)
    )
    with store.engine.connect() as conn:
        rows = read_rows(conn, query)
    return [
        SavedFilter(
            filter_id=int(row["filter_id"]), name=row["name"], owner=row["owner"], shared=bool(row["shared"]),
            choices=QueueChoices.from_saved(json_object(row["filters"])), updated_at=row["updated_at"],
        )
        for row in rows
    ]  # fmt: skip


def save_filter(
    store: Store,
    reviewer: Reviewer,
    name: str,
    choices: QueueChoices,
    *,
    shared: bool = False,
    now: datetime | None = None,
) -> Outcome:
    """Save ``choices`` as ``reviewer``'s filter ``name`` (replacing theirs of that name); ``shared``: for the
    whole team, leads only. ``Outcome.applied`` holds the filter's id."""
    if shared and not reviewer.is_lead:
        raise PermissionDenied(
            f"{reviewer.name} is a {reviewer.role}: only a lead shares a filter with the team; save it for yourself"
        )
    name = (name or "").strip()
    if not name:
        raise InvalidDecision("a saved filter needs a name (what you will pick it by)")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidDecision(f"the name has {len(name)} characters; keep it under {MAX_NAME_CHARS}")
    values = {"filters": choices.check().as_json(), "shared": shared, "updated_at": now or utcnow()}
    with store.transaction() as conn:
        mine = filters_t.c.owner == reviewer.name
        existing = conn.execute(sa.select(filters_t.c.filter_id).where(mine, filters_t.c.name == name)).first()
        if existing is not None:
            conn.execute(sa.update(filters_t).where(filters_t.c.filter_id == existing.filter_id).values(**values))
            return Outcome(applied=[str(existing.filter_id)])
        result = conn.execute(
            sa.insert(filters_t).values(owner=reviewer.name, name=name, created_at=values["updated_at"], **values)
        )
        return Outcome(applied=[str(int(result.inserted_primary_key[0]))])


def delete_filter(store: Store, reviewer: Reviewer, filter_id: int) -> Outcome:
    """Delete a saved filter: your own, or (leads) one shared with the team."""
    with store.transaction() as conn:
        row = conn.execute(
            sa.select(filters_t.c.owner, filters_t.c.shared, filters_t.c.name).where(filters_t.c.filter_id == filter_id)
        ).first()
        if row is None:
            return Outcome(unchanged=[str(filter_id)])
        if row.owner != reviewer.name and not (row.shared and reviewer.is_lead):
            raise PermissionDenied(
                f"the filter {row.name!r} is {row.owner}'s: only they, or a lead for a shared filter, can delete it"
            )
        conn.execute(sa.delete(filters_t).where(filters_t.c.filter_id == filter_id))
    return Outcome(applied=[str(filter_id)])
