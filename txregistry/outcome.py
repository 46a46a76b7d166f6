"""
One Deferred's outcome, awaited by any number of parties: each gets a
Deferred of its own, so that one cancelling its wait (a client that left)
cancels nothing for the others.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

T = TypeVar("T")


class Outcome(Generic[T]):
    """The outcome of one Deferred, for any number of waiters."""

    def __init__(self, deferred: Deferred[T]) -> None:
        self._result: T | Failure | None = None
        self._done = False
        self._waiters: list[Deferred[T]] = []
        deferred.addBoth(self._fired)

    def _fired(self, result: T | Failure) -> None:
        self._result, self._done = result, True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            self._fire(waiter)

    def _fire(self, waiter: Deferred[T]) -> None:
        if isinstance(self._result, Failure):
            waiter.errback(self._result)
        else:
            waiter.callback(self._result)  # type: ignore[arg-type]

    def value(self) -> T | None:
        """The result, once there is one and it is no failure; else L{None}."""
        if not self._done or isinstance(self._result, Failure):
            return None
        return self._result

    def wait(self) -> Deferred[T]:
        """A new Deferred firing with the outcome."""
        waiter: Deferred[T] = Deferred()
        if self._done:
            self._fire(waiter)
        else:
            self._waiters.append(waiter)
        return waiter
