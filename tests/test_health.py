"""
Health checks: the threshold logic and the schedule on a fake clock; each
kind of check against the real thing (a filesystem, a twisted.web server
and a TCP listener on 127.0.0.1); C{/debug/health}'s JSON; and a registry
process whose storage root breaks, answering 503 until it is restored.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from twisted.web.test.requesthelper import DummyRequest

from support import temporary_directory
from txregistry.config import load_config
from txregistry.drivers.base import ValidatingDriver
from txregistry.drivers.filesystem import FilesystemDriver
from txregistry.drivers.inmemory import InMemoryDriver
from txregistry.health import (
    CheckFailed,
    HealthChecks,
    HealthResource,
    PeriodicCheck,
    ThresholdStatus,
    build_health_checks,
    file_check,
    http_check,
    storage_driver_check,
    tcp_check,
)
from txregistry.testing.client import request
from txregistry.testing.process import free_port
from txregistry.testing.s3server import S3ServerProcess


class ThresholdStatusTests(SynchronousTestCase):
    """Distribution's thresholdUpdater."""

    def test_threshold(self) -> None:
        """Failing after C{threshold} errors in a row, with the last; passing at a success."""
        status = ThresholdStatus(3)
        for error in ("one", "two"):
            status.update(error)
            self.assertIsNone(status.error)
        status.update("three")
        self.assertEqual(status.error, "three")
        status.update("four")
        self.assertEqual(status.error, "four")
        status.update(None)
        self.assertIsNone(status.error)
        status.update("five")
        self.assertIsNone(status.error)

    def test_zero_is_one(self) -> None:
        """A threshold of zero (or less) fails at the first error, as in Distribution."""
        status = ThresholdStatus(0)
        status.update("down")
        self.assertEqual(status.error, "down")


class Outcomes:
    """A check whose outcomes the test decides, run by run."""

    def __init__(self) -> None:
        self.runs = 0
        self.next: list[Deferred[object]] = []
        self.error: str | None = None

    def __call__(self) -> Deferred[object]:
        self.runs += 1
        if self.next:
            return self.next.pop(0)
        return fail(CheckFailed(self.error)) if self.error else succeed(None)


