"""Waiting out transient failures of the broker or the store, for every long-running stage.

Every stage (the worker, the coordinator, rekey) commits offsets only after its effects; between
effect and commit a broker or database that is briefly away must be waited for, not crashed on,
and a permanent error must surface at once instead of looping forever.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from kafka.errors import KafkaError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, StatementError

T = TypeVar("T")

log = logging.getLogger("chorus.retry")


class StopRequested(Exception):
    """Raised inside a retry loop when the stage was asked to stop while waiting."""


def is_transient(exc: BaseException) -> bool:
    """Failures worth waiting out: the broker or the database is (briefly) unreachable or busy.

    Anything else (a constraint the data violates, a value the database cannot store, a message
    the broker refuses for its size or for authorisation) would fail the same way forever, so it
    must not be retried in a loop.
    """
    if isinstance(exc, KafkaError):
        return bool(getattr(exc, "retriable", False))
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def retry_transient(
    what: str,
    action: Callable[[], T],
    *,
    stop: threading.Event,
    initial_s: float,
    max_s: float,
    name: str,
    on_retry: Callable[[], None] = lambda: None,
    give_up_on: tuple[type[BaseException], ...] = (),
) -> T:
    """Run ``action`` until it succeeds, doubling the wait after each transient failure.

    ``give_up_on`` errors and permanent ones are raised at once; ``stop`` being set while waiting
    raises :class:`StopRequested` (the caller has not committed, so nothing is lost).
    """
    delay = initial_s
    while True:
        try:
            return action()
        except give_up_on:
            raise
        except (KafkaError, StatementError) as exc:
            if not is_transient(exc):
                raise
            on_retry()
            log.warning("%s: %s failed (%s: %s); retrying in %.1f s", name, what, type(exc).__name__, exc, delay)
            if stop.wait(delay):
                raise StopRequested(what) from exc
            delay = min(delay * 2, max_s)


def _no_count() -> None:
    return None


@dataclass(frozen=True)
class Retrier:
    """:func:`retry_transient` with one stage's stop event, back-off and retry counter bound in.

    A stage hands the same instance to its store writes and to the shared consume loop
    (:mod:`stream.kafka.loop`), so every wait, whoever hits it, honours the same stop request and
    shows up in the same ``retries`` count.
    """

    stop: threading.Event
    initial_s: float
    max_s: float
    name: str
    on_retry: Callable[[], None] = _no_count

    def __call__(
        self, what: str, action: Callable[[], T], *, give_up_on: tuple[type[BaseException], ...] = ()
    ) -> T:
        return retry_transient(
            what, action, stop=self.stop, initial_s=self.initial_s, max_s=self.max_s, name=self.name,
            on_retry=self.on_retry, give_up_on=give_up_on,
        )
