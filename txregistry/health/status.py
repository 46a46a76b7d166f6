# -*- test-case-name: tests.test_health -*-
"""
Running the checks: each every interval, its state thresholded as
Distribution's (C{health/health.go}): a check fails once it failed
C{threshold} times in a row, and passes again at its first success.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from txregistry.health.checks import Check

_log = Logger()


class ThresholdStatus:
    """
    The state of one check from its outcomes: failing with the last error
    once C{threshold} outcomes in a row were errors; passing otherwise.
    """

    def __init__(self, threshold: int) -> None:
        self.threshold = max(threshold, 1)
        self.failures = 0
        self._error: str | None = None

    def update(self, error: str | None) -> None:
        """Record one outcome: L{None} for a pass, else why it failed."""
        if error is None:
            self.failures = 0
        elif self.failures < self.threshold:
            self.failures += 1
        self._error = error

    @property
    def error(self) -> str | None:
        """Why the check fails, or L{None} while it passes."""
        return self._error if self.failures >= self.threshold else None


class PeriodicCheck:
    """
    One named check run every C{interval} seconds on C{clock}, the first
    time when started.  A run starts only once the one before it finished,
    and fails when it takes longer than an interval.
    """

    def __init__(
        self,
        name: str,
        check: Check,
        interval: float,
        threshold: int,
        clock: IReactorTime,
    ) -> None:
        self.name = name
        self.interval = interval
        self.status = ThresholdStatus(threshold)
        self._check = check
        self._loop = LoopingCall(self._run)
        self._loop.clock = clock
        self._running: Deferred[object] | None = None
        self._stopped = False
        # Called with this check when it turns failing or passing.
        self.changed: list[Callable[[PeriodicCheck], object]] = []

    @property
    def error(self) -> str | None:
        """Why the check fails, or L{None} while it passes."""
        return self.status.error

    def start(self) -> None:
        """Run the check now and every interval."""
        self._stopped = False
        self._loop.start(self.interval, now=True)

    def stop(self) -> None:
        """Stop running the check, cancelling a run in progress."""
        self._stopped = True
        if self._loop.running:
            self._loop.stop()
        running, self._running = self._running, None
        if running is not None:
            running.cancel()

    def _run(self) -> Deferred[None]:
        self._running = running = self._check()
        # A run still going after an interval (a hung disk or bucket) fails.
        running.addTimeout(self.interval, self._loop.clock)
        result: Deferred[None] = running.addCallbacks(self._passed, self._failed)
        return result

    def _passed(self, _: object) -> None:
        self._running = None
        if not self._stopped:
            self._record(None)

    def _failed(self, failure: Failure) -> None:
        self._running = None
        if not self._stopped:
            self._record(str(failure.value) or type(failure.value).__name__)

    def _record(self, error: str | None) -> None:
        before = self.status.error
        self.status.update(error)
        after = self.status.error
        if (before is None) != (after is None):
            if after is None:
                _log.info("health check {name} passes again", name=self.name)
            else:
                _log.warn("health check {name} fails: {error}", name=self.name, error=after)
            for listener in self.changed:
                listener(self)


class HealthChecks:
    """
    The registry's health checks: their state for C{/debug/health}, and
    whether the API answers (L{healthy}, read on every request: kept
    up to date as checks change rather than computed).
    """

    def __init__(self, checks: Sequence[PeriodicCheck]) -> None:
        self.checks = tuple(checks)
        self._failing: dict[str, str] = {}
        for check in self.checks:
            check.changed.append(self._changed)

    @property
    def healthy(self) -> bool:
        """Whether every check passes."""
        return not self._failing

    def status(self) -> dict[str, str]:
        """The failing checks, by name, with why: Distribution's C{/debug/health}."""
        return {check.name: error for check in self.checks if (error := check.error) is not None}

    def start(self) -> None:
        """Start running every check."""
        for check in self.checks:
            check.start()

    def stop(self) -> None:
        """Stop running every check."""
        for check in self.checks:
            check.stop()

    def _changed(self, check: PeriodicCheck) -> None:
        error = check.error
        if error is None:
            self._failing.pop(check.name, None)
        else:
            self._failing[check.name] = error
