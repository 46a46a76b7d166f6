# -*- test-case-name: tests.test_threads -*-
"""
Running blocking calls (file I/O, hashing) off the reactor thread.

A pool of threads fed by one C{queue.SimpleQueue}, each result handed back
to the reactor thread with C{callFromThread}.  Every manifest request makes
one such round trip, so it is kept short: no C{concurrent.futures.Future}
(a condition variable and a lock made per call) and no C{deferToThread}
(Twisted's pool keeps a context and a worker object per call).  Measured
here, 50,000-57,000 round trips a second against 28,000-30,000 through a
C{ThreadPoolExecutor} and 40,000 through C{deferToThread}.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorThreads

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_THREADS = 32
# How long every busy thread of a pool with fewer core threads than threads
# must have been in its call for the pool to take them for blocked (see
# ThreadPool).
BLOCKED_AFTER = 0.02

# One call: the function, its arguments, and the Deferred its outcome fires.
_Work = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], Deferred[Any]]


class ThreadPool:
    """
    A pool of threads of its own, whose results come back on the reactor
    thread.  The storage pool (L{in_thread}) is one; work that must not
    wait behind storage (nor hold it up), such as password checks, gets
    another.

    A thread is started when a call finds none idle, up to C{core}
    threads; past those, only once every busy thread has been in its call
    for C{BLOCKED_AFTER} seconds, and then one for each call waiting, up to
    C{threads}.  Threads then live as long as the process (they are
    daemons: a call still running when the process exits is abandoned, as
    the reactor has stopped waiting for it).

    Why not start them at once: every blocking call releases the GIL and
    takes it back, and with many threads making short calls (a small
    file's write, a C{stat}), they queue for the GIL after each one and the
    process spends more time switching between them than working (measured
    on small-blob pushes, 16 at once: 166 context switches a push and
    354 pushes a second with a thread started per waiting call, 23 and 504
    with one thread).  A thread that blocks (a slow disk) is another matter:
    then more threads do help, and they are started.

    @ivar threads: the most threads (settable until the first call).
    @param core: the threads started without waiting (all of C{threads}
        unless given).
    """

    def __init__(
        self, threads: int, name: str, reactor: Any = None, core: int | None = None
    ) -> None:
        self.threads = threads
        self._core = core
        self._watcher: threading.Thread | None = None
        self._calls_wait = threading.Event()
        self._start_lock = threading.Lock()
        # When each busy thread began its call, by thread.
        self._running: dict[int, float] = {}
        self._name = name
        self._reactor = reactor
        self._queue: queue.SimpleQueue[_Work] = queue.SimpleQueue()
        self._started = 0
        # How many threads wait for work: a call that finds one lets it take
        # the call rather than starting another.  Read without the lock (a
        # stale count costs at most a thread started, or a call waiting for
        # one that is about to be free).
        self._idle = 0
        self._idle_lock = threading.Lock()

    def run(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        """
        Call C{function} in the pool.

        @return: a Deferred firing on the reactor thread with its result, or
            failing with what it raised.
        """
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        result: Deferred[T] = Deferred()
        self._queue.put((function, args, kwargs, result))
        if self._idle == 0 and self._started < self.threads:
            if self._core is None or self._started < self._core:
                self._start_thread()
            else:
                self._watch()
        return result

    def _watch(self) -> None:
        """Have the watcher look at the waiting calls (started on first need)."""
        if self._watcher is None:
            self._watcher = threading.Thread(
                target=self._watch_calls, name=f"{self._name}_watcher", daemon=True
            )
            self._watcher.start()
        self._calls_wait.set()

    def _watch_calls(self) -> None:
        """
        The watcher's loop, while calls wait: once every busy thread has
        been in its call for C{BLOCKED_AFTER} seconds, the threads are
        blocked (a slow disk) rather than busy, and a thread is started for
        each waiting call, up to C{threads}.  (A thread of its own, not a
        timer of the reactor's: nothing is left scheduled when a test ends.)
        """
        while True:
            self._calls_wait.wait()
            time.sleep(BLOCKED_AFTER)
            self._calls_wait.clear()
            waiting = self._queue.qsize() - self._idle
            if waiting <= 0 or self._started >= self.threads:
                continue
            now = time.monotonic()
            if all(now - began >= BLOCKED_AFTER for began in list(self._running.values())):
                for _ in range(waiting):
                    self._start_thread()
            else:
                self._calls_wait.set()  # look again

    def _start_thread(self) -> None:
        with self._start_lock:
            if self._started >= self.threads:
                return
            self._started += 1
            number = self._started
        threading.Thread(
            target=self._work,
            name=f"{self._name}_{number}",
            args=(IReactorThreads(self._reactor).callFromThread,),
            daemon=True,
        ).start()

    def _work(self, call_from_thread: Callable[..., object]) -> None:
        """A thread's loop: take a call, run it, hand its outcome back."""
        take = self._queue.get
        idle_lock = self._idle_lock
        # Only a pool with core threads looks at how long calls run.
        running = self._running if self._core is not None else None
        me = threading.get_ident()
        monotonic = time.monotonic
        while True:
            with idle_lock:
                self._idle += 1
            function, args, kwargs, result = take()
            with idle_lock:
                self._idle -= 1
            if running is not None:
                running[me] = monotonic()
            try:
                call_from_thread(result.callback, function(*args, **kwargs))
            except BaseException as error:
                call_from_thread(result.errback, error)
            if running is not None:
                del running[me]
            # Nothing of the call is kept while waiting for the next.
            function = args = kwargs = result = None  # type: ignore[assignment]


_storage_pool = ThreadPool(DEFAULT_THREADS, "txregistry")


def set_pool_size(threads: int) -> None:
    """Size the pool (C{storage.filesystem.maxthreads}); takes effect before first use."""
    _storage_pool.threads = threads


def in_thread(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
    """Call C{function} in the storage pool (see L{ThreadPool.run})."""
    return _storage_pool.run(function, *args, **kwargs)
