"""The worker's policy stage: evaluate the active and the shadow policy on each micro-batch.

:meth:`PolicyEngine.evaluate` is called by :class:`stream.pipeline.worker.PostWorker` after detection and
before the store write. It returns a :class:`PolicyOutcome`: every action record (active, held back
by a circuit breaker, shadow) for the batch's store transaction, the breaker alerts for the same
transaction, and the actions to produce to the actions topic before the offsets are committed.

Where the policies come from: ``policy.active_file`` / ``policy.shadow_file`` pin them to files;
otherwise the store's slots (``chorus policy activate|shadow|rollback``), checked every
``policy.reload_interval_s``, so a switch reaches every worker within that time without restarts.
A policy that fails to load from the store is logged and the previous one keeps running: a bad
switch must not stop the stream.

State kept per worker process (not shared between workers): the circuit breakers and the account
windows. Each worker judges the share of the posts it sees; partitions are keyed by account, so
every worker's share estimates the whole stream's. A restart starts them afresh.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
import polars as pl
from sqlalchemy.exc import SQLAlchemyError

from detectors.base import Detections, Detector
from detectors.policy import (
    ACTION_SCHEMA,
    AccountWindows,
    BreakerSettings,
    CircuitBreaker,
    Policy,
    action_rows,
    check_thresholds,
    evaluation_frame,
    match_rules,
)
from stream.config import ChorusConfig, PolicyConfig
from stream.policy import registry
from stream.policy.files import load_policy

log = logging.getLogger("chorus.policy")


@dataclass
class PolicyOutcome:
    """What the policy stage decided for one batch."""

    #: Every record for ``policy_actions``: emitted, suppressed (breaker open) and shadow.
    actions: list[dict[str, Any]] = field(default_factory=list)
    #: Circuit-breaker changes for ``policy_alerts``.
    alerts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def emit(self) -> list[dict[str, Any]]:
        """The actions to produce to the actions topic: the active policy's, breaker closed."""
        return [a for a in self.actions if a["status"] == "emitted"]


#: Fields of an action record that are bookkeeping of the store, not part of the message.
_NOT_IN_MESSAGE = ("mode", "status", "worker_id")


def action_message(action: Mapping[str, Any]) -> bytes:
    """The actions-topic value for an action record (JSON, ``schema`` = ``chorus.action/1``)."""
    return msgspec.json.encode(
        {"schema": ACTION_SCHEMA, **{k: v for k, v in action.items() if k not in _NOT_IN_MESSAGE}}
    )


@dataclass
class _Running:
    """A policy in a slot with its per-rule breakers (active slot only)."""

    policy: Policy
    breakers: dict[str, CircuitBreaker] = field(default_factory=dict)


