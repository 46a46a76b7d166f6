"""Blocking calls in the thread pool: results and errors come back on the reactor thread."""

from __future__ import annotations

import threading
import time

from twisted.internet.defer import gatherResults
from twisted.trial.unittest import TestCase

from txregistry.threads import BLOCKED_AFTER, ThreadPool, in_thread


class InThreadTests(TestCase):
    async def test_result(self) -> None:
        """The result arrives, computed on another thread, delivered on this one."""
        caller = threading.get_ident()
        worker, delivered = await in_thread(lambda: (threading.get_ident(), 42))
        self.assertNotEqual(worker, caller)
        self.assertEqual(delivered, 42)
        self.assertEqual(threading.get_ident(), caller)

    async def test_error(self) -> None:
        """What the call raises fails the Deferred."""

        def fail() -> None:
            raise KeyError("missing")

        with self.assertRaises(KeyError):
            await in_thread(fail)

    async def test_arguments(self) -> None:
        """Positional and keyword arguments are passed on."""
        self.assertEqual(await in_thread(int, "ff", base=16), 255)


class ThreadPoolTests(TestCase):
    async def test_thread_survives_an_error(self) -> None:
        """A call that raises leaves its thread serving the next calls."""
        pool = ThreadPool(1, "test-pool")

        def fail() -> None:
            raise ValueError("no")

        with self.assertRaises(ValueError):
            await pool.run(fail)
        self.assertEqual(await pool.run(lambda: 7), 7)

    async def test_at_most_threads(self) -> None:
        """
        Calls beyond the pool's size wait for a thread rather than starting
        one; all of them run.
        """
        pool = ThreadPool(2, "test-pool")
        release = threading.Event()
        self.addCleanup(release.set)

        def blocked() -> int:
            release.wait(10)
            return threading.get_ident()

        calls = [pool.run(blocked) for _ in range(6)]
        release.set()
        threads = await gatherResults(calls)
        self.assertEqual(len(threads), 6)
        self.assertLessEqual(len(set(threads)), 2)

    async def test_core_threads_serve_short_calls(self) -> None:
        """
        Past its core threads, a pool does not start a thread for calls
        that wait behind short ones: they run on the threads it has.
        """
        pool = ThreadPool(4, "test-pool", core=1)

        def short() -> int:
            time.sleep(0.002)
            return threading.get_ident()

        threads = await gatherResults([pool.run(short) for _ in range(8)])
        self.assertEqual(len(set(threads)), 1)

    async def test_blocked_threads_get_company(self) -> None:
        """
        Once every busy thread has been in its call for C{BLOCKED_AFTER}
        seconds, a call that waits gets a thread of its own, up to the
        pool's size.
        """
        pool = ThreadPool(2, "test-pool", core=1)
        release = threading.Event()
        self.addCleanup(release.set)
        blocked = pool.run(release.wait, 10)
        began = time.monotonic()
        second = await pool.run(threading.get_ident)
        self.assertGreaterEqual(time.monotonic() - began, BLOCKED_AFTER)
        self.assertFalse(blocked.called)
        # The thread started stays, idle: the next call takes it.
        third = pool.run(threading.get_ident)
        self.assertEqual(await third, second)
        release.set()
        self.assertTrue(await blocked)
