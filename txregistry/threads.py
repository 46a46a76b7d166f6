# -*- test-case-name: tests.test_threads -*-
"""
Running blocking calls (file I/O, hashing) off the reactor thread.

A C{concurrent.futures} thread pool, whose hand-over costs about two thirds
of Twisted's C{deferToThread} (measured: 68,000 against 40,000 round trips
a second here), which matters when every manifest request makes one.  The
result comes back to the reactor thread with C{callFromThread}.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorThreads

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_THREADS = 32


class ThreadPool:
    """
    A pool of threads of its own, started on first use, whose results come
    back on the reactor thread.  The storage pool (L{in_thread}) is one;
    work that must not wait behind storage (nor hold it up), such as
    password checks, gets another.
    """

    def __init__(self, threads: int, name: str, reactor: Any = None) -> None:
        self.threads = threads
        self._name = name
        self._reactor = reactor
        self._executor: ThreadPoolExecutor | None = None

    def run(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        """
        Call C{function} in the pool.

        @return: a Deferred firing on the reactor thread with its result, or
            failing with what it raised.
        """
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix=self._name)
        threads = IReactorThreads(self._reactor)
        result: Deferred[T] = Deferred()

        def done(future: Future[T]) -> None:
            error = future.exception()
            if error is not None:
                threads.callFromThread(result.errback, error)
            else:
                threads.callFromThread(result.callback, future.result())

        future: Future[T] = self._executor.submit(function, *args, **kwargs)
        future.add_done_callback(done)
        return result


_storage_pool = ThreadPool(DEFAULT_THREADS, "txregistry")


def set_pool_size(threads: int) -> None:
    """Size the pool (C{storage.filesystem.maxthreads}); takes effect before first use."""
    _storage_pool.threads = threads


def in_thread(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
    """Call C{function} in the storage pool (see L{ThreadPool.run})."""
    return _storage_pool.run(function, *args, **kwargs)
