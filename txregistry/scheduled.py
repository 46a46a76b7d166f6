# -*- test-case-name: tests.test_scheduled -*-
"""
Maintenance the server runs by itself on a schedule (garbage collection,
upload purging): a Twisted service that runs one job at a time, first after
a delay (random, so that processes started together do not all start at
once), then every interval, logging what each run did or why it failed.
Taking turns with other processes is the job's own business (a storage
lease, see L{txregistry.registry.lease}).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

_log = Logger()


class ScheduledJob(Service):
    """
    Runs C{job} first C{first_delay} seconds after the service starts, then
    C{interval} seconds after each run ends.

    @ivar job: makes one run; its result (a line saying what it did) is
        logged, and so is a failure, which does not stop the schedule.
    @ivar runs: how many runs have ended.
    """

    def __init__(
        self,
        name: str,
        job: Callable[[], Awaitable[str | None]],
        interval: float,
        first_delay: float,
        reactor: Any,
    ) -> None:
        self.setName(name)
        self.job = job
        self.interval = interval
        self.first_delay = first_delay
        self.runs = 0
        self._reactor = IReactorTime(reactor)
        self._timer: IDelayedCall | None = None
        self._running: Deferred[None] | None = None

    def startService(self) -> None:
        """Schedule the first run."""
        super().startService()
        self._schedule(self.first_delay)

    def stopService(self) -> Deferred[None]:
        """
        Cancel the next run, and stop a run in progress (a job stops at its
        next wait on storage); fires once it has.
        """
        super().stopService()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        running = self._running
        if running is None:
            return succeed(None)
        running.cancel()
        return running

    def _schedule(self, delay: float) -> None:
        self._timer = self._reactor.callLater(delay, self._run)

    def _run(self) -> None:
        self._timer = None
        self._running = ensureDeferred(self._run_once())

    async def _run_once(self) -> None:
        try:
            said = await self.job()
        except CancelledError:
            _log.info("{job}: stopped", job=self.name)
            return
        except Exception:
            _log.failure("{job} failed", job=self.name)
        else:
            if said:
                _log.info("{job}: {said}", job=self.name, said=said)
        finally:
            self.runs += 1
            self._running = None
        if self.running:
            self._schedule(self.interval)
