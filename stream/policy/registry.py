"""Which policy is active and which is in shadow: kept in the store, switched by one audited command.

Every policy text that is activated or shadowed is stored (``policy_versions``) so that all
workers on all hosts run the same text, and so that any action's ``policy_id``/``policy_version``
can be read back later. The two slots (``policy_slots``: ``active``, ``shadow``) say which version
runs where. Every change of a slot is written to ``audit_log`` in the same transaction as the
change itself, so the log can never disagree with what ran.

Rollback walks the slot's audit history: activations push a version, rollbacks pop one, so
``activate A; activate B; rollback`` leaves A, and a second rollback leaves the slot empty.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from detectors.policy import Policy
from stream.policy.files import parse_policy
from stream.store.database import Store
from stream.store.tables import POLICY_SLOTS, TABLES, utcnow

AUDIT_SUBJECT = "policy_slot"
AUDIT_SET = "policy.set"
AUDIT_ROLLBACK = "policy.rollback"


class PolicyRegistryError(RuntimeError):
    """A slot change that cannot be made; the message says why and what to do instead."""


@dataclass(frozen=True)
class SlotChange:
    """What one activate / shadow / rollback / clear did."""

    slot: str
    before: tuple[str, str] | None
    after: tuple[str, str] | None
    audit_id: int

    def describe(self) -> str:
        def name(ref: tuple[str, str] | None) -> str:
            return f"{ref[0]}@{ref[1]}" if ref else "(none)"

        return f"{self.slot}: {name(self.before)} -> {name(self.after)} (audit #{self.audit_id})"


def _check_slot(slot: str) -> None:
    if slot not in POLICY_SLOTS:
        raise PolicyRegistryError(f"unknown policy slot {slot!r}; slots are {', '.join(POLICY_SLOTS)}")


def read_slots(store: Store, conn: Connection | None = None) -> dict[str, tuple[str, str] | None]:
    """slot -> (policy_id, version), or None when the slot is empty."""
    slots = TABLES["policy_slots"]
    query = sa.select(slots.c.slot, slots.c.policy_id, slots.c.version)
    if conn is None:
        with store.engine.connect() as own:
            rows = list(own.execute(query))
    else:
        rows = list(conn.execute(query))
    out: dict[str, tuple[str, str] | None] = dict.fromkeys(POLICY_SLOTS)
    for slot, policy_id, version in rows:
        out[slot] = (policy_id, version) if policy_id is not None else None
    return out


def load_version(store: Store, policy_id: str, version: str) -> Policy:
    """The stored text of ``policy_id@version``, validated again (it was valid when stored)."""
    versions = TABLES["policy_versions"]
    with store.engine.connect() as conn:
        row = conn.execute(
            sa.select(versions.c.content, versions.c.source)
            .where(versions.c.policy_id == policy_id, versions.c.version == version)
        ).first()
    if row is None:
        raise PolicyRegistryError(f"policy {policy_id}@{version} is not in the store")
    return parse_policy(row.content, f"store:{policy_id}@{version} (from {row.source or 'unknown file'})")


def load_slot(store: Store, slot: str) -> Policy | None:
    """The policy in ``slot``, or None when it is empty."""
    _check_slot(slot)
    ref = read_slots(store)[slot]
    return load_version(store, *ref) if ref else None


def _store_version(conn: Connection, policy: Policy, text: str, actor: str) -> None:
    versions = TABLES["policy_versions"]
    existing = conn.execute(
        sa.select(versions.c.sha256).where(versions.c.policy_id == policy.policy_id,
                                           versions.c.version == policy.version)
    ).scalar_one_or_none()
    if existing is None:
        conn.execute(sa.insert(versions).values(
            policy_id=policy.policy_id, version=policy.version, content=text, sha256=policy.sha256,
            source=policy.source, stored_at=utcnow(), stored_by=actor,
        ))
    elif existing != policy.sha256:
        raise PolicyRegistryError(
            f"{policy.label} is already stored with different content: a changed policy needs a new "
            f"version (edit [policy] version in {policy.source})"
        )


def _set_slot(conn: Connection, slot: str, ref: tuple[str, str] | None, actor: str) -> None:
    slots = TABLES["policy_slots"]
    values = {"policy_id": ref[0] if ref else None, "version": ref[1] if ref else None,
              "changed_at": utcnow(), "changed_by": actor}
    updated = conn.execute(sa.update(slots).where(slots.c.slot == slot).values(**values)).rowcount
    if not updated:
        conn.execute(sa.insert(slots).values(slot=slot, **values))


def _ref_json(ref: tuple[str, str] | None) -> dict[str, Any] | None:
    return {"policy_id": ref[0], "version": ref[1]} if ref else None


def set_slot(store: Store, slot: str, text: str | None, *, source: str = "<policy>", actor: str) -> SlotChange:
    """Put the policy ``text`` in ``slot`` (None empties it), audited, in one transaction.

    The text is validated first; a policy version already stored with different content is refused,
    so a version always names one text.
    """
    _check_slot(slot)
    policy = parse_policy(text, source) if text is not None else None
    with store.transaction() as conn:
        before = read_slots(store, conn)[slot]
        after = (policy.policy_id, policy.version) if policy else None
        if policy is not None and text is not None:
            _store_version(conn, policy, text, actor)
        _set_slot(conn, slot, after, actor)
        audit_id = store.append_audit(
            actor=actor, action=AUDIT_SET, subject_type=AUDIT_SUBJECT, subject_id=slot,
            before=_ref_json(before), after={**(_ref_json(after) or {}), "sha256": policy.sha256 if policy else None,
                                             "source": source if policy else None},
            conn=conn,
        )
    return SlotChange(slot, before, after, audit_id)


def history(store: Store, slot: str, conn: Connection | None = None) -> list[tuple[str, str] | None]:
    """The slot's stack of versions from its audit rows: sets push, rollbacks pop; the last is current."""
    audit = TABLES["audit_log"]
    query = (
        sa.select(audit.c.action, sa.cast(audit.c.after, sa.Text))
        .where(audit.c.subject_type == AUDIT_SUBJECT, audit.c.subject_id == slot)
        .order_by(audit.c.audit_id)
    )
    if conn is None:
        with store.engine.connect() as own:
            rows = list(own.execute(query))
    else:
        rows = list(conn.execute(query))
    stack: list[tuple[str, str] | None] = []
    for action, after_text in rows:
        after = json.loads(after_text) if after_text else None
        ref = (after["policy_id"], after["version"]) if after and after.get("policy_id") else None
        if action == AUDIT_ROLLBACK:
            if stack:
                stack.pop()
        else:
            stack.append(ref)
    return stack


def rollback(store: Store, slot: str = "active", *, actor: str) -> SlotChange:
    """Put back the version the slot held before its current one (empty if there was none)."""
    _check_slot(slot)
    with store.transaction() as conn:
        stack = history(store, slot, conn)
        before = read_slots(store, conn)[slot]
        if not stack:
            raise PolicyRegistryError(f"the {slot} slot has never been set: nothing to roll back")
        target = stack[-2] if len(stack) >= 2 else None
        _set_slot(conn, slot, target, actor)
        audit_id = store.append_audit(
            actor=actor, action=AUDIT_ROLLBACK, subject_type=AUDIT_SUBJECT, subject_id=slot,
            before=_ref_json(before), after=_ref_json(target), conn=conn,
        )
    return SlotChange(slot, before, target, audit_id)
