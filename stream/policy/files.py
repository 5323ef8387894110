"""Policy files: TOML in, a validated :class:`detectors.policy.Policy` out, or errors that name the place.

A trust & safety analyst edits these files, so every error says which file, which line and which
field is wrong and what would be right, and all errors of a file are reported at once. tomllib
gives the line of a syntax error; for semantic errors :func:`key_lines` maps each key (and each
element of an array such as ``when``) to the line it was written on.

The format (``policies/example.toml`` is a complete, commented example)::

    [policy]
    id = "chorus-default"          # letters, digits, . _ - ; names the policy everywhere
    version = "2024-06-01.1"       # a string; every change gets a new one
    description = "..."

    [policy.breaker]               # optional: circuit-breaker overrides for every rule
    max_share = 0.2

    [[rules]]
    id = "aitext-label"
    action = "label"               # label | reduce_reach | queue_review | rate_limit_account | escalate_campaign
    label = "likely machine-written"
    when = [                       # every condition must hold
      { detector = "aitext", measure = "probability", at_least = 0.95 },
      { field = "lang", in = ["en"] },
    ]
    unless = [ { campaign = "member", equals = true } ]   # optional: none may hold

A condition names one subject (``detector``, ``account``, ``campaign`` or ``field``) and one
operator; ``{ detector = "aitext", threshold = "fpr_1pct" }`` means "the score crossed that named
threshold". See :data:`detectors.policy.OPERATORS`.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from detectors.policy import (
    ACCOUNT_MEASURES,
    ACTIONS,
    CAMPAIGN_MEASURES,
    DETECTOR_MEASURES,
    EQUALITY_OPS,
    NEVER_AUTOMATIC,
    NUMERIC_OPS,
    OPERATORS,
    POST_FIELDS,
    PROPOSALS,
    SET_OPS,
    TEXT_OPS,
    BreakerSettings,
    Condition,
    Policy,
    Rule,
    merge_breaker,
)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_SUBJECTS = ("detector", "account", "campaign", "field")
_BREAKER_FIELDS = ("window_posts", "max_share", "min_posts", "recover_share")
#: Parameters each action takes: name -> (required, kind).
_ACTION_PARAMS: dict[str, dict[str, tuple[bool, str]]] = {
    "label": {"label": (True, "text")},
    "reduce_reach": {"factor": (False, "fraction")},
    "queue_review": {"priority": (True, "priority"), "propose": (False, "proposal"), "queue": (False, "text")},
    "rate_limit_account": {"posts_per_hour": (True, "positive_int"), "duration_s": (False, "positive_int")},
    "escalate_campaign": {"priority": (False, "priority")},
}
_RULE_KEYS = {"id", "description", "action", "when", "unless", "breaker"}
#: Review priorities: 1 is the most urgent, as in most ticket queues.
PRIORITIES = range(1, 6)
#: Measures that are probabilities or shares, so a bound outside [0, 1] is a mistake.
_FRACTION_MEASURES = {"probability", "machine_share", "lower", "upper"}
_NUMBER_MEASURES = {"score", "probability", "machine_share", "lower", "upper", "n_posts", "size", "text_length"}
_BOOL_MEASURES = {"flagged", "member"}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a policy file, and where."""

    line: int | None
    field: str
    message: str


