"""Time slices: how the incremental state, its LSH indexes and the edge ledger forget old posts.

Each of them keeps its rows in slices of event time (``b = t_us // width``) held in a dict, so that
eviction drops whole slices without touching the rows of the ones kept.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any


def drop_slices(table: MutableMapping[int, Any], width_us: int, limit_us: int) -> int:
    """Drop the slices of ``table`` whose time range ends at or before ``limit_us``; returns how many."""
    old = [b for b in table if (b + 1) * width_us <= limit_us]
    for b in old:
        del table[b]
    return len(old)
