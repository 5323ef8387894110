"""Policy files: TOML in, a validated :class:`detectors.policy.Policy` out, or errors that name the place.

A trust & safety analyst edits these files, so every error says which file, which line and which
key is wrong and what would be right, and all errors of a file are reported at once (except a TOML
syntax error: the parser stops there, so it comes alone).

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

How a file is checked:

1. :mod:`tomllib` parses it; a syntax error carries its line and column.
2. Every table is checked against its schema, the msgspec Structs below (:class:`_PolicyTable`,
   :class:`_RuleTable`, :class:`_BreakerTable` and one per condition subject): unknown keys,
   missing keys, wrong types and values out of range, each message built from the key's
   ``Meta(description=...)``. :func:`_table` converts key by key with :func:`msgspec.convert`,
   which on a whole table would stop at the first mistake.
3. What a schema cannot say is checked in code: the actions that are never automatic, which
   parameters each action takes, whether an operator suits what the condition measures, regular
   expressions, duplicate rule ids and breaker settings that contradict each other.

tomllib keeps no positions, so :func:`key_lines` asks it, statement by statement, where each key
was written; that is what puts a line on errors of meaning (step 2 and 3) and on
:attr:`Rule.line <detectors.policy.Rule.line>` / :attr:`Condition.line <detectors.policy.Condition.line>`.
"""

from __future__ import annotations

import functools
import hashlib
import re
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import polars as pl
from msgspec import Meta

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

Path_ = tuple[str | int, ...]


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
# The schema: one Struct per kind of table. A key's type says what it may hold; its description
# completes "must be ..." and "required: ..." in the error messages.

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"


def _name(description: str) -> Any:
    return Annotated[str, Meta(pattern=_NAME, description=description)]


def _one_of(names: typing.Iterable[str], what: str = "one of") -> Any:
    names = tuple(names)
    return Annotated[Literal[names], Meta(description=f"{what} {', '.join(names)}")]


Name = _name("a name of letters, digits, '.', '_' and '-', starting with a letter or digit")
DetectorName = _name('a detector name such as "aitext"')
AccountDetector = _name('the detector whose probabilities the account aggregate averages, e.g. detector = "aitext"')
Version = Annotated[str, Meta(pattern=r"\S", description='a non-empty string such as "2024-06-01.1" (quote numbers)')]
Text = Annotated[str, Meta(pattern=r"\S", description="a non-empty string")]
AnyText = Annotated[str, Meta(description="a string")]
ThresholdName = Annotated[str, Meta(min_length=1, description='a threshold name such as "default" or "fpr_1pct"')]
ActionName = Annotated[str, Meta(description="one of " + ", ".join(ACTIONS))]
Proposal = Annotated[str, Meta(description="one of " + ", ".join(PROPOSALS))]
DetectorMeasure = _one_of(DETECTOR_MEASURES)
AccountMeasure = _one_of(ACCOUNT_MEASURES)
CampaignMeasure = _one_of(CAMPAIGN_MEASURES)
PostField = _one_of(POST_FIELDS, "a post field:")
Posts = Annotated[int, Meta(ge=1, description="a whole number >= 1")]
#: Review priorities: 1 is the most urgent, as in most ticket queues.
Priority = Annotated[int, Meta(ge=1, le=5, description="a whole number from 1 (most urgent) to 5")]
Share = Annotated[float, Meta(ge=0, le=1, description="a share between 0 and 1")]
Fraction = Annotated[float, Meta(gt=0, lt=1, description="a number between 0 and 1 (exclusive)")]
Number = Annotated[int | float, Meta(description="a number")]
Scalar = Annotated[bool | int | float | str, Meta(description="true, false, a number or a string")]
Flag = Annotated[bool, Meta(description="true or false")]
Strings = Annotated[list[str], Meta(min_length=1, description='a non-empty list of strings, e.g. ["en", "de"]')]
_CONDITIONS_EXAMPLE = '[ { detector = "aitext", threshold = "default" } ]'
Conditions = Annotated[
    list[dict[str, Any]], Meta(description=f"a list of condition tables, e.g. {_CONDITIONS_EXAMPLE}")
]
SomeConditions = Annotated[
    list[dict[str, Any]],
    Meta(min_length=1, description=f"a non-empty list of condition tables, e.g. {_CONDITIONS_EXAMPLE}"),
]
Breaker = Annotated[dict[str, Any], Meta(description="a table of " + ", ".join(BreakerSettings.__dataclass_fields__))]