class PeriodicCheckTests(SynchronousTestCase):
    """Checks run on a schedule, gathered in L{HealthChecks}."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.outcomes = Outcomes()
        self.check = PeriodicCheck("storagedriver_x", self.outcomes, 0.2, 2, self.clock)
        self.checks = HealthChecks([self.check])

    def test_schedule(self) -> None:
        """The first run at start, then one every interval; none after stop."""
        self.checks.start()
        self.assertEqual(self.outcomes.runs, 1)
        self.clock.advance(0.2)
        self.assertEqual(self.outcomes.runs, 2)
        self.checks.stop()
        self.clock.advance(1)
        self.assertEqual(self.outcomes.runs, 2)

    def test_threshold(self) -> None:
        """Unhealthy after C{threshold} failed runs, healthy again at the first success."""
        self.checks.start()
        self.assertTrue(self.checks.healthy)
        self.outcomes.error = "disk on fire"
        self.clock.advance(0.2)
        self.assertTrue(self.checks.healthy)
        self.assertEqual(self.checks.status(), {})
        self.clock.advance(0.2)
        self.assertFalse(self.checks.healthy)
        self.assertEqual(self.checks.status(), {"storagedriver_x": "disk on fire"})
        self.outcomes.error = None
        self.clock.advance(0.2)
        self.assertTrue(self.checks.healthy)
        self.assertEqual(self.checks.status(), {})
        self.checks.stop()

    def test_no_overlap(self) -> None:
        """A run that has not finished delays the next; stop cancels it, recording nothing."""
        running: Deferred[object] = Deferred()
        self.outcomes.next.append(running)
        self.checks.start()
        self.clock.advance(0.15)  # less than an interval
        self.assertEqual(self.outcomes.runs, 1)
        self.checks.stop()
        self.assertTrue(running.called)
        self.assertTrue(self.checks.healthy)
        self.assertEqual(self.check.status.failures, 0)

    def test_hung_run_fails(self) -> None:
        """A run still going after an interval (a hung disk) counts as a failure."""
        self.outcomes.next.extend([Deferred(), Deferred()])
        self.checks.start()
        self.clock.advance(0.2)  # the first times out
        self.assertEqual((self.outcomes.runs, self.check.status.failures), (1, 1))
        self.clock.advance(0.2)  # the second starts, and hangs too
        self.assertEqual(self.outcomes.runs, 2)
        self.assertTrue(self.checks.healthy)  # the threshold is 2
        self.clock.advance(0.2)
        self.assertFalse(self.checks.healthy)
        self.assertIn("storagedriver_x", self.checks.status())
        self.checks.stop()

    def test_several(self) -> None:
        """Unhealthy while any check fails; the status names only the failing ones."""
        other = Outcomes()
        other.error = "file exists"
        checks = HealthChecks([self.check, PeriodicCheck("/tmp/down", other, 1.0, 1, self.clock)])
        checks.start()
        self.assertFalse(checks.healthy)
        self.assertEqual(checks.status(), {"/tmp/down": "file exists"})
        checks.stop()


class StorageDriverCheckTests(TestCase):
    """Distribution's: stat the root through the driver."""

    async def test_missing_root(self) -> None:
        """A root not made yet passes: the driver answered."""
        await storage_driver_check(InMemoryDriver())()
        root = Path(temporary_directory(self)) / "absent"
        await storage_driver_check(FilesystemDriver(str(root)))()

    async def test_root(self) -> None:
        """An existing root passes, through the validating wrapper too (as Distribution's)."""
        driver = FilesystemDriver(temporary_directory(self))
        await storage_driver_check(driver)()
        await storage_driver_check(ValidatingDriver(driver))()
        await storage_driver_check(ValidatingDriver(InMemoryDriver()))()

    async def test_broken_root(self) -> None:
        """A root that cannot be resolved (a symbolic link to itself) fails."""
        root = os.path.join(temporary_directory(self), "root")
        os.symlink(root, root)
        check = storage_driver_check(FilesystemDriver(root))
        with self.assertRaises(OSError) as raised:
            await check()
        self.assertIn("symbolic links", str(raised.exception))


class FileCheckTests(TestCase):
    """Distribution's: failing while the file exists."""

    async def test_file(self) -> None:
        path = os.path.join(temporary_directory(self), "down")
        check = file_check(path)
        await check()
        Path(path).touch()
        with self.assertRaises(CheckFailed) as raised:
            await check()
        self.assertEqual(str(raised.exception), "file exists")
        os.remove(path)
        await check()


