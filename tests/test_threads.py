"""Blocking calls in the thread pool: results and errors come back on the reactor thread."""

from __future__ import annotations

import threading

from twisted.trial.unittest import TestCase

from txregistry.threads import in_thread


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