class _Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A TOML table with these keys and no others.

    ``msgspec.convert(table, schema)`` enforces all of it but stops at the first mistake; :func:`_table`
    applies the same schema key by key to report every mistake.
    """


class _Document(_Strict):
    policy: Annotated[dict[str, Any], Meta(description="a [policy] table with id and version")]
    rules: Annotated[list[dict[str, Any]], Meta(description="tables, each under its own [[rules]] header")] = []


class _BreakerTable(_Strict):
    """Circuit-breaker overrides (see :class:`detectors.policy.BreakerSettings`)."""

    window_posts: Posts | None = None
    max_share: Share | None = None
    min_posts: Posts | None = None
    recover_share: Share | None = None


class _PolicyTable(_Strict):
    id: Name
    version: Version
    description: AnyText = ""
    breaker: Breaker = {}


class _RuleTable(_Strict):
    id: Name
    action: ActionName
    when: SomeConditions
    unless: Conditions = []
    description: AnyText = ""
    breaker: Breaker = {}
    # The actions' parameters; which action takes which is _ACTION_PARAMS.
    label: Text | None = None
    factor: Fraction | None = None
    priority: Priority | None = None
    propose: Proposal | None = None
    queue: Text | None = None
    posts_per_hour: Posts | None = None
    duration_s: Posts | None = None


#: Parameters each action takes: name -> required.
_ACTION_PARAMS: dict[str, dict[str, bool]] = {
    "label": {"label": True},
    "reduce_reach": {"factor": False},
    "queue_review": {"priority": True, "propose": False, "queue": False},
    "rate_limit_account": {"posts_per_hour": True, "duration_s": False},
    "escalate_campaign": {"priority": False},
}
_PARAMETERS = tuple(dict.fromkeys(name for spec in _ACTION_PARAMS.values() for name in spec))


class _Operators(_Strict):
    """Every condition gives exactly one of these."""

    at_least: Number | None = None
    above: Number | None = None
    at_most: Number | None = None
    below: Number | None = None
    equals: Scalar | None = None
    not_equals: Scalar | None = None
    in_: Strings | None = msgspec.field(default=None, name="in")
    not_in: Strings | None = None
    contains: Text | None = None
    matches: Text | None = None
    is_null: Flag | None = None


class _DetectorCondition(_Operators, kw_only=True):
    detector: DetectorName
    measure: DetectorMeasure | None = None
    threshold: ThresholdName | None = None


class _AccountCondition(_Operators, kw_only=True):
    account: AccountMeasure
    detector: AccountDetector


class _CampaignCondition(_Operators, kw_only=True):
    campaign: CampaignMeasure


class _FieldCondition(_Operators, kw_only=True):
    field: PostField


_SUBJECTS: dict[str, type[_Strict]] = {
    "detector": _DetectorCondition,
    "account": _AccountCondition,
    "campaign": _CampaignCondition,
    "field": _FieldCondition,
}
#: Measures that are probabilities or shares, so a bound outside [0, 1] is a mistake.
_FRACTION_MEASURES = {"probability", "machine_share", "lower", "upper"}
_NUMBER_MEASURES = {"score", "probability", "machine_share", "lower", "upper", "n_posts", "size", "text_length"}
_BOOL_MEASURES = {"flagged", "member"}


# --------------------------------------------------------------------------------------------
# Where each key was written


def key_lines(text: str) -> dict[Path_, int]:
    """Map every key path to its 1-based line: ``("rules", 0, "when", 1, "at_least") -> 14``.

    tomllib keeps no positions, so this asks it where things are instead of lexing TOML again. A
    document is a run of statements (a ``[table]`` header or a ``key = value``), each ending at a line
    end outside any string or array, so the shortest run of lines tomllib accepts on its own is one
    statement; what it defines maps to the run's first line. ``[[rules]]`` entries map to their
    header (``("rules", 2)``). The elements of an array written over several lines map to the line
    each ends on: the line after which the lines so far, closed with ``]``, parse with one element
    more; keys inside an element map to the element's line. ``text`` must be valid TOML.
    """
    lines = text.split("\n")
    found: dict[Path_, int] = {}
    counts: dict[Path_, int] = {}  # entries so far of each array of tables
    table: Path_ = ()
    start = 0
    while start < len(lines):
        end, data = _statement(lines, start)
        if data and lines[start].lstrip().startswith("["):
            table = _header_path(data, counts)
            found.setdefault(table, start + 1)
        elif data:
            array = _only_array(data) if end - start > 1 else None
            if array is not None:
                _element_lines(found, lines[start:end], (*table, *array[0]), array[1], start)
            for key, value in data.items():
                _map(found, (*table, key), value, start + 1)
        start = end
    return found


def _statement(lines: list[str], start: int) -> tuple[int, dict[str, Any]]:
    """The end and the content of the shortest run of lines from ``start`` that parses."""
    for end in range(start + 1, len(lines) + 1):
        try:
            return end, tomllib.loads("\n".join(lines[start:end]) + "\n")  # "\n": a "\r" ends no line
        except tomllib.TOMLDecodeError:
            continue
    raise ValueError(f"not valid TOML from line {start + 1}")


def _header_path(header: dict[str, Any], counts: dict[Path_, int]) -> Path_:
    """``[[rules]]`` opens the next entry; ``[rules.breaker]`` belongs to the latest one."""
    path: Path_ = ()
    node: Any = header
    while True:
        ((key, node),) = node.items()
        path = (*path, key)
        if isinstance(node, list):
            counts[path] = counts.get(path, 0) + 1
            return (*path, counts[path] - 1)
        if not node:
            return path
        if path in counts:
            path = (*path, counts[path] - 1)


def _only_array(data: Any) -> tuple[Path_, list[Any]] | None:
    """``(key path, array)`` when the statement is ``key = [ ... ]``."""
    path: Path_ = ()
    while isinstance(data, dict) and len(data) == 1:
        ((key, data),) = data.items()
        path = (*path, key)
    return (path, data) if isinstance(data, list) else None


def _element_lines(found: dict[Path_, int], lines: list[str], path: Path_, items: list[Any], start: int) -> None:
    done = 0
    for stop in range(1, len(lines)):
        try:
            partial = _only_array(tomllib.loads("\n".join(lines[:stop]) + "\n]"))
        except tomllib.TOMLDecodeError:
            continue
        for index in range(done, len(partial[1]) if partial else 0):
            _map(found, (*path, index), items[index], start + stop)
            done = index + 1
    for index in range(done, len(items)):
        _map(found, (*path, index), items[index], start + len(lines))


def _map(found: dict[Path_, int], path: Path_, value: Any, line: int) -> None:
    found.setdefault(path, line)
    if isinstance(value, dict):
        for key, item in value.items():
            _map(found, (*path, key), item, line)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _map(found, (*path, index), item, line)


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


def _dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _description(schema_type: Any) -> str:
    """The ``Meta(description=...)`` of a key's type (also through ``X | None``)."""
    for tp in (schema_type, *typing.get_args(schema_type)):
        for meta in reversed(getattr(tp, "__metadata__", ())):
            if isinstance(meta, Meta) and meta.description:
                return meta.description
    return ""


