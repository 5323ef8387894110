"""Statement templates: named statements of reasons a lead writes once and reviewers start from.

After Bluesky Ozone's communication templates. A template has a name (unique), the kinds of case it
suits (:data:`~stream.store.tables.TEMPLATE_SUBJECTS`: ``post``, ``account``, ``campaign``; none:
any), optionally the reason code it is written for, and a body with placeholders
(:mod:`stream.review.placeholders`): ``{account}``, ``{post_id}``, ``{reason}``, ... filled from the
case, and free ones like ``[[explain what was misleading]]`` the reviewer must fill before the
decision goes through. Leads create, edit, disable and enable templates; a disabled one is no longer
offered, but is kept (decisions made from it keep their statements as sent). Every change writes an
audit row (``template.create``, ``template.edit``, ``template.disable``, ``template.enable``;
subject ``template``) in the same transaction as the change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from stream.review.placeholders import (
    KNOWN_PLACEHOLDERS,
    free_placeholders,
    unknown_placeholders,
)
from stream.review.vocabulary import REASON_CODES
from stream.store.database import Store
from stream.store.reading import json_strings, read_rows
from stream.store.reviewers import (
    MAX_STATEMENT_CHARS,
    InvalidDecision,
    Outcome,
    PermissionDenied,
    Reviewer,
    audit,
)
from stream.store.tables import TABLES, TEMPLATE_SUBJECTS, utcnow

templates_t = TABLES["statement_templates"]

#: Longest template name: it is a label in a picker.
MAX_NAME_CHARS = 80
#: The audit log's subject type for a template.
AUDIT_SUBJECT = "template"


@dataclass(frozen=True)
class StatementTemplate:
    """A template as stored; ``subjects`` empty means it suits any kind of case."""

    template_id: int
    name: str
    subjects: tuple[str, ...]
    reason_code: str | None
    body: str
    enabled: bool
    updated_by: str
    updated_at: datetime

    def suits(self, kinds: Sequence[str]) -> bool:
        """Whether it is written for any of ``kinds`` (or for any case)."""
        return not self.subjects or any(kind in self.subjects for kind in kinds)

    @property
    def free_placeholders(self) -> list[str]:
        return free_placeholders(self.body)

    def label(self) -> str:
        """How a picker names it: the name, the reason code it is for, ``(disabled)``."""
        parts = [self.name]
        if self.reason_code:
            parts.append(f"({self.reason_code})")
        if not self.enabled:
            parts.append("(disabled)")
        return " ".join(parts)

    def record(self) -> dict[str, Any]:
        """What an audit row keeps of it."""
        return {
            "name": self.name,
            "subjects": list(self.subjects),
            "reason_code": self.reason_code,
            "body": self.body,
            "enabled": self.enabled,
        }


def _template(row: dict[str, Any]) -> StatementTemplate:
    return StatementTemplate(
        template_id=int(row["template_id"]),
        name=row["name"],
        subjects=tuple(json_strings(row["subjects"])),
        reason_code=row["reason_code"],
        body=row["body"],
        enabled=bool(row["enabled"]),
        updated_by=row["updated_by"],
        updated_at=row["updated_at"],
    )


def list_templates(
    store: Store, *, include_disabled: bool = False, kinds: Sequence[str] | None = None
) -> list[StatementTemplate]:
    """The templates by name; only enabled ones unless ``include_disabled``; only those that suit one of
    ``kinds`` (or any case) when given."""
    query = sa.select(templates_t).order_by(templates_t.c.name, templates_t.c.template_id)
    if not include_disabled:
        query = query.where(templates_t.c.enabled)
    with store.engine.connect() as conn:
        found = [_template(row) for row in read_rows(conn, query)]
    return [t for t in found if kinds is None or t.suits(kinds)]


def _require_lead(reviewer: Reviewer, what: str) -> None:
    if not reviewer.is_lead:
        raise PermissionDenied(
            f"{reviewer.name} is a {reviewer.role}: only a lead can {what}; ask a lead to change the templates"
        )


def _checked(name: str, body: str, subjects: Sequence[str], reason_code: str | None) -> dict[str, Any]:
    """The template's columns, cleaned; InvalidDecision naming what is wrong and how to fix it."""
    name = (name or "").strip()
    body = (body or "").strip()
    if not name:
        raise InvalidDecision("a template needs a name (what reviewers pick it by)")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidDecision(f"the template name has {len(name)} characters; keep it under {MAX_NAME_CHARS}")
    if not body:
        raise InvalidDecision("a template needs a body: the statement of reasons reviewers start from")
    if len(body) > MAX_STATEMENT_CHARS:
        raise InvalidDecision(f"the template has {len(body)} characters; keep it under {MAX_STATEMENT_CHARS}")
    unknown = unknown_placeholders(body)
    if unknown:
        known = ", ".join(f"{{{k}}}" for k in KNOWN_PLACEHOLDERS)
        raise InvalidDecision(
            f"the template uses {', '.join(unknown)}, which no case fills; the known placeholders are {known}, "
            "and [[like this]] asks the reviewer to write something"
        )
    kinds = list(dict.fromkeys(s for s in subjects if s))
    wrong = [k for k in kinds if k not in TEMPLATE_SUBJECTS]
    if wrong:
        raise InvalidDecision(
            f"a template suits {', '.join(TEMPLATE_SUBJECTS)} cases (or any); not {', '.join(map(repr, wrong))}"
        )
    code = (reason_code or "").strip() or None
    if code is not None and code not in REASON_CODES:
        raise InvalidDecision(f"unknown reason code {code!r}; codes are {', '.join(REASON_CODES)}")
    return {"name": name, "body": body, "subjects": kinds, "reason_code": code}


