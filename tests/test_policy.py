"""Policies without Kafka: file validation, evaluation on a generated stream, actions in the store,
shadow mode, audited switching and rollback, the circuit breaker, and the shadow comparison."""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import sqlalchemy as sa
from sqlalchemy.engine.url import make_url

from detectors.base import ScoringDetector
from detectors.boilerplate import LlmBoilerplateDetector
from detectors.policy import (
    NEVER_AUTOMATIC,
    BreakerSettings,
    CircuitBreaker,
    action_id,
    evaluation_frame,
    match_rules,
)
from stream.cli import policy as policy_cli
from stream.config import PolicyConfig
from stream.kafka.messages import PostValidator, RawMessage, encode_post
from stream.policy import files, registry
from stream.policy.compare import compare_matches
from stream.policy.engine import PolicyEngine, action_message
from stream.policy.files import PolicyError, key_lines, load_policy, parse_policy
from stream.simulation import SimulationConfig, simulate_posts
from stream.store import migrations
from stream.store.database import Store
from stream.store.tables import TABLES

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "policies" / "example.toml"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

PG_URL = os.environ.get("CHORUS_TEST_PG_URL")
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=[
        pytest.mark.postgres, pytest.mark.skipif(not PG_URL, reason="CHORUS_TEST_PG_URL is not set")]),
]


# ---------------------------------------------------------------------------------------------
# Helpers