class Answer(Resource):
    """Answers with the code the test sets, noting each request's headers."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.code = 200
        self.hang = False
        self.seen: list[tuple[bytes, list[bytes] | None]] = []
        self.hanging: list[Request] = []

    def render(self, request: Request) -> Any:
        self.seen.append((request.method, request.requestHeaders.getRawHeaders(b"x-token")))
        if self.hang:
            self.hanging.append(request)
            return NOT_DONE_YET
        request.setResponseCode(self.code)
        return b""


class NetworkTests(TestCase):
    """The HTTP and TCP checks, against servers on 127.0.0.1."""

    async def listen(self, factory: Any) -> int:
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
        self.addCleanup(port.stopListening)
        return int(port.getHost().port)

    async def closed_port(self) -> int:
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Factory())
        number = int(port.getHost().port)
        await port.stopListening()
        return number

    async def test_http(self) -> None:
        """A HEAD with the headers; passing on the expected status, failing on another."""
        answer = Answer()
        site = Site(answer)
        site.log = lambda request: None  # type: ignore[method-assign]
        port = await self.listen(site)
        uri = f"http://127.0.0.1:{port}/ping"
        check = http_check(uri, 200, 5.0, {"X-Token": ("secret",)}, reactor)
        await check()
        self.assertEqual(answer.seen, [(b"HEAD", [b"secret"])])
        answer.code = 500
        with self.assertRaises(CheckFailed) as raised:
            await check()
        self.assertEqual(
            str(raised.exception), f"{uri}: downstream service returned unexpected status: 500"
        )
        await http_check(uri, 500, 5.0, {}, reactor)()

    async def test_http_timeout(self) -> None:
        """A server that does not answer within the timeout fails the check."""
        answer = Answer()
        answer.hang = True
        port = await self.listen(Site(answer))
        uri = f"http://127.0.0.1:{port}/"
        started = time.monotonic()
        with self.assertRaises(CheckFailed) as raised:
            await http_check(uri, 200, 0.2, {}, reactor)()
        self.assertLess(time.monotonic() - started, 3)
        self.assertTrue(str(raised.exception).startswith(f"{uri}: error while checking: "))
        for hanging in answer.hanging:
            hanging.channel.transport.abortConnection()  # type: ignore[union-attr]

    async def test_http_refused(self) -> None:
        """No server: the check fails, saying why."""
        uri = f"http://127.0.0.1:{await self.closed_port()}/"
        with self.assertRaises(CheckFailed) as raised:
            await http_check(uri, 200, 5.0, {}, reactor)()
        self.assertIn("error while checking", str(raised.exception))
        self.assertIn("refused", str(raised.exception))

    async def test_tcp(self) -> None:
        """A listener passes; a closed port fails, naming the address."""
        connected: list[Protocol] = []

        class Accept(Protocol):
            def connectionMade(self) -> None:
                connected.append(self)

        port = await self.listen(Factory.forProtocol(Accept))
        await tcp_check("127.0.0.1", port, 5.0, reactor)()
        closed = await self.closed_port()
        with self.assertRaises(CheckFailed) as raised:
            await tcp_check("127.0.0.1", closed, 5.0, reactor)()
        self.assertTrue(
            str(raised.exception).startswith(f"127.0.0.1:{closed}: connection failed: "),
            str(raised.exception),
        )
        self.assertEqual(len(connected), 1)


class ResourceTests(SynchronousTestCase):
    """C{/debug/health}, as Distribution's StatusHandler."""

    def render(self, checks: HealthChecks, method: bytes = b"GET") -> DummyRequest:
        request = DummyRequest([b""])
        request.method = method
        body = HealthResource(checks).render(request)  # type: ignore[arg-type]
        request.write(body)
        return request

    def test_healthy(self) -> None:
        """All passing: 200 and C{{}}."""
        request = self.render(HealthChecks([]))
        self.assertEqual(request.responseCode, 200)
        self.assertEqual(json.loads(b"".join(request.written)), {})
        self.assertEqual(
            request.responseHeaders.getRawHeaders(b"content-type"),
            [b"application/json; charset=utf-8"],
        )

    def test_unhealthy(self) -> None:
        """A failing check: 503, naming it with its error."""
        outcomes = Outcomes()
        outcomes.error = "path not readable"
        checks = HealthChecks([PeriodicCheck("storagedriver_filesystem", outcomes, 1, 1, Clock())])
        checks.start()
        request = self.render(checks)
        self.assertEqual(request.responseCode, 503)
        self.assertEqual(
            json.loads(b"".join(request.written)),
            {"storagedriver_filesystem": "path not readable"},
        )
        checks.stop()

    def test_other_methods(self) -> None:
        """Only GET: anything else is not found, as in Distribution."""
        self.assertEqual(self.render(HealthChecks([]), b"POST").responseCode, 404)


class BuildTests(SynchronousTestCase):
    """The checks the configuration asks for, named as Distribution names them."""

    def test_none(self) -> None:
        config = load_config("version: 0.1\nstorage: {inmemory: {}}\n", environ={})
        self.assertIsNone(build_health_checks(config, InMemoryDriver(), Clock()))

    def test_names(self) -> None:
        config = load_config(
            "version: 0.1\n"
            "storage: {inmemory: {}}\n"
            "health:\n"
            "  storagedriver: {enabled: true, interval: 1s, threshold: 3}\n"
            "  file: [{file: /tmp/down, interval: 2s}]\n"
            "  http: [{uri: 'http://127.0.0.1:1/', threshold: 2}]\n"
            "  tcp: [{addr: '127.0.0.1:1'}]\n",
            environ={},
        )
        checks = build_health_checks(config, InMemoryDriver(), MemoryReactorClock())
        assert checks is not None
        self.assertEqual(
            [(c.name, c.interval, c.status.threshold) for c in checks.checks],
            [
                ("storagedriver_inmemory", 1.0, 3),
                ("/tmp/down", 2.0, 1),
                ("http://127.0.0.1:1/", 10.0, 2),
                ("127.0.0.1:1", 10.0, 1),
            ],
        )