class PolicyError(ValueError):
    """A policy file is not valid; ``problems`` lists every mistake with its line and field."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = sorted(problems, key=lambda p: (p.line is None, p.line or 0))
        super().__init__("\n".join(self.format(p) for p in self.problems))

    def format(self, problem: Problem) -> str:
        where = f"{self.source}:{problem.line}" if problem.line else self.source
        return f"{where}: {problem.field}: {problem.message}" if problem.field else f"{where}: {problem.message}"


# --------------------------------------------------------------------------------------------
# Where each key was written


_HEADER = re.compile(r"\s*(\[\[?)\s*([A-Za-z0-9_\-.\" ]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"\s*([A-Za-z0-9_\-]+(?:\s*\.\s*[A-Za-z0-9_\-]+)*)\s*=")

Path_ = tuple[str | int, ...]


def key_lines(text: str) -> dict[Path_, int]:
    """Map every key path to its 1-based line: ``("rules", 0, "when", 1, "at_least") -> 14``.

    Tables and array-of-table entries map too (``("rules", 2) -> line of its [[rules]]``), and so do
    elements of arrays (``("rules", 0, "when", 1)`` -> the line of the second condition's ``{``).
    Only what validation needs: it skips strings and comments correctly but trusts that tomllib
    has already accepted the text.
    """
    lines: dict[Path_, int] = {}
    counts: dict[Path_, int] = {}
    table: Path_ = ()
    # Containers open inside a value: [kind, path, next element index].
    stack: list[list[Any]] = []
    i, line, n = 0, 1, len(text)
    expect_key = True  # at a position where a key may start (line start at top level, after { or ,)
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
            i += 1
            if not stack:
                expect_key = True
            continue
        if ch in " \t\r":
            i += 1
            continue
        if ch == "#":
            while i < n and text[i] != "\n":
                i += 1
            continue
        top = stack[-1] if stack else None
        if top is None and expect_key and ch == "[":
            end = text.find("\n", i)
            end = n if end < 0 else end
            match = _HEADER.match(text[i:end])
            if match:
                parts = [p.strip().strip('"') for p in match.group(2).split(".")]
                path = (*_resolve(tuple(parts[:-1]), counts), parts[-1])
                if match.group(1) == "[[":
                    index = counts.get(path, 0)
                    counts[path] = index + 1
                    path = (*path, index)
                table = path
                lines.setdefault(table, line)
                i = end
                continue
        if (top is None or top[0] == "table") and expect_key:
            match = _KEY.match(text, i)
            if match:
                base = table if top is None else top[1]
                key = tuple(k.strip().strip('"') for k in match.group(1).split("."))
                path = (*base, *key)
                lines.setdefault(path, line)
                i = match.end()
                expect_key = False
                stack_value_path = path
                i = _skip_space(text, i)
                if i < n and text[i] in "[{":
                    stack.append(["array" if text[i] == "[" else "table", stack_value_path, 0])
                    expect_key = text[i] == "{"
                    i += 1
                continue
        if top is not None and top[0] == "array" and ch not in ",]":
            path = (*top[1], top[2])
            top[2] += 1
            lines.setdefault(path, line)
            if ch in "[{":
                stack.append(["array" if ch == "[" else "table", path, 0])
                expect_key = ch == "{"
                i += 1
                continue
        if ch in "\"'":
            i, line = _skip_string(text, i, line)
            continue
        if ch in "]}" and stack:
            stack.pop()
            i += 1
            continue
        if ch == ",":
            expect_key = bool(stack) and stack[-1][0] == "table"
            i += 1
            continue
        i += 1
    return lines


def _resolve(parts: Path_, counts: dict[Path_, int]) -> Path_:
    """``[rules.breaker]`` belongs to the latest ``[[rules]]``: insert the array indices."""
    out: Path_ = ()
    for part in parts:
        out = (*out, part)
        if out in counts and counts[out] > 0:
            out = (*out, counts[out] - 1)
    return out


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t":
        i += 1
    return i


def _skip_string(text: str, i: int, line: int) -> tuple[int, int]:
    """Skip a TOML string starting at ``i``; returns the index after it and the line it ends on."""
    quote = text[i]
    triple = text.startswith(quote * 3, i)
    delim = quote * 3 if triple else quote
    j = i + len(delim)
    while j < len(text):
        if quote == '"' and text[j] == "\\":
            j += 2
            continue
        if text.startswith(delim, j):
            j += len(delim)
            # A closing """ may be followed by up to two more quotes that belong to the string.
            while triple and j < len(text) and text[j] == quote:
                j += 1
            break
        if text[j] == "\n":
            line += 1
        j += 1
    return j, line


# --------------------------------------------------------------------------------------------
# Validation


class _Checker:
    """Collects problems with their lines while a policy is built."""

    def __init__(self, lines: dict[Path_, int]) -> None:
        self.lines = lines
        self.problems: list[Problem] = []

    def line(self, path: Path_) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None

    def add(self, path: Path_, message: str) -> None:
        self.problems.append(Problem(self.line(path), _dotted(path), message))

    def unknown_keys(self, table: Mapping[str, Any], known: set[str] | tuple[str, ...], path: Path_) -> None:
        for key in table:
            if key not in known:
                self.add((*path, key), f"unknown key; expected one of {', '.join(sorted(known))}")


def _dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Validate ``text`` as a policy file; raise :class:`PolicyError` listing every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        raise PolicyError(source, [Problem(int(match.group(1)) if match else None, "",
                                           f"not valid TOML: {exc}")]) from None
    check = _Checker(key_lines(text))
    check.unknown_keys(data, {"policy", "rules"}, ())
    head = data.get("policy")
    if not isinstance(head, dict):
        check.add(("policy",), "missing [policy] table with id and version")
        head = {}
    check.unknown_keys(head, {"id", "version", "description", "breaker"}, ("policy",))
    policy_id = _name(check, head, ("policy", "id"))
    version = head.get("version")
    if not isinstance(version, str) or not version.strip():
        check.add(("policy", "version"), 'required: a non-empty string such as "2024-06-01.1" (quote numbers)')
        version = ""
    description = head.get("description", "")
    if not isinstance(description, str):
        check.add(("policy", "description"), "must be a string")
    breaker = _breaker(check, head.get("breaker", {}), ("policy", "breaker"))

    raw_rules = data.get("rules", [])
    if not isinstance(raw_rules, list):
        check.add(("rules",), "must be an array of tables: write each rule under [[rules]]")
        raw_rules = []
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_rules):
        raw_id = raw.get("id") if isinstance(raw, dict) else None
        if isinstance(raw_id, str) and raw_id in seen:
            check.add(("rules", index, "id"), f"duplicate rule id {raw_id!r} (also rules[{seen[raw_id]}])")
        elif isinstance(raw_id, str):
            seen[raw_id] = index
        rule = _rule(check, raw, ("rules", index), breaker)
        if rule is not None:
            rules.append(rule)
    if check.problems:
        raise PolicyError(source, check.problems)
    return Policy(
        policy_id=policy_id or "",
        version=version.strip(),
        rules=tuple(rules),
        description=description if isinstance(description, str) else "",
        breaker=breaker,
        source=source,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
    )


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file; errors name the file, the line and the field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(str(path), [Problem(None, "", "file does not exist")]) from None
    except UnicodeDecodeError as exc:
        problem = Problem(None, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})")
        raise PolicyError(str(path), [problem]) from None
    return parse_policy(text, str(path))


