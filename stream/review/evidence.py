"""Reading a detector's evidence for display: per-token surprisal in either of its two shapes.

Pure (no store): the post view calls it on the ``evidence`` JSON of a detector result. Malformed
evidence is "nothing to show", never an error, because detectors' formats evolve independently
of the console.

**AI-text evidence**: ``{"tokens": [str, ...], "surprisal": [float | null, ...]}`` (the whole
post, in order) is highlighted in place; ``{"tokens": [{"token", "position", "surprisal"}, ...]}``
(top-k) is listed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from stream.store.reading import json_object


def token_surprisal(evidence: Any) -> tuple[str, list[tuple[str, float | None]]] | None:
    """Per-token surprisal from a detector's evidence, if it has any.

    Returns ``("sequence", pairs)`` when ``tokens`` and ``surprisal`` are parallel lists covering
    the post (they can be highlighted in place), ``("top", pairs)`` for a list of
    ``{"token", "surprisal"}`` objects (a top-k list, shown as a table), or None. Non-finite or
    missing values become None; malformed evidence is None, never an error.
    """
    evidence = json_object(evidence) if not isinstance(evidence, Mapping) else evidence
    tokens = evidence.get("tokens")
    if not isinstance(tokens, list) or not tokens:
        return None
    if all(isinstance(t, Mapping) for t in tokens):
        ordered = sorted(tokens, key=lambda t: (t.get("position") is None, t.get("position") or 0))
        return "top", [(str(t.get("token", "")), _finite(t.get("surprisal"))) for t in ordered]
    surprisal = evidence.get("surprisal")
    if not isinstance(surprisal, list) or len(surprisal) != len(tokens):
        return None
    return "sequence", [(str(t), _finite(s)) for t, s in zip(tokens, surprisal, strict=True)]


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