@functools.cache
def _fields(schema: type[_Strict]) -> dict[str, msgspec.structs.FieldInfo]:
    return {f.encode_name: f for f in msgspec.structs.fields(schema)}


def _table(check: _Checker, raw: dict[str, Any], schema: type[_Strict], path: Path_) -> dict[str, Any]:
    """The keys of ``raw`` that ``schema`` accepts, converted, plus its defaults for keys not given.

    Reports every unknown key, every missing required key and every value of the wrong type or out
    of range. The result lacks the keys that were reported, so later checks skip them.
    """
    fields = _fields(schema)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        field = fields.get(key)
        if field is None:
            check.add((*path, key), f"unknown key; expected one of {', '.join(sorted(fields))}")
            continue
        try:
            values[key] = msgspec.convert(value, field.type)
        except msgspec.ValidationError:
            check.add((*path, key), f"must be {_description(field.type)} (got {value!r})")
    for key, field in fields.items():
        if key in raw:
            continue
        if field.required:
            check.add((*path, key), f"required: {_description(field.type)}")
        else:
            values[key] = field.default if field.default_factory is msgspec.NODEFAULT else field.default_factory()
    return values


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Validate ``text`` as a policy file; raise :class:`PolicyError` listing every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"at line (\d+)", str(exc))
        line = getattr(exc, "lineno", None) or (int(match.group(1)) if match else None)
        raise PolicyError(source, [Problem(line, "", f"not valid TOML: {exc}")]) from None
    check = _Checker(key_lines(text))
    document = _table(check, data, _Document, ())
    head = _table(check, document["policy"], _PolicyTable, ("policy",)) if "policy" in document else {}
    breaker = _breaker(check, head["breaker"], ("policy", "breaker")) if "breaker" in head else {}
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(document.get("rules", [])):
        raw_id = raw.get("id")
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
        policy_id=head["id"],
        version=head["version"].strip(),
        rules=tuple(rules),
        description=head["description"],
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


