"""Team notes: what reviewers tell each other about a case, never what the user is told.

A note is about a post, one detector's flag on it, an account or a campaign
(:data:`~stream.store.tables.NOTE_SUBJECTS`). Notes are internal: they are not part of any statement
of reasons (a decision's statement is its own column, written by :mod:`~stream.review.decisions`)
and no export reads them (:mod:`~stream.review.labels` selects its columns by name). Reviewers and
leads add notes; viewers read them. A note is appended, never edited or deleted, and adding one
writes an audit row in the same transaction (``flag.note``, ``account.note``, ...; its ``after``
names the note).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from stream.store.database import Store
from stream.store.reading import read_frame
from stream.store.reviewers import InvalidDecision, Outcome, Reviewer, audit, require_actor
from stream.store.tables import NOTE_SUBJECTS, TABLES, utcnow

notes_t = TABLES["case_notes"]
posts_t = TABLES["posts"]
flags_t = TABLES["flags"]
campaigns_t = TABLES["campaigns"]
members_t = TABLES["campaign_members"]

#: Longest note kept: a few paragraphs for the next reviewer, not a report.
MAX_NOTE_CHARS = 4_000
#: Notes one list shows at most, newest first.
LIST_LIMIT = 500


def _exists(conn: Connection, subject_type: str, subject_id: str) -> bool:
    """Whether the store knows the case: the row for a post, flag or campaign; for an account, any
    post, flag or campaign membership of it."""
    if subject_type == "account":
        queries = [
            sa.select(posts_t.c.post_id).where(posts_t.c.account_id == subject_id),
            sa.select(flags_t.c.flag_id).where(flags_t.c.account_id == subject_id),
            sa.select(members_t.c.campaign_id).where(members_t.c.account_id == subject_id),
        ]
    else:
        key = {"post": posts_t.c.post_id, "flag": flags_t.c.flag_id, "campaign": campaigns_t.c.campaign_id}
        column = key[subject_type]
        queries = [sa.select(column).where(column == subject_id)]
    return any(conn.execute(query.limit(1)).first() is not None for query in queries)


def add_note(
    store: Store,
    reviewer: Reviewer,
    subject_type: str,
    subject_id: str,
    body: str,
    *,
    now: datetime | None = None,
) -> Outcome:
    """Add a team note to a case, with its audit row; ``Outcome.applied`` holds the note's id.

    Refuses a viewer, an empty or over-long note, and a case the store does not know.
    """
    require_actor(reviewer, "add a note to a case")
    if subject_type not in NOTE_SUBJECTS:
        raise InvalidDecision(f"a note is about a {', '.join(NOTE_SUBJECTS)}; not a {subject_type!r}")
    text = (body or "").strip()
    if not text:
        raise InvalidDecision("the note is empty: write what the next reviewer should know")
    if len(text) > MAX_NOTE_CHARS:
        raise InvalidDecision(f"the note has {len(text)} characters; keep it under {MAX_NOTE_CHARS}")
    with store.transaction() as conn:
        if not _exists(conn, subject_type, subject_id):
            raise InvalidDecision(f"there is no {subject_type} {subject_id} in the store to note")
        result = conn.execute(
            sa.insert(notes_t).values(
                subject_type=subject_type, subject_id=subject_id, author=reviewer.name, body=text,
                created_at=now or utcnow(),
            )
        )  # fmt: skip
        note_id = int(result.inserted_primary_key[0])
        audit(store, conn, reviewer, action=f"{subject_type}.note", subject_type=subject_type,
              subject_id=subject_id, before=None, after={"note_id": note_id, "chars": len(text)})  # fmt: skip
    return Outcome(applied=[str(note_id)])


def _listed(store: Store, about: sa.ColumnElement[bool], limit: int) -> pl.DataFrame:
    query = (
        sa.select(
            notes_t.c.note_id, notes_t.c.created_at, notes_t.c.author, notes_t.c.subject_type,
            notes_t.c.subject_id, notes_t.c.body,
        )
        .where(about)
        .order_by(notes_t.c.note_id.desc())
        .limit(limit)
    )  # fmt: skip
    with store.engine.connect() as conn:
        return read_frame(conn, query)


def _on(subject_type: str, ids: sa.Select | Sequence[str]) -> sa.ColumnElement[bool]:
    return sa.and_(notes_t.c.subject_type == subject_type, notes_t.c.subject_id.in_(ids))


def case_notes(store: Store, subject_type: str, subject_id: str, *, limit: int = LIST_LIMIT) -> pl.DataFrame:
    """The notes on one case, newest first: ``note_id, created_at, author, subject_type, subject_id, body``."""
    return _listed(store, _on(subject_type, [subject_id]), limit)


def post_notes(store: Store, post_id: str, *, limit: int = LIST_LIMIT) -> pl.DataFrame:
    """The notes on a post and on its flags, newest first (the post view shows them together)."""
    flag_ids = sa.select(flags_t.c.flag_id).where(flags_t.c.post_id == post_id)
    return _listed(store, sa.or_(_on("post", [post_id]), _on("flag", flag_ids)), limit)


def account_notes(store: Store, account_id: str, *, limit: int = LIST_LIMIT) -> pl.DataFrame:
    """The notes on an account, on its posts and on their flags, newest first (the account page's)."""
    post_ids = sa.select(posts_t.c.post_id).where(posts_t.c.account_id == account_id)
    flag_ids = sa.select(flags_t.c.flag_id).where(flags_t.c.account_id == account_id)
    about = sa.or_(_on("account", [account_id]), _on("post", post_ids), _on("flag", flag_ids))
    return _listed(store, about, limit)