def save_template(
    store: Store,
    reviewer: Reviewer,
    *,
    name: str,
    body: str,
    subjects: Sequence[str] = (),
    reason_code: str | None = None,
    template_id: int | None = None,
    now: datetime | None = None,
) -> Outcome:
    """Create a template (``template_id`` None) or edit one; leads only. ``Outcome.applied`` holds its id.

    Names are unique, ignoring case: a second "Misleading AI text" is refused, not added.
    """
    _require_lead(reviewer, "create or edit statement templates")
    values = _checked(name, body, subjects, reason_code)
    now = now or utcnow()
    try:
        return _save(store, reviewer, values, template_id, now)
    except sa.exc.IntegrityError:  # another lead saved the same name meanwhile (PostgreSQL, READ COMMITTED)
        raise InvalidDecision(
            f"there is already a template named {values['name']!r}: edit it or pick another name"
        ) from None


def _save(store: Store, reviewer: Reviewer, values: dict[str, Any], template_id: int | None, now: datetime) -> Outcome:
    with store.transaction() as conn:
        clash = conn.execute(
            sa.select(templates_t.c.template_id).where(
                sa.func.lower(templates_t.c.name) == values["name"].lower(),
                templates_t.c.template_id != (template_id if template_id is not None else -1),
            )
        ).first()
        if clash is not None:
            raise InvalidDecision(f"there is already a template named {values['name']!r}: edit it or pick another name")
        if template_id is None:
            result = conn.execute(
                sa.insert(templates_t).values(
                    **values, enabled=True, created_by=reviewer.name, created_at=now, updated_by=reviewer.name,
                    updated_at=now,
                )
            )  # fmt: skip
            new_id = int(result.inserted_primary_key[0])
            action, before = "create", None
            after = {**values, "enabled": True}
        else:
            rows = read_rows(conn, sa.select(templates_t).where(templates_t.c.template_id == template_id))
            if not rows:
                raise InvalidDecision(f"there is no template {template_id}; reload the templates")
            old = _template(rows[0])
            conn.execute(
                sa.update(templates_t)
                .where(templates_t.c.template_id == template_id)
                .values(**values, updated_by=reviewer.name, updated_at=now)
            )
            new_id = template_id
            action, before = "edit", old.record()
            after = {**values, "enabled": old.enabled}
        audit(store, conn, reviewer, action=f"template.{action}", subject_type=AUDIT_SUBJECT,
              subject_id=str(new_id), before=before, after=after)  # fmt: skip
    return Outcome(applied=[str(new_id)])


def set_enabled(
    store: Store, reviewer: Reviewer, template_id: int, enabled: bool, *, now: datetime | None = None
) -> Outcome:
    """Disable a template (no longer offered; kept for the record) or enable it again; leads only."""
    _require_lead(reviewer, "disable or enable statement templates")
    with store.transaction() as conn:
        rows = read_rows(conn, sa.select(templates_t).where(templates_t.c.template_id == template_id))
        if not rows:
            raise InvalidDecision(f"there is no template {template_id}; reload the templates")
        old = _template(rows[0])
        if old.enabled == enabled:
            return Outcome(unchanged=[str(template_id)])
        conn.execute(
            sa.update(templates_t)
            .where(templates_t.c.template_id == template_id)
            .values(enabled=enabled, updated_by=reviewer.name, updated_at=now or utcnow())
        )
        audit(store, conn, reviewer, action=f"template.{'enable' if enabled else 'disable'}",
              subject_type=AUDIT_SUBJECT, subject_id=str(template_id), before={"enabled": old.enabled},
              after={"enabled": enabled, "name": old.name})  # fmt: skip
    return Outcome(applied=[str(template_id)])
