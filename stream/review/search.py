"""Quick search: what a post id, flag id, account id or piece of text typed on any page points at.

The console's frame has one search box (``/`` focuses it) that opens what was typed: a flag's post
with that case chosen, a post, an account's record, or else the flag queue searched for the text.
The ids are looked up with the readers the pages use (:func:`~stream.review.posts.post_of_flag`,
:func:`~stream.review.posts.posts_by_id`, :func:`~stream.review.account_page.account_counts`) and
the text with the queue's own search (:func:`~stream.review.queues.search_condition`), so the box
finds exactly what the queue's search box finds.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from stream.review.account_page import account_counts
from stream.review.posts import post_of_flag, posts_by_id
from stream.review.queues import search_condition
from stream.store.database import Store
from stream.store.tables import TABLES

flags_t = TABLES["flags"]

#: What a quick search can open, in the order ids are tried (a flag id names one case on its post).
KINDS: tuple[str, ...] = ("flag", "post", "account", "text")


@dataclass(frozen=True)
class Found:
    """Where a quick search leads.

    ``kind``: ``"flag"`` (open the flag's post on that case), ``"post"``, ``"account"``, or
    ``"text"`` (search the flag queue); ``target``: the id as stored, or the text to search for;
    ``flags``: for ``"text"``, how many flags in any state the queue's search finds (0: nothing).
    """

    kind: str
    target: str
    flags: int = 0


def find(store: Store, text: str) -> Found | None:
    """What ``text`` (surrounding spaces ignored) names: a flag id, a post id, an account id, tried
    in that order and matched exactly; otherwise the flags the queue's search finds for it. None for
    a blank search."""
    query = text.strip()
    if not query:
        return None
    if post_of_flag(store, query) is not None:
        return Found("flag", query)
    if posts_by_id(store, [query]):
        return Found("post", query)
    if account_counts(store, query)["known"]:
        return Found("account", query)
    count = sa.select(sa.func.count()).select_from(flags_t).where(search_condition(query))
    with store.engine.connect() as conn:
        return Found("text", query, int(conn.execute(count).scalar_one()))