# -- a real registry --------------------------------------------------------------


def _wait_for(url: str, status: int, within: float) -> Any:
    deadline = time.monotonic() + within
    while True:
        response = request("GET", url, timeout=5)
        if response.status == status or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def test_storage_root_breaks(start_registry_with: Any) -> None:
    """
    The storage root replaced by a symbolic link to itself (so that even
    root cannot stat it, as chmod would not stop root) turns the API to 503
    within interval x threshold; restored, it answers again.
    """
    debug_addr = f"127.0.0.1:{free_port()}"
    server = start_registry_with(
        {"health": {"storagedriver": {"enabled": True, "interval": "200ms", "threshold": 2}}},
        debug={"addr": debug_addr},
    )
    health_url = f"http://{debug_addr}/debug/health"
    server.push("health/test", b"some bytes")
    assert server.request("GET", "").status == 200
    healthy = request("GET", health_url, timeout=5)
    assert (healthy.status, healthy.json()) == (200, {})
    root: Path = server.root
    away = root.with_name(root.name + ".away")
    root.rename(away)
    root.symlink_to(root)
    broken = time.monotonic()
    try:
        response = _wait_for(server.resolve(""), 503, 5)
        assert response.status == 503, response.body
        # Two failed runs, at most one interval each, plus the first's wait.
        assert time.monotonic() - broken < 0.2 * 3 + 1.0
        assert response.json() == {
            "errors": [
                {
                    "code": "UNAVAILABLE",
                    "message": "service unavailable",
                    "detail": "health check failed: please see /debug/health",
                }
            ]
        }
        for method, target in [
            ("POST", "health/test/blobs/uploads/"),
            ("GET", "_catalog"),
            ("GET", "/not/the/api"),
        ]:
            answer = request(method, server.resolve(target), b"", timeout=5)
            assert answer.status == 503, (method, target, answer.body)
            assert answer.json()["errors"][0]["code"] == "UNAVAILABLE"
        # The debug listener says which check fails, and why.
        failing = request("GET", health_url, timeout=5)
        assert failing.status == 503
        assert list(failing.json()) == ["storagedriver_filesystem"]
    finally:
        root.unlink()
        away.rename(root)
    response = _wait_for(server.resolve(""), 200, 5)
    assert response.status == 200, response.body
    assert server.request("GET", "_catalog").json() == {"repositories": ["health/test"]}
    assert request("GET", health_url, timeout=5).json() == {}


def test_s3_server_stops(start_registry_with: Any, s3_server: S3ServerProcess) -> None:
    """
    On S3, the server not answering (paused) turns the API and
    C{/debug/health} to 503 within interval x threshold (plus the driver's
    read timeout); resumed, both answer again.
    """
    bucket = "health-check"
    s3_server.create_bucket(bucket)
    debug_addr = f"127.0.0.1:{free_port()}"
    storage = {
        **s3_server.storage_parameters(
            bucket, "/health", connecttimeout=1, readtimeout=1, maxretries=0
        ),
        "delete": {"enabled": True},
    }
    server = start_registry_with(
        {
            "storage": storage,
            "health": {"storagedriver": {"enabled": True, "interval": "200ms", "threshold": 2}},
        },
        debug={"addr": debug_addr},
    )
    health_url = f"http://{debug_addr}/debug/health"
    assert server.request("GET", "").status == 200
    s3_server.pause()
    try:
        response = _wait_for(server.resolve(""), 503, 10)
        assert response.status == 503, response.body
        assert response.json()["errors"][0]["code"] == "UNAVAILABLE"
        failing = request("GET", health_url, timeout=5)
        assert (failing.status, list(failing.json())) == (503, ["storagedriver_s3"])
    finally:
        s3_server.resume()
    assert _wait_for(server.resolve(""), 200, 10).status == 200
    assert request("GET", health_url, timeout=5).json() == {}
