"""The edges topic of the scale-out path: what coordination workers send to the one graph stage.

``chorus coordinator --input actions --emit-edges`` (M processes, one consumer group over
``chorus.posts.by-object``) runs no graph stage: after each micro-batch it sends what its
:class:`~detectors.coordination.incremental.CoActionState` changed to the edges topic
(``coordinator.edges_topic``, default ``chorus.coordination.edges``):

* the per-object match rows that are new or better (``CoActionDelta.object_matches``: per post,
  other account and object, that account's nearest post on the object), and
* the accepted actions without their objects (``CoActionDelta.actions``), which the graph stage
  needs for account activity (the graph's normalisation) and campaign scores.

``chorus graph-stage`` (one process, ``input = "edges"``) keeps them in an
:class:`~detectors.coordination.incremental.ObjectMatchLedger` over the horizon and runs the
coordinator's checkpoint over it: graph stage, store, flags, commit. Everything it receives is
idempotent (best row per object, each action once), so at-least-once delivery from the workers,
a worker's rebuild after a restart or a rebalance, and the graph stage's own rebuild change
nothing. Each worker commits the by-object topic as the coordinator does (its horizon start,
after flushing what it sent); the graph stage commits the edges topic the same way.

One message carries up to :data:`ROWS_PER_MESSAGE` rows of each kind, as columns (JSON lists),
with ``schema = "chorus.coaction_rows/1"``; key = the sending worker's id.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import polars as pl

from detectors.coordination.incremental import ACTIVITY_ROW_SCHEMA, OBJECT_MATCH_SCHEMA

EDGES_MESSAGE_SCHEMA = "chorus.coaction_rows/1"
#: Rows of each kind per message: about 160 bytes a row, so messages stay well under Kafka's 1 MB.
ROWS_PER_MESSAGE = 3_000


class _MatchColumns(msgspec.Struct):
    network: list[str]
    post_id: list[str]
    account_id: list[str]
    t_us: list[int]
    match_post_id: list[str]
    match_account_id: list[str]
    match_t_us: list[int]
    kh: list[int]


class _ActionColumns(msgspec.Struct):
    network: list[str]
    post_id: list[str]
    account_id: list[str]
    t_us: list[int]


class CoactionRowsV1(msgspec.Struct, forbid_unknown_fields=False):
    """One message on the edges topic."""

    schema: str
    source: str
    matches: _MatchColumns
    actions: _ActionColumns


_DECODER = msgspec.json.Decoder(CoactionRowsV1)


def encode_edges(
    object_matches: pl.DataFrame, actions: pl.DataFrame, *, source: str, rows_per_message: int = ROWS_PER_MESSAGE
) -> list[bytes]:
    """Message values for one micro-batch's changes (none when nothing changed)."""
    matches = object_matches.select(list(OBJECT_MATCH_SCHEMA))
    acts = actions.select(list(ACTIVITY_ROW_SCHEMA))
    encoder = msgspec.json.Encoder()
    values = []
    for start in range(0, max(matches.height, acts.height), rows_per_message):
        values.append(
            encoder.encode(
                {
                    "schema": EDGES_MESSAGE_SCHEMA,
                    "source": source,
                    "matches": matches.slice(start, rows_per_message).to_dict(as_series=False),
                    "actions": acts.slice(start, rows_per_message).to_dict(as_series=False),
                }
            )
        )
    return values


def decode_edges(
    values: Sequence[bytes | None],
) -> tuple[pl.DataFrame, pl.DataFrame, list[int | None], list[int]]:
    """``(object matches, actions, newest t_us per good message, indexes of bad messages)``.

    A message that is not ``chorus.coaction_rows/1``, or whose columns differ in length, is bad
    (skipped and counted by the caller, like a malformed post)."""
    matches: list[pl.DataFrame] = []
    actions: list[pl.DataFrame] = []
    newest: list[int | None] = []
    bad: list[int] = []
    for i, value in enumerate(values):
        try:
            message = _DECODER.decode(value or b"")
            if message.schema != EDGES_MESSAGE_SCHEMA:
                raise ValueError(message.schema)
            m = pl.DataFrame(msgspec.structs.asdict(message.matches), schema=OBJECT_MATCH_SCHEMA)
            a = pl.DataFrame(msgspec.structs.asdict(message.actions), schema=ACTIVITY_ROW_SCHEMA)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError, pl.exceptions.PolarsError, OverflowError):
            bad.append(i)
            continue
        matches.append(m)
        actions.append(a)
        times = [t for t in (m.get_column("t_us").max(), a.get_column("t_us").max()) if t is not None]
        newest.append(int(max(times)) if times else None)  # type: ignore[call-overload]
    return (
        pl.concat(matches) if matches else pl.DataFrame(schema=OBJECT_MATCH_SCHEMA),
        pl.concat(actions) if actions else pl.DataFrame(schema=ACTIVITY_ROW_SCHEMA),
        newest,
        bad,
    )
