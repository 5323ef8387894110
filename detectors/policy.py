"""Policies turn detector outputs into actions: the rules, their evaluation, and the circuit breaker.

Everything here is pure (frames and arrays in, frames and arrays out, no Kafka, no database), so
a policy can be replayed on a notebook's frame exactly as the stream evaluates it. Reading policy
files, the store and Kafka is the job of :mod:`stream.policy`.

How a batch is judged:

1. :func:`evaluation_frame` lines up, per post, the post's fields, every detector's score,
   probability and decision (``detector.<name>.score`` ...), the account aggregate
   (``account.<detector>.machine_share`` ...) and the campaign the account belongs to
   (``campaign.id``, ``campaign.score`` ...). Columns a batch lacks are null, and a null never
   satisfies a condition: a rule over a detector that did not run simply does not fire.
2. :func:`match_rules` evaluates every rule as one polars expression (all of ``when``, none of
   ``unless``) and returns a boolean array per rule.
3. :func:`action_rows` turns the matches into action records with a deterministic ``action_id``
   (:func:`action_id`), so a replayed batch yields the same ids and the store and the platform
   can deduplicate.

High-impact, hard-to-reverse actions (remove, suspend, ...) are never automatic: the only way a
rule can ask for one is ``queue_review`` with ``propose = "remove"``, which puts the post in front
of a person with that proposal. :data:`NEVER_AUTOMATIC` lists the refused names.

:class:`CircuitBreaker` guards each rule: a rule that suddenly fires on a large share of posts
(a broken model, a bad threshold) stops acting and only records until its share falls again.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from detectors.base import Detections

#: Actions a rule may take on its own. Each is reversible or advisory.
ACTIONS: tuple[str, ...] = ("label", "reduce_reach", "queue_review", "rate_limit_account", "escalate_campaign")
#: Actions that are never taken automatically; a rule may only propose them to a reviewer.
NEVER_AUTOMATIC: tuple[str, ...] = ("remove", "delete", "suspend", "ban", "terminate", "takedown")
#: What ``queue_review`` may propose to the reviewer (the automatic actions and the never-automatic ones).
PROPOSALS: tuple[str, ...] = (*(a for a in ACTIONS if a != "queue_review"), *NEVER_AUTOMATIC)

#: Condition subjects and what each can measure.
DETECTOR_MEASURES: tuple[str, ...] = ("score", "probability", "flagged")
ACCOUNT_MEASURES: tuple[str, ...] = ("machine_share", "lower", "upper", "n_posts")
CAMPAIGN_MEASURES: tuple[str, ...] = ("member", "id", "score", "size")
#: Post fields a condition can test, with their kind: "text", "list" (of strings) or "number".
POST_FIELDS: dict[str, str] = {
    "post_id": "text", "account_id": "text", "text": "text", "lang": "text", "reply_to": "text",
    "repost_of": "text", "quote_of": "text", "urls": "list", "hashtags": "list", "mentions": "list",
    "text_length": "number",
}  # fmt: skip

#: Comparison operators and the kinds of value each applies to.
NUMERIC_OPS: tuple[str, ...] = ("at_least", "above", "at_most", "below")
EQUALITY_OPS: tuple[str, ...] = ("equals", "not_equals")
SET_OPS: tuple[str, ...] = ("in", "not_in")
TEXT_OPS: tuple[str, ...] = ("contains", "matches")
OPERATORS: tuple[str, ...] = (*NUMERIC_OPS, *EQUALITY_OPS, *SET_OPS, *TEXT_OPS, "is_null")

#: Schema tag of an action message on the actions topic.
ACTION_SCHEMA = "chorus.action/1"


# --------------------------------------------------------------------------------------------
# The policy model


@dataclass(frozen=True)
class Condition:
    """One test on one column of the evaluation frame.

    ``subject`` is ``detector``, ``account``, ``campaign`` or ``post``; ``name`` the detector (for
    ``detector`` and ``account``) or empty; ``measure`` what is read (``probability``, ``lower``,
    ``score``, a post field, or ``threshold`` for "the detector's named threshold is crossed", in
    which case ``value`` is the threshold's name). ``line`` is where the policy file wrote it.
    """

    subject: str
    name: str
    measure: str
    op: str
    value: Any
    line: int | None = None

    @property
    def column(self) -> str:
        """The evaluation-frame column this condition reads."""
        if self.subject == "detector":
            return f"detector.{self.name}.{'score' if self.measure == 'threshold' else self.measure}"
        if self.subject == "account":
            return f"account.{self.name}.{self.measure}"
        if self.subject == "campaign":
            return f"campaign.{self.measure}"
        return self.measure

    def describe(self) -> str:
        """Human-readable form for evidence and the CLI, e.g. ``detector.aitext.probability >= 0.9``."""
        if self.measure == "threshold":
            return f"detector.{self.name} crosses threshold {self.value!r}"
        symbols = {"at_least": ">=", "above": ">", "at_most": "<=", "below": "<", "equals": "==", "not_equals": "!="}
        return f"{self.column} {symbols.get(self.op, self.op)} {self.value!r}"


@dataclass(frozen=True)
class BreakerSettings:
    """When a rule's circuit breaker opens and closes (see :class:`CircuitBreaker`).

    ``window_posts``: how many recent posts the share is measured over; ``max_share``: the rule
    trips when it matches more than this share of them; ``min_posts``: no judgement on fewer posts
    (a 3-post batch matching 2 is no evidence of a broken model); ``recover_share``: once tripped,
    the rule acts again only after a whole fresh window at or below this share.
    """

    window_posts: int = 2_000
    max_share: float = 0.2
    min_posts: int = 200
    recover_share: float | None = None

    def __post_init__(self) -> None:
        if self.recover_share is None:
            object.__setattr__(self, "recover_share", self.max_share / 2)
        if self.window_posts < 1 or self.min_posts < 1:
            raise ValueError("breaker window_posts and min_posts must be at least 1")
        if not 0.0 < self.max_share <= 1.0:
            raise ValueError(f"breaker max_share must be in (0, 1], got {self.max_share}")
        if not 0.0 <= self.recover_share <= self.max_share:  # type: ignore[operator]
            raise ValueError(f"breaker recover_share must be in [0, max_share], got {self.recover_share}")


@dataclass(frozen=True)
class Rule:
    """``when`` all conditions hold and none of ``unless`` does, take ``action`` with ``params``."""

    rule_id: str
    action: str
    when: tuple[Condition, ...]
    unless: tuple[Condition, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    #: Per-rule overrides of the breaker settings (field name -> value).
    breaker: Mapping[str, Any] = field(default_factory=dict)
    line: int | None = None

    @property
    def conditions(self) -> tuple[Condition, ...]:
        return (*self.when, *self.unless)


@dataclass(frozen=True)
class Policy:
    """A versioned set of rules. ``policy_id`` + ``version`` name it everywhere it is recorded."""

    policy_id: str
    version: str
    rules: tuple[Rule, ...]
    description: str = ""
    #: Policy-wide overrides of the breaker settings (field name -> value).
    breaker: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""
    sha256: str = ""

    @property
    def label(self) -> str:
        """``policy_id@version``, the name used in logs and the CLI."""
        return f"{self.policy_id}@{self.version}"

    def detectors_used(self) -> set[str]:
        """Detector names the rules read (directly or through the account aggregate)."""
        return {c.name for r in self.rules for c in r.conditions if c.subject in ("detector", "account")}

    def account_detectors(self) -> set[str]:
        """Detectors whose probability feeds an account aggregate the rules read."""
        return {c.name for r in self.rules for c in r.conditions if c.subject == "account"}

    def needs_campaigns(self) -> bool:
        """Whether evaluation needs the accounts' campaign membership (a store read per batch)."""
        return any(r.action == "escalate_campaign" or any(c.subject == "campaign" for c in r.conditions)
                   for r in self.rules)

    def breaker_settings(self, rule: Rule, defaults: BreakerSettings) -> BreakerSettings:
        """The configuration's defaults, then the policy's ``[breaker]``, then the rule's own."""
        return merge_breaker(defaults, self.breaker, rule.breaker)


def merge_breaker(defaults: BreakerSettings, *layers: Mapping[str, Any]) -> BreakerSettings:
    """Apply override tables in order. A layer that sets ``max_share`` without ``recover_share``
    gets the default recovery (half of its ``max_share``), not a lower layer's, which could exceed it."""
    values: dict[str, Any] = dict(defaults.__dict__)
    for layer in layers:
        if "max_share" in layer and "recover_share" not in layer:
            values["recover_share"] = None
        values.update(layer)
    return BreakerSettings(**values)


def check_thresholds(policy: Policy, thresholds: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Problems with the named thresholds the policy uses, given each detector's ``thresholds``.

    Returns messages (empty when all is well) rather than raising, so the caller decides: the
    worker refuses to run such a policy, ``chorus policy validate`` lists them.
    """
    problems = []
    for rule in policy.rules:
        for cond in rule.conditions:
            if cond.measure != "threshold":
                continue
            known = thresholds.get(cond.name)
            where = f"rule {rule.rule_id!r}" + (f" (line {cond.line})" if cond.line else "")
            if known is None:
                problems.append(f"{where}: detector {cond.name!r} is not running; running: {sorted(thresholds)}")
            elif cond.value not in known:
                problems.append(f"{where}: detector {cond.name!r} has no threshold {cond.value!r}; "
                                f"it has {sorted(known)}")
    return problems


# --------------------------------------------------------------------------------------------
# Ids


def action_id(mode: str, policy_id: str, version: str, rule_id: str, post_id: str) -> str:
    """The same inputs always give the same id, so a replayed batch re-sends identical actions.

    Mode is part of it so that a shadow record never collides with an action of the same policy.
    128 bits of SHA-256: collisions are out of reach for any stream.
    """
    text = "\x1f".join((mode, policy_id, version, rule_id, post_id))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


# --------------------------------------------------------------------------------------------
# The evaluation frame


def evaluation_frame(
    posts: pl.DataFrame,
    detections: Sequence[Detections],
    *,
    accounts: pl.DataFrame | None = None,
    campaigns: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One row per post with every column a condition may read.

    ``accounts``: ``post_id`` plus ``account.<detector>.<measure>`` columns (see
    :class:`AccountWindows`); ``campaigns``: ``account_id, campaign_id, campaign_score,
    campaign_size`` (one row per account). NaN probabilities become null: polars orders NaN above
    every number, and "not calibrated" must never satisfy ``probability >= 0.9``.
    """
    columns = [c for c in ("post_id", "account_id", "created_at", "text", "lang", "reply_to", "repost_of",
                           "quote_of", "urls", "hashtags", "mentions") if c in posts.columns]
    frame = posts.select(columns).with_columns(text_length=pl.col("text").str.len_chars().cast(pl.Int64))
    for det in detections:
        if len(det) != posts.height:
            raise ValueError(f"detections of {det.detector} have {len(det)} rows for {posts.height} posts")
        prefix = f"detector.{det.detector}."
        frame = frame.with_columns(
            pl.Series(prefix + "score", np.asarray(det.score, dtype=np.float64)).fill_nan(None),
            pl.Series(prefix + "probability", np.asarray(det.probability, dtype=np.float64)).fill_nan(None),
            pl.Series(prefix + "flagged", np.asarray(det.flagged, dtype=bool)),
        )
    if accounts is not None and accounts.height:
        frame = frame.join(accounts, on="post_id", how="left")
    if campaigns is not None:
        frame = frame.join(
            campaigns.select(
                "account_id",
                pl.col("campaign_id").alias("campaign.id"),
                pl.col("campaign_score").cast(pl.Float64).alias("campaign.score"),
                pl.col("campaign_size").cast(pl.Int64).alias("campaign.size"),
            ),
            on="account_id",
            how="left",
        ).with_columns(pl.col("campaign.id").is_not_null().alias("campaign.member"))
    return frame


def condition_expr(cond: Condition, columns: Iterable[str], thresholds: Mapping[str, Mapping[str, float]]) -> pl.Expr:
    """The polars expression for one condition; null (never true) when its column is missing."""
    if cond.column not in set(columns):
        return pl.lit(None, dtype=pl.Boolean)
    col = pl.col(cond.column)
    op, value = cond.op, cond.value
    if cond.measure == "threshold":
        known = thresholds.get(cond.name, {})
        return col >= float(known[value]) if value in known else pl.lit(None, dtype=pl.Boolean)
    if op == "is_null":
        return col.is_null() if value else col.is_not_null()
    if op in NUMERIC_OPS:
        return {"at_least": col >= value, "above": col > value, "at_most": col <= value, "below": col < value}[op]
    if op == "equals":
        return col == value
    if op == "not_equals":
        return col != value
    if op in SET_OPS:
        inside = col.is_in(list(value))
        return inside if op == "in" else ~inside
    if POST_FIELDS.get(cond.measure) == "list":
        if op == "contains":
            return col.list.contains(value)
        return col.list.eval(pl.element().str.contains(value)).list.any()
    return col.str.contains(value, literal=(op == "contains"))


def rule_expr(rule: Rule, columns: Sequence[str], thresholds: Mapping[str, Mapping[str, float]]) -> pl.Expr:
    """All of ``when`` and none of ``unless``; null counts as false on both sides."""
    expr = pl.all_horizontal([condition_expr(c, columns, thresholds).fill_null(False) for c in rule.when])
    if rule.unless:
        excluded = pl.any_horizontal([condition_expr(c, columns, thresholds).fill_null(False) for c in rule.unless])
        expr = expr & ~excluded
    if rule.action == "escalate_campaign":
        # No campaign, nothing to escalate: the rule cannot fire on a post whose account is in none.
        expr = (expr & pl.col("campaign.id").is_not_null()) if "campaign.id" in columns else pl.lit(False)
    return expr


def match_rules(
    policy: Policy, frame: pl.DataFrame, thresholds: Mapping[str, Mapping[str, float]] | None = None
) -> dict[str, np.ndarray]:
    """rule id -> boolean array over the frame's rows: which posts each rule fires on."""
    thresholds = thresholds or {}
    if frame.height == 0 or not policy.rules:
        return {r.rule_id: np.zeros(frame.height, dtype=bool) for r in policy.rules}
    result = frame.select([rule_expr(r, frame.columns, thresholds).alias(r.rule_id) for r in policy.rules])
    return {r.rule_id: result.get_column(r.rule_id).to_numpy().astype(bool) for r in policy.rules}


# --------------------------------------------------------------------------------------------
# Actions


def action_rows(
    policy: Policy,
    frame: pl.DataFrame,
    matches: Mapping[str, np.ndarray],
    detections: Sequence[Detections],
    *,
    mode: str,
    status_by_rule: Mapping[str, str],
    decided_at: Any,
) -> list[dict[str, Any]]:
    """One record per (rule, matched post): what the store keeps and, when emitted, what the topic carries.

    ``scores`` holds every detector's score, probability and decision for the post; ``evidence``
    the conditions that held (with the values seen) and the evidence of the detectors the rule
    reads, so anyone can say which rule, which version and which evidence caused the action.
    """
    rows: list[dict[str, Any]] = []
    if frame.height == 0:
        return rows
    by_detector = {d.detector: d for d in detections}
    post_ids = frame.get_column("post_id").to_list()
    accounts = frame.get_column("account_id").to_list()
    created = frame.get_column("created_at").to_list() if "created_at" in frame.columns else [None] * frame.height
    campaign_ids = frame.get_column("campaign.id").to_list() if "campaign.id" in frame.columns else None
    for rule in policy.rules:
        hits = np.flatnonzero(matches.get(rule.rule_id, np.zeros(0, dtype=bool)))
        if hits.size == 0:
            continue
        read_columns = sorted({c.column for c in rule.conditions if c.column in frame.columns})
        seen = frame[hits.tolist()].select(read_columns).to_dicts() if read_columns else [{} for _ in hits]
        for row_index, observed in zip(hits.tolist(), seen, strict=True):
            scores = {
                name: {
                    "model_version": det.model_version,
                    "score": _finite(det.score[row_index]),
                    "probability": _finite(det.probability[row_index]),
                    "threshold_name": det.threshold_name,
                    "threshold": _finite(det.threshold),
                    "flagged": bool(det.flagged[row_index]),
                }
                for name, det in by_detector.items()
            }
            evidence = {
                "conditions": [c.describe() for c in rule.when],
                "unless": [c.describe() for c in rule.unless],
                "observed": {k: _jsonable(v) for k, v in observed.items()},
                "detectors": {
                    name: by_detector[name].evidence_for(row_index)
                    for name in sorted({c.name for c in rule.conditions if c.subject == "detector"})
                    if name in by_detector
                },
            }
            rows.append(
                {
                    "action_id": action_id(mode, policy.policy_id, policy.version, rule.rule_id, post_ids[row_index]),
                    "mode": mode,
                    "status": status_by_rule.get(rule.rule_id, "emitted"),
                    "policy_id": policy.policy_id,
                    "policy_version": policy.version,
                    "rule_id": rule.rule_id,
                    "action": rule.action,
                    "post_id": post_ids[row_index],
                    "account_id": accounts[row_index],
                    "campaign_id": campaign_ids[row_index] if campaign_ids is not None else None,
                    "params": dict(rule.params),
                    "scores": scores,
                    "evidence": evidence,
                    "post_created_at": created[row_index],
                    "decided_at": decided_at,
                }
            )
    return rows


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


# --------------------------------------------------------------------------------------------
# Account aggregate


#: Recent scored posts per account and detector that ``account.*`` conditions are judged on.
ACCOUNT_WINDOW = 50


class AccountWindows:
    """Each account's last ``window`` probabilities from one detector, for ``account.*`` conditions.

    Keyed by post id, so a replayed batch replaces its own entries instead of counting twice; and
    bounded to ``max_accounts`` (least recently seen are forgotten) so a long-running worker's
    memory stays flat. Posts are keyed by account on the posts topic, so one worker sees all of an
    account's posts while it owns the partition; after a rebalance the new owner starts afresh.

    The share's interval is Wilson's at ``confidence`` on the fractional count, as in
    :mod:`detectors.aitext.aggregate`: a guide to how much evidence there is, not exact coverage.
    """

    def __init__(self, window: int = ACCOUNT_WINDOW, confidence: float = 0.95, max_accounts: int = 200_000) -> None:
        self.window = window
        self.confidence = confidence
        self.max_accounts = max_accounts
        self._recent: OrderedDict[str, OrderedDict[str, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._recent)

    def update_and_read(self, detector: str, posts: pl.DataFrame, probability: np.ndarray) -> pl.DataFrame:
        """Add a batch's probabilities (NaN: not scored, skipped) and return each post's account estimate.

        Returns ``post_id`` and ``account.<detector>.{machine_share, lower, upper, n_posts}``.
        """
        from detectors.aitext.aggregate import wilson_interval

        accounts = posts.get_column("account_id").to_list()
        post_ids = posts.get_column("post_id").to_list()
        for account, post_id, p in zip(accounts, post_ids, probability.tolist(), strict=True):
            recent = self._recent.get(account)
            if recent is None:
                recent = self._recent[account] = OrderedDict()
            else:
                self._recent.move_to_end(account)
            if p is None or not math.isfinite(p):
                continue
            recent[post_id] = float(p)
            recent.move_to_end(post_id)
            while len(recent) > self.window:
                recent.popitem(last=False)
        while len(self._recent) > self.max_accounts:
            self._recent.popitem(last=False)
        cache: dict[str, tuple[float | None, float, float, int]] = {}
        for account in set(accounts):
            values = self._recent.get(account) or {}
            n = len(values)
            total = float(sum(values.values()))
            lower, upper = wilson_interval(total, n, self.confidence)
            cache[account] = (total / n if n else None, lower, upper, n)
        prefix = f"account.{detector}."
        return pl.DataFrame(
            {
                "post_id": post_ids,
                prefix + "machine_share": [cache[a][0] for a in accounts],
                prefix + "lower": [cache[a][1] for a in accounts],
                prefix + "upper": [cache[a][2] for a in accounts],
                prefix + "n_posts": [cache[a][3] for a in accounts],
            },
            schema={"post_id": pl.String, prefix + "machine_share": pl.Float64, prefix + "lower": pl.Float64,
                    prefix + "upper": pl.Float64, prefix + "n_posts": pl.Int64},
        )


# --------------------------------------------------------------------------------------------
# Circuit breaker


@dataclass(frozen=True)
class BreakerChange:
    """The breaker opened (``tripped``) or closed (``recovered``) after a batch."""

    kind: str  # "tripped" | "recovered"
    share: float
    matched: int
    posts: int


class CircuitBreaker:
    """Stops a rule from acting when it fires on more than ``max_share`` of the recent posts.

    The share is measured over the last ``window_posts`` posts (at batch granularity: whole
    batches are kept, so the window holds at least ``window_posts`` posts once that many were
    seen). Open means "record, don't act". It closes again when a full window of posts seen since
    it opened has a share at or below ``recover_share``: hysteresis, so a rule hovering at the
    limit does not flap. Decisions are made per batch, before the batch's actions are emitted, so
    the batch that trips the breaker is already held back.
    """

    def __init__(self, settings: BreakerSettings) -> None:
        self.settings = settings
        self._chunks: deque[tuple[int, int]] = deque()
        self._posts = 0
        self._matched = 0
        self._since_open = 0
        self.is_open = False

    @property
    def share(self) -> float:
        return self._matched / self._posts if self._posts else 0.0

    def observe(self, matches: np.ndarray) -> BreakerChange | None:
        """Add one batch's matches; return the change of state it caused, if any."""
        n, k = int(matches.size), int(np.count_nonzero(matches))
        if n == 0:
            return None
        s = self.settings
        self._chunks.append((n, k))
        self._posts += n
        self._matched += k
        while self._chunks and self._posts - self._chunks[0][0] >= s.window_posts:
            old_n, old_k = self._chunks.popleft()
            self._posts -= old_n
            self._matched -= old_k
        if not self.is_open:
            if self._posts >= s.min_posts and self.share > s.max_share:
                self.is_open = True
                self._since_open = 0
                return BreakerChange("tripped", self.share, self._matched, self._posts)
            return None
        self._since_open += n
        if self._since_open >= s.window_posts and self.share <= s.recover_share:
            self.is_open = False
            return BreakerChange("recovered", self.share, self._matched, self._posts)
        return None