class PolicyEngine:
    """Evaluates the active and shadow policies for one worker; see the module docstring."""

    def __init__(
        self,
        config: PolicyConfig,
        *,
        thresholds: Mapping[str, Mapping[str, float]],
        store: Any | None = None,
        worker_id: str = "",
        active: Policy | None = None,
        shadow: Policy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``active``/``shadow`` given (or pinned by the configuration's files) are fixed; a slot
        left None follows the store's slot when ``store`` is given."""
        self.config = config
        self.thresholds = {name: dict(values) for name, values in thresholds.items()}
        self.store = store
        self.worker_id = worker_id
        self.defaults = BreakerSettings(
            window_posts=config.breaker_window_posts,
            max_share=config.breaker_max_share,
            min_posts=config.breaker_min_posts,
            recover_share=config.breaker_recover_share,
        )
        self._clock = clock
        self._pinned = {"active": active is not None, "shadow": shadow is not None}
        self._running: dict[str, _Running | None] = {"active": None, "shadow": None}
        self._accounts: dict[str, AccountWindows] = {}
        self._last_refresh: float | None = None
        for slot, policy in (("active", active), ("shadow", shadow)):
            if policy is not None:
                self._install(slot, policy, strict=True)

    @classmethod
    def from_config(
        cls, config: ChorusConfig, store: Any | None, detectors: Sequence[Detector], *, worker_id: str = ""
    ) -> PolicyEngine | None:
        """The engine a worker runs with this configuration, or None when ``policy.enabled`` is off."""
        pcfg = config.policy
        if not pcfg.enabled:
            return None
        return cls(
            pcfg,
            thresholds={d.name: dict(d.thresholds) for d in detectors},
            store=store,
            worker_id=worker_id,
            active=load_policy(pcfg.active_file) if pcfg.active_file else None,
            shadow=load_policy(pcfg.shadow_file) if pcfg.shadow_file else None,
        )

    # -- which policies run ---------------------------------------------------------------------
    def policy(self, slot: str) -> Policy | None:
        """The policy now running in ``slot`` ("active" or "shadow")."""
        running = self._running[slot]
        return running.policy if running else None

    def breaker_open(self, rule_id: str) -> bool:
        """Whether the active policy's rule is held back by its circuit breaker."""
        running = self._running["active"]
        return bool(running and rule_id in running.breakers and running.breakers[rule_id].is_open)

    def _install(self, slot: str, policy: Policy | None, *, strict: bool) -> None:
        current = self._running[slot]
        if policy is not None and current is not None and current.policy.sha256 == policy.sha256:
            return
        if policy is not None:
            problems = check_thresholds(policy, self.thresholds)
            unknown = [p for p in problems if "is not running" not in p]
            not_running = sorted(policy.detectors_used() - set(self.thresholds))
            if unknown:
                message = f"{slot} policy {policy.label} names thresholds the detectors lack: " + "; ".join(unknown)
                if strict:
                    raise ValueError(message)
                log.error("%s; keeping %s", message, current.policy.label if current else "no policy")
                return
            if not_running:
                log.warning("%s policy %s reads detector(s) %s, which this worker does not run: "
                            "rules over them will not fire", slot, policy.label, ", ".join(not_running))
        running = None
        if policy is not None:
            breakers = (
                {r.rule_id: CircuitBreaker(policy.breaker_settings(r, self.defaults)) for r in policy.rules}
                if slot == "active" else {}
            )
            running = _Running(policy, breakers)
        self._running[slot] = running
        log.info("%s: %s policy is now %s", self.worker_id or "policy", slot,
                 policy.label if policy else "none")

    def refresh(self, *, force: bool = False) -> None:
        """Follow the store's slots (at most every ``reload_interval_s``); pinned slots stay."""
        if self.store is None or all(self._pinned.values()):
            return
        now = self._clock()
        if not force and self._last_refresh is not None and now - self._last_refresh < self.config.reload_interval_s:
            return
        self._last_refresh = now
        try:
            slots = registry.read_slots(self.store)
        except SQLAlchemyError as exc:
            log.warning("%s: could not read the policy slots (%s); keeping the current policies",
                        self.worker_id or "policy", exc)
            return
        for slot, ref in slots.items():
            if self._pinned[slot]:
                continue
            current = self._running[slot]
            if ref is None:
                if current is not None:
                    self._install(slot, None, strict=False)
                continue
            if current is not None and (current.policy.policy_id, current.policy.version) == ref:
                continue
            try:
                policy = registry.load_version(self.store, *ref)
            except (SQLAlchemyError, ValueError, registry.PolicyRegistryError) as exc:
                log.error("%s: cannot load %s policy %s@%s (%s); keeping %s", self.worker_id or "policy", slot,
                          ref[0], ref[1], exc, current.policy.label if current else "no policy")
                continue
            self._install(slot, policy, strict=False)

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(self, posts: pl.DataFrame, detections: Sequence[Detections], now: Any) -> PolicyOutcome:
        """Judge one batch. Store reads (slots, campaigns) happen before any state changes, so a
        transient database error can be retried by the caller without double-counting breakers."""
        self.refresh()
        running = [(slot, r) for slot, r in self._running.items() if r is not None]
        if not running or posts.height == 0:
            return PolicyOutcome()
        policies = [r.policy for _, r in running]
        campaigns = None
        if self.store is not None and any(p.needs_campaigns() for p in policies):
            campaigns = self.store.campaign_memberships(posts.get_column("account_id").to_list())
        accounts = self._account_frame(posts, detections, policies)
        frame = evaluation_frame(posts, detections, accounts=accounts, campaigns=campaigns)

        outcome = PolicyOutcome()
        for slot, run in running:
            matches = match_rules(run.policy, frame, self.thresholds)
            status: dict[str, str] = {}
            for rule in run.policy.rules:
                if slot == "shadow":
                    status[rule.rule_id] = "shadow"
                    continue
                breaker = run.breakers[rule.rule_id]
                change = breaker.observe(matches[rule.rule_id])
                if change is not None:
                    outcome.alerts.append(self._alert(run.policy, rule.rule_id, breaker, change, now))
                status[rule.rule_id] = "suppressed" if breaker.is_open else "emitted"
            rows = action_rows(run.policy, frame, matches, detections, mode=slot, status_by_rule=status,
                               decided_at=now)
            for row in rows:
                row["worker_id"] = self.worker_id
            outcome.actions.extend(rows)
        return outcome

    def _account_frame(
        self, posts: pl.DataFrame, detections: Sequence[Detections], policies: Sequence[Policy]
    ) -> pl.DataFrame | None:
        wanted = set().union(*(p.account_detectors() for p in policies))
        frame: pl.DataFrame | None = None
        for det in detections:
            if det.detector not in wanted:
                continue
            windows = self._accounts.setdefault(det.detector, AccountWindows())
            part = windows.update_and_read(det.detector, posts, np.asarray(det.probability, dtype=np.float64))
            frame = part if frame is None else frame.join(part, on="post_id", how="left")
        return frame

    def _alert(self, policy: Policy, rule_id: str, breaker: CircuitBreaker, change: Any, now: Any) -> dict[str, Any]:
        s = breaker.settings
        if change.kind == "tripped":
            log.error(
                "%s: circuit breaker OPEN for rule %r of %s: it fired on %.1f%% of the last %d posts "
                "(limit %.1f%%); its actions are recorded but not sent until the share falls to %.1f%%",
                self.worker_id or "policy", rule_id, policy.label, 100 * change.share, change.posts,
                100 * s.max_share, 100 * (s.recover_share or 0.0),
            )
        else:
            log.warning(
                "%s: circuit breaker closed for rule %r of %s: %.1f%% of the last %d posts; acting again",
                self.worker_id or "policy", rule_id, policy.label, 100 * change.share, change.posts,
            )
        return {
            "at": now,
            "kind": f"breaker_{change.kind}",
            "policy_id": policy.policy_id,
            "policy_version": policy.version,
            "rule_id": rule_id,
            "share": change.share,
            "matched": change.matched,
            "posts": change.posts,
            "settings": dict(s.__dict__),
            "worker_id": self.worker_id,
        }