def _breaker(check: _Checker, raw: dict[str, Any], path: Path_, *below: dict[str, Any]) -> dict[str, Any]:
    """The overrides a breaker table sets, checked alone and on top of the ``below`` layers."""
    overrides = {k: v for k, v in _table(check, raw, _BreakerTable, path).items() if v is not None}
    if overrides:
        try:
            merge_breaker(BreakerSettings(), *below, overrides)
        except ValueError as exc:
            check.add(path, f"{exc} (after the policy's [policy.breaker])" if below else str(exc))
    return overrides


def _rule(check: _Checker, raw: dict[str, Any], path: Path_, policy_breaker: dict[str, Any]) -> Rule | None:
    before = len(check.problems)
    action = raw.get("action")
    # With an unusable action, any action's parameter is fine: the action is the mistake to report.
    takes = _ACTION_PARAMS.get(action) if isinstance(action, str) else None
    if takes is not None:
        for name in (n for n in _PARAMETERS if n in raw and n not in takes):
            check.add((*path, name), f"action {action!r} takes no {name}; it takes {', '.join(takes)}")
        raw = {key: value for key, value in raw.items() if key in takes or key not in _PARAMETERS}
    values = _table(check, raw, _RuleTable, path)
    if not isinstance(action, str):
        pass  # missing or not a string: reported by _table
    elif action.lower() in NEVER_AUTOMATIC:
        check.add(
            (*path, "action"),
            f"{action!r} is never automatic: a rule may only queue it for a person, "
            f'with action = "queue_review", priority = 1, propose = "{action.lower()}"',
        )
    elif action not in ACTIONS:
        check.add((*path, "action"), f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
    for name, required in (takes or {}).items():
        if required and name not in raw:
            check.add((*path, name), f"required for action {action!r} ({_description(_fields(_RuleTable)[name].type)})")
    params = {name: values[name] for name in takes or () if name in raw and name in values}
    if "propose" in params:
        params["propose"] = params["propose"].lower()
        if params["propose"] not in PROPOSALS:
            check.add((*path, "propose"), f"must be one of {', '.join(PROPOSALS)} (got {raw['propose']!r})")
    when = _conditions(check, values.get("when", []), (*path, "when"))
    unless = _conditions(check, values.get("unless", []), (*path, "unless"))
    breaker = _breaker(check, values["breaker"], (*path, "breaker"), policy_breaker) if "breaker" in values else {}
    if len(check.problems) > before:
        return None
    return Rule(
        rule_id=values["id"],
        action=values["action"],
        when=tuple(when),
        unless=tuple(unless),
        params=params,
        description=values["description"],
        breaker=breaker,
        line=check.line(path),
    )


def _conditions(check: _Checker, raw: list[dict[str, Any]], path: Path_) -> list[Condition]:
    conditions = (_condition(check, item, (*path, index)) for index, item in enumerate(raw))
    return [c for c in conditions if c is not None]


def _condition(check: _Checker, raw: dict[str, Any], path: Path_) -> Condition | None:
    # "detector" is also how an account condition names its detector, so it is the subject only alone.
    subjects = [s for s in ("account", "campaign", "field") if s in raw] or (["detector"] if "detector" in raw else [])
    if len(subjects) != 1:
        check.add(path, f"name exactly one subject of {', '.join(_SUBJECTS)} (got {subjects or 'none'})")
        return None
    subject = subjects[0]
    before = len(check.problems)
    values = _table(check, raw, _SUBJECTS[subject], path)
    if len(check.problems) > before:
        return None
    ops = [k for k in raw if k in OPERATORS]
    line = check.line(path)
    if subject == "detector":
        name, measure = values["detector"], values["measure"]
        if values["threshold"] is not None:
            if measure is not None or ops:
                check.add(
                    (*path, "threshold"),
                    "a threshold condition takes no measure or operator: "
                    "it holds when the score reaches the detector's named threshold",
                )
                return None
            return Condition("detector", name, "threshold", "crosses", values["threshold"], line)
        if measure is None:
            check.add(
                (*path, "measure"),
                f'required: one of {", ".join(DETECTOR_MEASURES)} (or give threshold = "NAME" instead)',
            )
            return None
    elif subject == "account":
        name, measure = values["detector"], values["account"]
    elif subject == "campaign":
        name, measure = "", values["campaign"]
    else:
        name, measure, subject = "", values["field"], "post"
    if len(ops) != 1:
        check.add(path, f"give exactly one operator of {', '.join(OPERATORS)} (got {ops or 'none'})")
        return None
    op = ops[0]
    value = values[op]
    problem = _operator_problem(measure, op, value)
    if problem:
        check.add((*path, op), problem)
        return None
    return Condition(subject, name, measure, op, tuple(value) if op in SET_OPS else value, line)


_KIND_WORDS = {"bool": "true or false", "number": "a number", "text": "a string"}


def _operator_problem(measure: str, op: str, value: Any) -> str | None:
    """Why ``op = value`` cannot apply to ``measure``, or None when it can (the schema has checked
    that the value suits the operator: a number for at_least, a list of strings for in, ...)."""
    kind = (
        "number" if measure in _NUMBER_MEASURES
        else "bool" if measure in _BOOL_MEASURES
        else POST_FIELDS.get(measure, "text")
    )  # fmt: skip
    if op in NUMERIC_OPS:
        if kind != "number":
            return f"{op} compares numbers; {measure} is a {kind}"
        if measure in _FRACTION_MEASURES and not 0.0 <= value <= 1.0:
            return f"{measure} is between 0 and 1; {value!r} can never be compared meaningfully"
    elif op in EQUALITY_OPS:
        if kind == "list":
            return f"{op} does not apply to the list field {measure}; use contains"
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        fits = {"bool": isinstance(value, bool), "number": is_number, "text": isinstance(value, str)}[kind]
        if not fits:
            return f"{measure} is {_KIND_WORDS[kind]} (got {value!r})"
    elif op in SET_OPS and kind != "text":
        return f"{op} applies to text fields; {measure} is a {kind}"
    elif op in TEXT_OPS and kind not in ("text", "list"):
        return f"{op} applies to text and list fields; {measure} is a {kind}"
    elif op == "matches":
        try:
            pl.select(pl.lit("").str.contains(value))
        except pl.exceptions.ComputeError as exc:
            return f"not a valid regular expression: {' '.join(str(exc).split())}"
    return None
