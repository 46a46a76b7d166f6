# -*- test-case-name: tests.test_gc -*-
"""
Storage work run a bounded number at a time: walking many folders, reading
many manifests, deleting many blobs.  Object storage answers each request in
milliseconds, so doing them one after another (as Distribution's collector
does) wastes most of the time waiting.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from twisted.internet.defer import Deferred, DeferredList, DeferredSemaphore, ensureDeferred
from twisted.python.failure import Failure

T = TypeVar("T")
R = TypeVar("R")

# How many storage requests one collection keeps in flight by default.
DEFAULT_PARALLELISM = 16


async def map_bounded(
    function: Callable[[T], Awaitable[R]],
    items: Iterable[T],
    limit: int = DEFAULT_PARALLELISM,
) -> list[R]:
    """
    Call C{function} on every item, at most C{limit} calls in progress at
    once, and return the results in the order of C{items}.

    @raise Exception: the first failure, once every call has ended (none is
        left running behind the caller).
    """
    semaphore = DeferredSemaphore(limit)

    def start(item: T) -> Deferred[R]:
        return semaphore.run(lambda: ensureDeferred(_awaited(function(item))))

    calls = [start(item) for item in items]
    if not calls:
        return []
    ended = await DeferredList(calls, consumeErrors=True)
    results: list[R] = []
    for succeeded, value in ended:
        if not succeeded:
            assert isinstance(value, Failure)
            value.raiseException()
        results.append(value)
    return results


async def _awaited(result: Awaitable[R]) -> R:
    return await result