def _name(check: _Checker, table: Mapping[str, Any], path: Path_) -> str | None:
    value = table.get(path[-1])
    if not isinstance(value, str) or not _NAME.match(value):
        check.add(path, f"required: letters, digits, '.', '_' or '-' (got {value!r})")
        return None
    return value


def _breaker(check: _Checker, raw: Any, path: Path_) -> dict[str, Any]:
    if not isinstance(raw, dict):
        check.add(path, "must be a table of " + ", ".join(_BREAKER_FIELDS))
        return {}
    check.unknown_keys(raw, _BREAKER_FIELDS, path)
    out: dict[str, Any] = {}
    for key in _BREAKER_FIELDS:
        if key not in raw:
            continue
        value = raw[key]
        if key in ("window_posts", "min_posts"):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                check.add((*path, key), f"must be a whole number of posts >= 1 (got {value!r})")
                continue
        elif not _is_number(value) or not 0.0 <= value <= 1.0:
            check.add((*path, key), f"must be a share between 0 and 1 (got {value!r})")
            continue
        out[key] = value
    if out:
        try:
            merge_breaker(BreakerSettings(), out)
        except ValueError as exc:
            check.add(path, str(exc))
    return out


def _rule(check: _Checker, raw: Any, path: Path_, policy_breaker: Mapping[str, Any]) -> Rule | None:
    if not isinstance(raw, dict):
        check.add(path, "each rule must be a table ([[rules]])")
        return None
    before = len(check.problems)
    action = raw.get("action")
    params_spec = _ACTION_PARAMS.get(action, {}) if isinstance(action, str) else {}
    # With an unusable action, any action's parameter is fine: the action is the mistake to report.
    every_param = {name for spec in _ACTION_PARAMS.values() for name in spec}
    check.unknown_keys(raw, _RULE_KEYS | (set(params_spec) if action in ACTIONS else every_param), path)
    rule_id = _name(check, raw, (*path, "id"))
    if not isinstance(action, str):
        check.add((*path, "action"), f"required: one of {', '.join(ACTIONS)}")
    elif action.lower() in NEVER_AUTOMATIC:
        check.add((*path, "action"),
                  f"{action!r} is never automatic: a rule may only queue it for a person, "
                  f'with action = "queue_review", priority = 1, propose = "{action.lower()}"')
    elif action not in ACTIONS:
        check.add((*path, "action"), f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
    params: dict[str, Any] = {}
    for name, (required, kind) in params_spec.items():
        if name not in raw:
            if required:
                check.add((*path, name), f"required for action {action!r} ({_KIND_HELP[kind]})")
            continue
        value = raw[name]
        problem = _param_problem(kind, value)
        if problem:
            check.add((*path, name), problem)
        else:
            params[name] = value.lower() if kind == "proposal" else value
    when = _conditions(check, raw.get("when"), (*path, "when"), required=True)
    unless = _conditions(check, raw.get("unless", []), (*path, "unless"), required=False)
    breaker = _breaker(check, raw.get("breaker", {}), (*path, "breaker"))
    description = raw.get("description", "")
    if not isinstance(description, str):
        check.add((*path, "description"), "must be a string")
    if breaker:
        try:
            merge_breaker(BreakerSettings(), policy_breaker, breaker)
        except ValueError as exc:
            check.add((*path, "breaker"), f"{exc} (after the policy's [policy.breaker])")
    if len(check.problems) > before or rule_id is None or not isinstance(action, str):
        return None
    return Rule(rule_id=rule_id, action=action, when=tuple(when), unless=tuple(unless), params=params,
                description=description, breaker=breaker, line=check.line(path))


_KIND_HELP = {
    "text": "a non-empty string",
    "fraction": "a number between 0 and 1 (exclusive)",
    "priority": "a whole number from 1 (most urgent) to 5",
    "proposal": "one of " + ", ".join(PROPOSALS),
    "positive_int": "a whole number >= 1",
}


def _param_problem(kind: str, value: Any) -> str | None:
    ok = {
        "text": isinstance(value, str) and bool(value.strip()),
        "fraction": _is_number(value) and 0.0 < value < 1.0,
        "priority": isinstance(value, int) and not isinstance(value, bool) and value in PRIORITIES,
        "proposal": isinstance(value, str) and value.lower() in PROPOSALS,
        "positive_int": isinstance(value, int) and not isinstance(value, bool) and value >= 1,
    }[kind]
    return None if ok else f"must be {_KIND_HELP[kind]} (got {value!r})"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _conditions(check: _Checker, raw: Any, path: Path_, *, required: bool) -> list[Condition]:
    if raw is None or raw == []:
        if required:
            check.add(path, 'required: a list of conditions, e.g. [ { detector = "aitext", threshold = "default" } ]')
        return []
    if not isinstance(raw, list):
        check.add(path, "must be a list of condition tables: [ { ... }, { ... } ]")
        return []
    out = []
    for index, item in enumerate(raw):
        cond = _condition(check, item, (*path, index))
        if cond is not None:
            out.append(cond)
    return out


def _condition(check: _Checker, raw: Any, path: Path_) -> Condition | None:
    if not isinstance(raw, dict):
        check.add(path, "each condition must be a table such as { field = \"lang\", in = [\"en\"] }")
        return None
    # "detector" is also how an account condition names its detector, so it is the subject only alone.
    subjects = [s for s in ("account", "campaign", "field") if s in raw] or (["detector"] if "detector" in raw else [])
    if len(subjects) != 1:
        check.add(path, f"name exactly one subject of {', '.join(_SUBJECTS)} (got {subjects or 'none'})")
        return None
    subject = subjects[0]
    line = check.line(path)
    ops = [k for k in raw if k in OPERATORS]
    allowed = {subject, *OPERATORS}
    if subject == "detector":
        allowed |= {"measure", "threshold"}
    if subject == "account":
        allowed |= {"detector"}
    check.unknown_keys(raw, allowed, path)

    if subject == "detector":
        name = raw["detector"]
        if not isinstance(name, str) or not _NAME.match(name):
            check.add((*path, "detector"), f"must be a detector name such as \"aitext\" (got {name!r})")
            return None
        if "threshold" in raw:
            if "measure" in raw or ops:
                check.add((*path, "threshold"), "a threshold condition takes no measure or operator: "
                          "it holds when the score reaches the detector's named threshold")
                return None
            if not isinstance(raw["threshold"], str) or not raw["threshold"]:
                check.add((*path, "threshold"), "must be a threshold name such as \"default\" or \"fpr_1pct\"")
                return None
            return Condition("detector", name, "threshold", "crosses", raw["threshold"], line)
        measure = raw.get("measure")
        if measure not in DETECTOR_MEASURES:
            check.add((*path, "measure"), f"required: one of {', '.join(DETECTOR_MEASURES)} "
                      "(or give threshold = \"NAME\" instead)")
            return None
    elif subject == "account":
        measure, name = raw["account"], raw.get("detector")
        if measure not in ACCOUNT_MEASURES:
            check.add((*path, "account"), f"must be one of {', '.join(ACCOUNT_MEASURES)} (got {measure!r})")
            return None
        if not isinstance(name, str) or not _NAME.match(name):
            check.add((*path, "detector"), "required: the detector whose probabilities the account aggregate "
                      "averages, e.g. detector = \"aitext\"")
            return None
    elif subject == "campaign":
        measure, name = raw["campaign"], ""
        if measure not in CAMPAIGN_MEASURES:
            check.add((*path, "campaign"), f"must be one of {', '.join(CAMPAIGN_MEASURES)} (got {measure!r})")
            return None
    else:
        measure, name = raw["field"], ""
        if measure not in POST_FIELDS:
            check.add((*path, "field"), f"unknown post field {measure!r}; known: {', '.join(POST_FIELDS)}")
            return None
        subject = "post"

    if len(ops) != 1:
        check.add(path, f"give exactly one operator of {', '.join(OPERATORS)} (got {ops or 'none'})")
        return None
    op = ops[0]
    value = raw[op]
    problem = _operator_problem(measure, op, value)
    if problem:
        check.add((*path, op), problem)
        return None
    return Condition(subject, name, measure, op, tuple(value) if op in SET_OPS else value, line)


def _operator_problem(measure: str, op: str, value: Any) -> str | None:
    """Why ``op = value`` cannot apply to ``measure``, or None when it can."""
    kind = (
        "number" if measure in _NUMBER_MEASURES
        else "bool" if measure in _BOOL_MEASURES
        else POST_FIELDS.get(measure, "text")
    )  # fmt: skip
    if op == "is_null":
        return None if isinstance(value, bool) else "must be true or false"
    if op in NUMERIC_OPS:
        if kind != "number":
            return f"{op} compares numbers; {measure} is a {kind}"
        if not _is_number(value):
            return f"must be a number (got {value!r})"
        if measure in _FRACTION_MEASURES and not 0.0 <= value <= 1.0:
            return f"{measure} is between 0 and 1; {value!r} can never be compared meaningfully"
        return None
    if op in EQUALITY_OPS:
        if kind == "bool":
            return None if isinstance(value, bool) else f"{measure} is true or false (got {value!r})"
        if kind == "number":
            return None if _is_number(value) else f"must be a number (got {value!r})"
        if kind == "list":
            return f"{op} does not apply to the list field {measure}; use contains"
        return None if isinstance(value, str) else f"must be a string (got {value!r})"
    if op in SET_OPS:
        if kind not in ("text",):
            return f"{op} applies to text fields; {measure} is a {kind}"
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            return f"must be a non-empty list of strings, e.g. [\"en\", \"de\"] (got {value!r})"
        return None
    if op in TEXT_OPS:
        if kind not in ("text", "list"):
            return f"{op} applies to text and list fields; {measure} is a {kind}"
        if not isinstance(value, str) or not value:
            return f"must be a non-empty string (got {value!r})"
        if op == "matches":
            try:
                pl.select(pl.lit("").str.contains(value))
            except pl.exceptions.ComputeError as exc:
                return f"not a valid regular expression: {' '.join(str(exc).split())}"
        return None
    return f"unknown operator {op!r}"  # pragma: no cover - ops come from OPERATORS
