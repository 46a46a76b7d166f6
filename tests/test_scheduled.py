"""Scheduled maintenance jobs, on a deterministic clock."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from txregistry.scheduled import ScheduledJob


class ScheduledJobTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.started: list[Deferred[str | None]] = []
        self.events: list[LogEvent] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def job(self) -> Deferred[str | None]:
        run: Deferred[str | None] = Deferred()
        self.started.append(run)
        return run

    def service(self) -> ScheduledJob:
        service = ScheduledJob("gc", self.job, interval=60.0, first_delay=5.0, reactor=self.clock)
        service.startService()
        return service

    def texts(self) -> list[str]:
        from twisted.logger import formatEvent

        return [formatEvent(event) for event in self.events]

    def test_first_delay_then_interval(self) -> None:
        """The first run after the delay, the next an interval after it ends."""
        service = self.service()
        self.clock.advance(4.9)
        self.assertEqual(len(self.started), 0)
        self.clock.advance(0.1)
        self.assertEqual(len(self.started), 1)
        self.clock.advance(120)  # still running: no second run
        self.assertEqual(len(self.started), 1)
        self.started[0].callback("did things")
        self.assertEqual(service.runs, 1)
        self.assertIn("gc: did things", self.texts())
        self.clock.advance(59.9)
        self.assertEqual(len(self.started), 1)
        self.clock.advance(0.1)
        self.assertEqual(len(self.started), 2)

    def test_failure_logged_schedule_goes_on(self) -> None:
        service = self.service()
        self.clock.advance(5)
        self.started[0].errback(RuntimeError("bucket on fire"))
        self.assertEqual(service.runs, 1)
        self.assertIn("gc failed", self.texts())
        failures = [e for e in self.events if "log_failure" in e]
        self.assertEqual(len(failures), 1)
        self.clock.advance(60)
        self.assertEqual(len(self.started), 2)
        self.flushLoggedErrors(RuntimeError)

    def test_stop_before_first_run(self) -> None:
        service = self.service()
        stopped = service.stopService()
        self.assertIsNone(self.successResultOf(stopped))
        self.clock.advance(100)
        self.assertEqual(self.started, [])

    def test_stop_cancels_running_job(self) -> None:
        """Stopping cancels the run in progress, and fires once it has ended."""
        service = self.service()
        self.clock.advance(5)
        stopped = service.stopService()
        self.assertIsNone(self.successResultOf(stopped))
        self.assertIn("gc: stopped", self.texts())
        self.clock.advance(1000)
        self.assertEqual(len(self.started), 1)


class MaintenanceJobsTests(SynchronousTestCase):
    """What the server schedules, from the config."""

    def jobs(self, storage: str) -> list[tuple[str, float]]:
        from txregistry.config import load_config
        from txregistry.drivers.inmemory import InMemoryDriver
        from txregistry.service import maintenance_jobs

        config = load_config(f"version: 0.1\nstorage: {{inmemory: {{}}, {storage}}}\n")
        jobs = maintenance_jobs(config, InMemoryDriver())
        for job in jobs:
            self.assertLessEqual(job.first_delay, min(job.interval, 3600))
            self.assertGreaterEqual(job.first_delay, min(job.interval, 300))
        return [(job.name, job.interval) for job in jobs]

    def test_purging_by_default(self) -> None:
        """Upload purging is on unless disabled, as in Distribution; collection is off."""
        self.assertEqual(self.jobs("delete: {enabled: true}"), [("upload purging", 86400.0)])

    def test_both(self) -> None:
        self.assertEqual(
            self.jobs(
                "gc: {enabled: true, interval: 10m}, maintenance: {uploadpurging: {interval: 1h}}"
            ),
            [("upload purging", 3600.0), ("garbage collection", 600.0)],
        )

    def test_short_interval(self) -> None:
        """An interval under five minutes is also the first delay."""
        self.assertEqual(
            self.jobs("gc: {enabled: true, interval: 2s}")[1], ("garbage collection", 2.0)
        )

    def test_none(self) -> None:
        self.assertEqual(self.jobs("maintenance: {uploadpurging: {enabled: false}}"), [])
        # Read-only mode writes nothing, so neither runs.
        self.assertEqual(
            self.jobs("gc: {enabled: true}, maintenance: {readonly: {enabled: true}}"), []
        )