class FakeAiDetector(ScoringDetector):
    """A calibrated detector with a deterministic probability per post (from its id's hash)."""

    name = "fake_ai"
    model_version = "fake-1"
    thresholds = {"default": 0.5, "strict": 0.9}  # noqa: RUF012

    def decision_function(self, posts: pl.DataFrame) -> np.ndarray:
        return np.array([int(hashlib.sha256(p.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
                         for p in posts.get_column("post_id").to_list()])

    def predict_proba(self, posts: pl.DataFrame) -> np.ndarray:
        return self.decision_function(posts)

    def explain(self, posts: pl.DataFrame, scores: np.ndarray) -> list[dict[str, Any]]:
        return [{"fake": round(float(s), 3)} for s in scores]


def validated_posts(posts: list[dict[str, Any]]) -> pl.DataFrame:
    batch = PostValidator().validate([RawMessage("posts", 0, i, None, encode_post(p)) for i, p in enumerate(posts)])
    assert not batch.rejected
    return batch.posts


def post_rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return [dict(row, meta=None, ingested_at=T0) for row in frame.to_dicts()]


POLICY = """
[policy]
id = "test-policy"
version = "1"

[[rules]]
id = "boilerplate-label"
action = "label"
label = "likely machine-written"
when = [ { detector = "llm_boilerplate", threshold = "default" } ]

[[rules]]
id = "fake-strict-review"
action = "queue_review"
priority = 2
propose = "remove"
when = [ { detector = "fake_ai", threshold = "strict" }, { field = "text_length", at_least = 20 } ]
unless = [ { field = "hashtags", contains = "cats" } ]
"""


def policy_text(version: str = "1", extra: str = "") -> str:
    return POLICY.replace('version = "1"', f'version = "{version}"') + extra


def engine(active: str | None = None, shadow: str | None = None, **settings: Any) -> PolicyEngine:
    detectors = [LlmBoilerplateDetector(), FakeAiDetector()]
    return PolicyEngine(
        PolicyConfig(**settings),
        thresholds={d.name: d.thresholds for d in detectors},
        active=parse_policy(active, "active.toml") if active else None,
        shadow=parse_policy(shadow, "shadow.toml") if shadow else None,
        worker_id="w-test",
    )


def detect(frame: pl.DataFrame) -> list[Any]:
    return [LlmBoilerplateDetector().detect(frame), FakeAiDetector().detect(frame)]


@pytest.fixture(scope="module")
def stream_posts() -> pl.DataFrame:
    posts = simulate_posts(SimulationConfig(seed=21, posts=1_500, end=T0))
    return validated_posts(posts)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        with Store.open(f"sqlite:///{tmp_path / 'chorus.db'}") as opened:
            yield opened
        return
    assert PG_URL is not None
    schema = f"chorus_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        with Store.open(url.render_as_string(hide_password=False)) as opened:
            yield opened
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def chorus(argv: list[str]) -> int:
    """``chorus ARGV`` for the policy commands (stream.cli.main wires policy_cli in the same way)."""
    parser = argparse.ArgumentParser(prog="chorus")
    policy_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


# ---------------------------------------------------------------------------------------------
# Files: errors name file, line and field


def errors_of(text: str, tmp_path: Path, name: str = "p.toml") -> list[str]:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    return str(caught.value).splitlines()


def test_example_policy_is_valid() -> None:
    policy = load_policy(EXAMPLE)
    assert policy.label == "chorus-example@1"
    assert {r.action for r in policy.rules} == {"label", "reduce_reach", "queue_review", "rate_limit_account",
                                                "escalate_campaign"}
    assert policy.needs_campaigns() and policy.account_detectors() == {"aitext"}


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    text = policy_text() + "\n[[rules]]\nid = 'x'\naction = = 'label'\n"
    (message,) = errors_of(text, tmp_path)
    bad_line = text.splitlines().index("action = = 'label'") + 1
    assert message.startswith(f"{tmp_path / 'p.toml'}:{bad_line}: not valid TOML: ")
    assert message.endswith(f"(at line {bad_line}, column 10)"), "tomllib's words, with the column"


@pytest.mark.parametrize("action", NEVER_AUTOMATIC)
def test_removal_and_suspension_are_never_automatic(tmp_path: Path, action: str) -> None:
    text = policy_text().replace('action = "label"', f'action = "{action}"')
    (message,) = errors_of(text, tmp_path)
    line = text.splitlines().index(f'action = "{action}"') + 1
    assert message.startswith(f"{tmp_path / 'p.toml'}:{line}: rules[0].action: ")
    assert "never automatic" in message and 'propose = "' in message


def test_every_problem_is_reported_with_its_line_and_field(tmp_path: Path) -> None:
    text = """\
[policy]
id = "bad policy"
version = 3

[[rules]]
id = "r1"
action = "queue_review"
priority = 9
when = [
  { detector = "fake_ai", measure = "probability", at_least = 1.5 },
  { field = "lang", in = "en" },
  { field = "hashtags", above = 2 },
  { field = "colour", equals = "red" },
  { detector = "fake_ai", threshold = "strict", at_least = 0.3 },
  { account = "lower", at_least = 0.5 },
  { field = "text", matches = "(unclosed" },
]
colour = "red"

[[rules]]
id = "r1"
action = "label"
when = []
"""
    got = errors_of(text, tmp_path)
    want = [
        (2, "policy.id", "letters, digits"),
        (3, "policy.version", "non-empty string"),
        (8, "rules[0].priority", "1 (most urgent) to 5"),
        (10, "rules[0].when[0].at_least", "between 0 and 1"),
        (11, "rules[0].when[1].in", "non-empty list of strings"),
        (12, "rules[0].when[2].above", "compares numbers; hashtags is a list"),
        (13, "rules[0].when[3].field", "must be a post field: post_id, account_id, text"),
        (14, "rules[0].when[4].threshold", "takes no measure or operator"),
        (15, "rules[0].when[5].detector", "required: the detector"),
        (16, "rules[0].when[6].matches", "not a valid regular expression"),
        (18, "rules[0].colour", "unknown key"),
        (20, "rules[1].label", "required for action 'label'"),
        (21, "rules[1].id", "duplicate rule id 'r1' (also rules[0])"),
        (23, "rules[1].when", "must be a non-empty list of condition tables, e.g. [ { detector"),
    ]
    assert len(got) == len(want), "\n".join(got)
    for line, (number, field, fragment) in zip(got, want, strict=True):
        assert line.startswith(f"{tmp_path / 'p.toml'}:{number}: {field}: "), line
        assert fragment in line, line


_EVERY_KEY = "action, breaker, description, duration_s, factor, id, label, posts_per_hour, priority, propose, queue, "
MISTAKES = [
    # (replace this, with this, the line that holds the mistake (None: the file has no line for it),
    #  the key path, the whole message)
    pytest.param("\n[[rules]]", '\n[settings]\nowner = "tns"\n[[rules]]', "[settings]", "settings",
                 "unknown key; expected one of policy, rules", id="unknown-table"),
    pytest.param('version = "1"', 'version = "1"\nowner = "tns"', "owner", "policy.owner",
                 "unknown key; expected one of breaker, description, id, version", id="unknown-policy-key"),
    pytest.param("priority = 2", "priority = 2\nprioritty = 3", "prioritty", "rules[1].prioritty",
                 f"unknown key; expected one of {_EVERY_KEY}unless, when", id="unknown-rule-key"),
    pytest.param("priority = 2", "priority = 2\nbreaker = { max_shares = 0.1 }", "max_shares",
                 "rules[1].breaker.max_shares",
                 "unknown key; expected one of max_share, min_posts, recover_share, window_posts",
                 id="unknown-breaker-key"),
    pytest.param("at_least = 20", "at_leest = 20", "at_leest", "rules[1].when[1].at_leest",
                 "unknown key; expected one of above, at_least, at_most, below, contains, equals, field, in, "
                 "is_null, matches, not_equals, not_in", id="unknown-condition-key"),
    pytest.param("at_least = 20", 'at_least = "high"', '"high"', "rules[1].when[1].at_least",
                 "must be a number (got 'high')", id="wrong-type-operator"),
    pytest.param("priority = 2", 'priority = "high"', '"high"', "rules[1].priority",
                 "must be a whole number from 1 (most urgent) to 5 (got 'high')", id="wrong-type-priority"),
    pytest.param("priority = 2", "priority = 0", "priority = 0", "rules[1].priority",
                 "must be a whole number from 1 (most urgent) to 5 (got 0)", id="out-of-range-priority"),
    pytest.param('version = "1"', "version = 1", "version", "policy.version",
                 'must be a non-empty string such as "2024-06-01.1" (quote numbers) (got 1)', id="unquoted-version"),
    pytest.param("priority = 2", "priority = 2\nbreaker = { max_share = 1.5 }", "max_share",
                 "rules[1].breaker.max_share", "must be a share between 0 and 1 (got 1.5)", id="out-of-range-share"),
    pytest.param('contains = "cats"', 'contains = ["cats"]', "cats", "rules[1].unless[0].contains",
                 "must be a non-empty string (got ['cats'])", id="wrong-type-contains"),
    pytest.param('[policy]\nid = "test-policy"\nversion = "1"\n', "", None, "policy",
                 "required: a [policy] table with id and version", id="missing-policy-table"),
    pytest.param('version = "1"\n', "", "[policy]", "policy.version",
                 'required: a non-empty string such as "2024-06-01.1" (quote numbers)', id="missing-version"),
    pytest.param('when = [ { detector = "llm_boilerplate", threshold = "default" } ]\n', "", "[[rules]]",
                 "rules[0].when", 'required: a non-empty list of condition tables, e.g. '
                 '[ { detector = "aitext", threshold = "default" } ]', id="missing-when"),
    pytest.param('label = "likely machine-written"\n', "", "[[rules]]", "rules[0].label",
                 "required for action 'label' (a non-empty string)", id="missing-action-parameter"),
    pytest.param('{ field = "text_length", at_least = 20 }', '{ account = "n_posts", at_least = 20 }',
                 "n_posts", "rules[1].when[1].detector", "required: the detector whose probabilities the account "
                 'aggregate averages, e.g. detector = "aitext"', id="missing-account-detector"),
    pytest.param('action = "label"', 'action = "lable"', "lable", "rules[0].action",
                 "unknown action 'lable'; expected one of label, reduce_reach, queue_review, rate_limit_account, "
                 "escalate_campaign", id="unknown-action"),
    pytest.param("priority = 2", 'priority = 2\nlabel = "x"', 'label = "x"', "rules[1].label",
                 "action 'queue_review' takes no label; it takes priority, propose, queue", id="parameter-of-another"),
    pytest.param('propose = "remove"', 'propose = "shame"', "shame", "rules[1].propose",
                 "must be one of label, reduce_reach, rate_limit_account, escalate_campaign, remove, delete, "
                 "suspend, ban, terminate, takedown (got 'shame')", id="unknown-proposal"),
    pytest.param('detector = "llm_boilerplate"', 'detector = "llm boilerplate"', "llm boilerplate",
                 "rules[0].when[0].detector", "must be a detector name such as \"aitext\" (got 'llm boilerplate')",
                 id="bad-detector-name"),
    pytest.param('threshold = "strict"', 'measure = "certainty", at_least = 0.5', "certainty",
                 "rules[1].when[0].measure", "must be one of score, probability, flagged (got 'certainty')",
                 id="unknown-detector-measure"),
    pytest.param('{ field = "text_length", at_least = 20 }', '{ field = "text_length" }', "text_length",
                 "rules[1].when[1]", "give exactly one operator of at_least, above, at_most, below, equals, "
                 "not_equals, in, not_in, contains, matches, is_null (got none)", id="no-operator"),
    pytest.param('{ field = "text_length", at_least = 20 }', '{ field = "lang", campaign = "size", at_least = 20 }',
                 '"lang"', "rules[1].when[1]",
                 "name exactly one subject of detector, account, campaign, field (got ['campaign', 'field'])",
                 id="two-subjects"),
    pytest.param('contains = "cats"', 'equals = "cats"', "cats", "rules[1].unless[0].equals",
                 "equals does not apply to the list field hashtags; use contains", id="operator-unfit-for-field"),
]


@pytest.mark.parametrize(("old", "new", "marker", "field", "message"), MISTAKES)
def test_each_kind_of_mistake_is_named_with_its_line_and_key(
    tmp_path: Path, old: str, new: str, marker: str | None, field: str, message: str
) -> None:
    text = policy_text().replace(old, new, 1)
    assert text != policy_text(), old
    line = next(n for n, line in enumerate(text.splitlines(), 1) if marker in line) if marker else None
    where = f"{tmp_path / 'p.toml'}:{line}" if line else f"{tmp_path / 'p.toml'}"
    assert errors_of(text, tmp_path) == [f"{where}: {field}: {message}"]


def test_every_schema_key_explains_itself() -> None:
    """Every key's type carries the words that complete "must be ..." and "required: ...\"."""
    schemas = [files._Document, files._PolicyTable, files._BreakerTable, files._RuleTable, *files._SUBJECTS.values()]
    for schema in schemas:
        for name, field in files._fields(schema).items():
            assert files._description(field.type), f"{schema.__name__}.{name} has no description"


def test_key_lines_follow_tables_arrays_and_strings() -> None:
    # Brackets and '#' inside strings, a multi-line string, sub-tables of an array entry.
    lines = key_lines('[policy]\nid = "x]#"\nversion = """\nmulti\n"""\n[[rules]]\nid = "r"\n'
                      '[rules.breaker]\nmax_share = 0.5\n[[rules]]\nwhen = [\n  { field = "lang" },\n'
                      '  { field = "text" }]\n')
    assert lines[("policy", "version")] == 3
    assert lines[("rules", 0, "breaker", "max_share")] == 9
    assert lines[("rules", 1, "when", 1, "field")] == 13
    # Windows line ends, brackets and braces in strings and comments, dotted keys, an element written
    # over two lines (it maps to the line it ends on), a second [[rules]] after a sub-table.
    text = (
        '[policy] # [x]\r\nid = "p"\r\n[[rules]]\r\nwhen = [ # {\r\n  { field = "text", matches = "a{2}[" },\r\n'
        '  { field = "lang", in = [\r\n    "en"] },\r\n]\r\nbreaker.max_share = 0.5\r\n[[rules]]\r\nid = "r2"\r\n'
    )
    lines = key_lines(text)
    assert lines[("policy",)] == 1 and lines[("policy", "id")] == 2 and lines[("rules", 0)] == 3
    assert lines[("rules", 0, "when", 0, "matches")] == 5
    assert lines[("rules", 0, "when", 1)] == lines[("rules", 0, "when", 1, "in", 0)] == 7
    assert lines[("rules", 0, "breaker", "max_share")] == 9
    assert lines[("rules", 1, "id")] == 11


def test_unknown_threshold_of_a_running_detector_is_refused() -> None:
    bad = policy_text().replace('threshold = "strict"', 'threshold = "strikt"')
    with pytest.raises(ValueError, match="has no threshold 'strikt'; it has \\['default', 'strict'\\]"):
        engine(active=bad)


def test_rule_over_a_detector_that_does_not_run_never_fires(stream_posts, caplog) -> None:
    text = policy_text().replace('detector = "fake_ai", threshold', 'detector = "aitext", threshold')
    with caplog.at_level(logging.WARNING, "chorus.policy"):
        eng = engine(active=text)
    assert "aitext" in caplog.text and "will not fire" in caplog.text
    outcome = eng.evaluate(stream_posts, detect(stream_posts), T0)
    assert {a["rule_id"] for a in outcome.actions} == {"boilerplate-label"}


# ---------------------------------------------------------------------------------------------
# Evaluation


def test_a_valid_policy_produces_exactly_the_expected_actions(stream_posts) -> None:
    detections = detect(stream_posts)
    outcome = engine(active=policy_text()).evaluate(stream_posts, detections, T0)

    # The expectation, computed from the raw outputs without the policy machinery.
    boiler, fake = detections
    rows = stream_posts.to_dicts()
    want_label = {r["post_id"] for r, s in zip(rows, boiler.score, strict=True) if s >= 1.0}
    want_review = {
        r["post_id"] for r, s in zip(rows, fake.score, strict=True)
        if s >= 0.9 and len(r["text"]) >= 20 and "cats" not in (r["hashtags"] or [])
    }
    assert len(want_label) > 20 and len(want_review) > 50, "the generated stream should exercise both rules"
    got: dict[str, set[str]] = {}
    for action in outcome.actions:
        got.setdefault(action["rule_id"], set()).add(action["post_id"])
    assert got == {"boilerplate-label": want_label, "fake-strict-review": want_review}
    assert outcome.emit == outcome.actions and outcome.alerts == []

    review = next(a for a in outcome.actions if a["rule_id"] == "fake-strict-review")
    assert review["params"] == {"priority": 2, "propose": "remove"} and review["action"] == "queue_review"
    assert review["policy_id"] == "test-policy" and review["policy_version"] == "1"
    assert review["scores"]["fake_ai"]["probability"] >= 0.9
    assert review["evidence"]["detectors"]["fake_ai"]["fake"] >= 0.9
    assert review["evidence"]["observed"]["text_length"] >= 20
    assert review["action_id"] == action_id("active", "test-policy", "1", "fake-strict-review", review["post_id"])
    message = action_message(review)
    assert b'"schema":"chorus.action/1"' in message and b'"status"' not in message


def test_replay_gives_the_same_action_ids(stream_posts) -> None:
    first = engine(active=policy_text()).evaluate(stream_posts, detect(stream_posts), T0)
    again = engine(active=policy_text()).evaluate(stream_posts, detect(stream_posts), T0)
    assert [a["action_id"] for a in first.actions] == [a["action_id"] for a in again.actions]
    assert len({a["action_id"] for a in first.actions}) == len(first.actions)
    newer = engine(active=policy_text(version="2")).evaluate(stream_posts, detect(stream_posts), T0)
    assert not {a["action_id"] for a in newer.actions} & {a["action_id"] for a in first.actions}


def test_nan_probability_never_satisfies_a_bound() -> None:
    frame = validated_posts([{"post_id": "p1", "account_id": "a", "created_at": "2024-05-01T00:00:00Z",
                              "text": "As an AI language model I cannot"}])
    detections = [LlmBoilerplateDetector().detect(frame)]  # uncalibrated: probability NaN
    policy = parse_policy(policy_text(extra="""
[[rules]]
id = "prob"
action = "label"
label = "x"
when = [ { detector = "llm_boilerplate", measure = "probability", at_least = 0.0 } ]
"""))
    matches = match_rules(policy, evaluation_frame(frame, detections), {"llm_boilerplate": {"default": 1.0}})
    assert matches["boilerplate-label"].tolist() == [True] and matches["prob"].tolist() == [False]


def test_account_and_campaign_conditions(store: Store) -> None:
    posts = [
        {"post_id": f"p{i}", "account_id": "bot" if i < 6 else f"user{i}", "created_at": "2024-05-01T00:00:00Z",
         "text": "As an AI language model, here is my view" if i < 6 else "just a normal post, honestly"}
        for i in range(10)
    ]
    frame = validated_posts(posts)
    store.write_batch(posts=post_rows(frame), results=[], flags=[], dead_letters=[])
    campaigns, members = TABLES["campaigns"], TABLES["campaign_members"]
    with store.transaction() as conn:
        conn.execute(campaigns.insert(), [{"campaign_id": "c-weak", "score": 0.5, "size": 3},
                                          {"campaign_id": "c-strong", "score": 0.9, "size": 2}])
        conn.execute(members.insert(), [{"campaign_id": "c-weak", "account_id": "user7"},
                                         {"campaign_id": "c-strong", "account_id": "user7"},
                                         {"campaign_id": "c-weak", "account_id": "user8"}])
    text = """
[policy]
id = "ctx"
version = "1"

[[rules]]
id = "account-share"
action = "rate_limit_account"
posts_per_hour = 5
when = [ { account = "machine_share", detector = "fake_prob", at_least = 0.9 },
         { account = "n_posts", detector = "fake_prob", at_least = 5 } ]

[[rules]]
id = "campaign"
action = "escalate_campaign"
when = [ { campaign = "score", at_least = 0.8 } ]

[[rules]]
id = "any-campaign"
action = "label"
label = "in a campaign"
when = [ { campaign = "member", equals = true } ]
"""

    class FakeProb(LlmBoilerplateDetector):
        name = "fake_prob"

        def predict_proba(self, posts: pl.DataFrame) -> np.ndarray:
            return np.minimum(1.0, self.decision_function(posts))

    eng = PolicyEngine(PolicyConfig(), thresholds={"fake_prob": {"default": 1.0}}, store=store,
                       active=parse_policy(text))
    outcome = eng.evaluate(frame, [FakeProb().detect(frame)], T0)
    by_rule: dict[str, set[str]] = {}
    for a in outcome.actions:
        by_rule.setdefault(a["rule_id"], set()).add(a["post_id"])
    assert by_rule["account-share"] == {f"p{i}" for i in range(6)}
    assert by_rule["campaign"] == {"p7"}
    assert by_rule["any-campaign"] == {"p7", "p8"}
    escalation = next(a for a in outcome.actions if a["rule_id"] == "campaign")
    assert escalation["campaign_id"] == "c-strong", "the account's strongest campaign is the one escalated"
    # A replay of the same batch does not count the account's posts twice.
    again = eng.evaluate(frame, [FakeProb().detect(frame)], T0)
    assert next(a for a in again.actions if a["rule_id"] == "account-share")["evidence"]["observed"][
        "account.fake_prob.n_posts"] == 6


# ---------------------------------------------------------------------------------------------
# The store


def test_actions_are_stored_once_and_replays_change_nothing(store: Store, stream_posts) -> None:
    eng = engine(active=policy_text())
    outcome = eng.evaluate(stream_posts, detect(stream_posts), T0)
    rows = post_rows(stream_posts)
    store.write_batch(posts=rows, results=[], flags=[], dead_letters=[], actions=outcome.actions)
    first = store.frame("policy_actions")
    assert first.height == len(outcome.actions) > 0
    with store.transaction() as conn:  # the console reverses one action
        conn.execute(TABLES["policy_actions"].update().where(
            TABLES["policy_actions"].c.action_id == outcome.actions[0]["action_id"]
        ).values(reversed_by="reviewer-1", reversed_at=T0))
    replay = engine(active=policy_text()).evaluate(stream_posts, detect(stream_posts), datetime.now(UTC))
    store.write_batch(posts=rows, results=[], flags=[], dead_letters=[], actions=replay.actions)
    second = store.frame("policy_actions")
    assert second.drop("reversed_by", "reversed_at").equals(first.drop("reversed_by", "reversed_at"))
    assert second.filter(pl.col("reversed_by").is_not_null()).height == 1, "a replay keeps the reversal"


def test_migration_2_upgrades_a_version_1_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    with Store.open(url, migrate=False) as old, old.transaction() as conn:
        assert migrations.upgrade(conn, migrations.MIGRATIONS[:1]) == [1]
    with Store.open(url, migrate=False) as store:
        assert store.schema_version() == 1
        assert store.migrate() == list(range(2, migrations.HEAD_VERSION + 1))
        tables = set(sa.inspect(store.engine).get_table_names())
    assert {"policy_versions", "policy_slots", "policy_actions", "policy_alerts"} <= tables
    assert migrations.MIGRATIONS[1].version == 2


# ---------------------------------------------------------------------------------------------
# Shadow mode, switching, rollback


def test_shadow_policy_records_everything_and_acts_on_nothing(stream_posts) -> None:
    outcome = engine(shadow=policy_text()).evaluate(stream_posts, detect(stream_posts), T0)
    assert outcome.actions and outcome.emit == []
    assert {a["status"] for a in outcome.actions} == {"shadow"} and {a["mode"] for a in outcome.actions} == {"shadow"}

    both = engine(active=policy_text(), shadow=policy_text(version="2"))
    both = both.evaluate(stream_posts, detect(stream_posts), T0)
    assert {a["policy_version"] for a in both.emit} == {"1"}
    assert len(both.actions) == 2 * len(both.emit)


def test_activate_shadow_and_rollback_are_audited(store: Store, stream_posts) -> None:
    eng = PolicyEngine(PolicyConfig(reload_interval_s=3600), store=store, worker_id="w",
                       thresholds={"llm_boilerplate": {"default": 1.0}, "fake_ai": FakeAiDetector.thresholds})
    assert eng.evaluate(stream_posts, detect(stream_posts), T0).actions == []

    changes = [
        registry.set_slot(store, "active", policy_text("1"), source="v1.toml", actor="alice"),
        registry.set_slot(store, "shadow", policy_text("2"), source="v2.toml", actor="alice"),
    ]
    eng.refresh(force=True)
    assert eng.policy("active").version == "1" and eng.policy("shadow").version == "2"
    changes.append(registry.set_slot(store, "active", policy_text("2"), source="v2.toml", actor="bob"))
    eng.refresh(force=True)
    assert eng.policy("active").version == "2"
    changes.append(registry.rollback(store, "active", actor="carol"))
    eng.refresh(force=True)
    assert eng.policy("active").version == "1"
    changes.append(registry.rollback(store, "active", actor="carol"))
    eng.refresh(force=True)
    assert eng.policy("active") is None, "rolling back the first activation empties the slot"
    with pytest.raises(registry.PolicyRegistryError, match="different content"):
        registry.set_slot(store, "active", policy_text("1", extra="# changed\n"), actor="dave")

    audit = store.frame("audit_log").sort("audit_id")
    assert audit.height == len(changes)
    assert audit["actor"].to_list() == ["alice", "alice", "bob", "carol", "carol"]
    assert audit["action"].to_list() == ["policy.set"] * 3 + ["policy.rollback"] * 2
    assert audit["subject_id"].to_list() == ["active", "shadow", "active", "active", "active"]
    assert [c.describe().rsplit(" (audit", 1)[0] for c in changes] == [
        "active: (none) -> test-policy@1", "shadow: (none) -> test-policy@2", "active: test-policy@1 -> test-policy@2",
        "active: test-policy@2 -> test-policy@1", "active: test-policy@1 -> (none)",
    ]
    assert store.count("policy_versions") == 2


def test_a_bad_policy_in_the_store_keeps_the_previous_one(store: Store, caplog) -> None:
    registry.set_slot(store, "active", policy_text("1"), actor="alice")
    eng = PolicyEngine(PolicyConfig(), store=store, thresholds={"llm_boilerplate": {"default": 1.0},
                                                                "fake_ai": {"default": 0.5}})
    eng.refresh(force=True)
    assert eng.policy("active") is None, "a policy naming an unknown threshold is not installed"
    assert "has no threshold 'strict'" in caplog.text


def test_policy_cli(store: Store, tmp_path: Path, capsys) -> None:
    url = str(store.engine.url.render_as_string(hide_password=False))
    if store.dialect != "sqlite":
        pytest.skip("the CLI path is the same on both databases")
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text(policy_text())
    bad.write_text(policy_text().replace('action = "label"', 'action = "suspend"'))
    assert chorus(["policy", "validate", str(good), str(EXAMPLE)]) == 0
    assert chorus(["policy", "validate", str(bad)]) == 1
    assert "rules[0].action: 'suspend' is never automatic" in capsys.readouterr().err
    assert chorus(["policy", "activate", str(bad), "--store", url, "--actor", "eve"]) == 1
    assert chorus(["policy", "activate", str(good), "--store", url, "--actor", "eve"]) == 0
    assert chorus(["policy", "shadow", str(EXAMPLE), "--store", url, "--actor", "eve"]) == 0
    assert chorus(["policy", "status", "--store", url]) == 0
    out = capsys.readouterr().out
    assert "active: (none) -> test-policy@1" in out and "active: test-policy@1" in out
    assert "shadow: chorus-example@1" in out
    assert chorus(["policy", "compare", "--store", url]) == 0
    assert chorus(["policy", "rollback", "--store", url, "--actor", "eve"]) == 0
    assert "active: test-policy@1 -> (none)" in capsys.readouterr().out
    assert chorus(["policy", "shadow", "--clear", "--store", url]) == 0
    assert registry.read_slots(store) == {"active": None, "shadow": None}
    assert store.count("audit_log") == 4


def test_shadow_comparison_counts_overlap_and_reviewer_agreement(store: Store) -> None:
    active = pl.DataFrame({"rule_id": ["a1", "a1", "a1"], "action": ["label"] * 3, "post_id": ["p1", "p2", "p3"]})
    shadow = pl.DataFrame({"rule_id": ["s1", "s1", "s2"], "action": ["label", "label", "queue_review"],
                           "post_id": ["p2", "p4", "p3"]})
    posts = validated_posts([{"post_id": f"p{i}", "account_id": "a", "created_at": "2024-05-01T00:00:00Z",
                              "text": "hello"} for i in range(1, 5)])
    store.write_batch(posts=post_rows(posts), results=[], dead_letters=[], flags=[
        {"flag_id": "d:p3", "post_id": "p3", "account_id": "a", "detector": "d", "flagged_at": T0}])
    decisions = TABLES["review_decisions"]
    with store.transaction() as conn:
        conn.execute(decisions.insert(), [
            {"subject_type": "post", "subject_id": "p2", "decision": "confirmed", "reviewer": "r"},
            {"subject_type": "flag", "subject_id": "d:p3", "decision": "confirmed", "reviewer": "r"},
            {"subject_type": "post", "subject_id": "p4", "decision": "confirmed", "reviewer": "r"},
        ])
        # The decision on p4 is reversed: it was not a problem after all.
        conn.execute(decisions.insert().values(subject_type="post", subject_id="p4", decision="dismissed",
                                               reviewer="lead", reverses_decision_id=3))
    table = compare_matches(active, shadow, store.post_review_decisions(), active_label="A", shadow_label="S")
    rows = {(r["policy"], r["rule_id"]): r for r in table.to_dicts()}
    assert (rows[("A", "a1")]["posts"], rows[("A", "a1")]["overlap"], rows[("A", "a1")]["reviewed"],
            rows[("A", "a1")]["agreed"]) == (3, 2, 2, 2)
    assert (rows[("S", "s1")]["posts"], rows[("S", "s1")]["overlap"], rows[("S", "s1")]["same_action"],
            rows[("S", "s1")]["reviewed"], rows[("S", "s1")]["agreement"]) == (2, 1, 1, 2, 0.5)
    assert (rows[("S", "s2")]["overlap"], rows[("S", "s2")]["same_action"]) == (1, 0)


# ---------------------------------------------------------------------------------------------
# Circuit breaker


def test_breaker_trips_above_the_share_and_recovers_after_a_fresh_window() -> None:
    breaker = CircuitBreaker(BreakerSettings(window_posts=100, max_share=0.2, min_posts=50, recover_share=0.05))
    quiet, loud = np.zeros(10, dtype=bool), np.ones(10, dtype=bool)
    assert all(breaker.observe(quiet) is None for _ in range(20)) and not breaker.is_open
    # 30 matches in 100 posts: the first batch that takes the window above 20% trips it.
    changes = [breaker.observe(loud) for _ in range(3)]
    assert [c.kind if c else None for c in changes] == [None, None, "tripped"] and breaker.is_open
    assert changes[2].share == pytest.approx(0.3)
    # Back to normal: it stays open until a full window since the trip is at or below 5%.
    changes = [breaker.observe(quiet) for _ in range(10)]
    assert [c.kind for c in changes if c] == ["recovered"] and not breaker.is_open
    assert changes.index(next(c for c in changes if c)) == 9


def test_breaker_waits_for_min_posts() -> None:
    breaker = CircuitBreaker(BreakerSettings(window_posts=1000, max_share=0.2, min_posts=200))
    assert breaker.observe(np.ones(150, dtype=bool)) is None and not breaker.is_open
    assert breaker.observe(np.zeros(50, dtype=bool)).kind == "tripped"


def test_engine_breaker_holds_actions_back_records_them_and_alerts(stream_posts, caplog) -> None:
    text = policy_text(extra="""
[[rules]]
id = "everything"
action = "label"
label = "broken"
when = [ { field = "text_length", at_least = 0 } ]
""")
    eng = engine(active=text, breaker_window_posts=400, breaker_min_posts=100, breaker_max_share=0.5,
                 breaker_recover_share=0.25)
    batches = [stream_posts[i : i + 250] for i in range(0, 1500, 250)]
    with caplog.at_level(logging.WARNING, "chorus.policy"):
        first = eng.evaluate(batches[0], detect(batches[0]), T0)
    assert [a["kind"] for a in first.alerts] == ["breaker_tripped"] and first.alerts[0]["rule_id"] == "everything"
    assert "circuit breaker OPEN for rule 'everything'" in caplog.text
    held = [a for a in first.actions if a["rule_id"] == "everything"]
    assert len(held) == 250 and {a["status"] for a in held} == {"suppressed"}
    assert all(a["rule_id"] != "everything" for a in first.emit), "a tripped rule sends nothing"
    assert {a["status"] for a in first.actions if a["rule_id"] != "everything"} == {"emitted"}, "others act"
    assert eng.breaker_open("everything") and not eng.breaker_open("boilerplate-label")

    # The model is fixed (a new policy version keeps the rule but it no longer fires on everything):
    fixed = text.replace('at_least = 0 }', 'at_least = 100000 }')
    eng._install("active", parse_policy(fixed.replace('version = "1"', 'version = "1"')), strict=True)
    assert not eng.breaker_open("everything"), "a new policy text starts with closed breakers"


def test_engine_breaker_recovers_when_the_share_falls(stream_posts) -> None:
    # The rule fires on a share that depends on the batch: ~100% at first, then none.
    text = policy_text(extra="""
[[rules]]
id = "bursty"
action = "label"
label = "x"
when = [ { field = "lang", is_null = false } ]
""")
    eng = engine(active=text, breaker_window_posts=300, breaker_min_posts=100, breaker_max_share=0.5)
    noisy = stream_posts.head(300).with_columns(lang=pl.lit("en"))
    quiet = stream_posts.slice(300, 600).with_columns(lang=pl.lit(None, dtype=pl.String))
    kinds = []
    for batch in (noisy[:150], noisy[150:], quiet[:150], quiet[150:300], quiet[300:450]):
        kinds += [a["kind"] for a in eng.evaluate(batch, detect(batch), T0).alerts]
    assert kinds == ["breaker_tripped", "breaker_recovered"]
    assert not eng.breaker_open("bursty")
