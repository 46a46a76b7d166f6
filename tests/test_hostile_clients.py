"""
Hostile and careless clients: the connection timeouts of
L{txregistry.resources.site.RegistryChannel} (in memory, on a clock), the
process-wide L{UploadBudget} (in memory, over a driver that holds its
writes), and a real registry process serving a normal client while
hundreds of slow connections try to hold it.
"""

from __future__ import annotations

import hashlib
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from conftest import StartRegistry
from manifest_support import Images
from txregistry.config import load_config
from txregistry.drivers.base import ValidatingDriver
from txregistry.drivers.inmemory import InMemoryDriver
from txregistry.interfaces import IFileWriter
from txregistry.registry.repository import Registry
from txregistry.registry.uploads import UploadAppender
from txregistry.resources.site import RegistryChannel, make_site
from txregistry.resources.streaming import HIGH_WATERMARK, UploadBody, UploadBudget

KiB = 1024
MiB = 1024 * KiB

# -- (a) the channel's timeouts, in memory ------------------------------------------


class ChannelTimeoutTests(SynchronousTestCase):
    """
    Each phase of a connection has its timeout on the channel's one timer:
    idle between requests, a deadline for the headers that trickling bytes
    do not push back, and a body timeout that every byte resets but that
    does not run while the registry itself stops reading.
    """

    HTTP = (
        "{addr: '127.0.0.1:0', secret: test,"
        " idletimeout: 30s, readheadertimeout: 5s, bodytimeout: 7s}"
    )

    def connect(self, http: str | None = None) -> tuple[RegistryChannel, StringTransport, Clock]:
        config = load_config(
            "version: 0.1\n"
            "log: {accesslog: {disabled: true}}\n"
            "storage: {inmemory: {}}\n"
            f"http: {http or self.HTTP}\n",
            environ={},
        )
        site = make_site(config, Registry(ValidatingDriver(InMemoryDriver())), b"test")
        clock = Clock()
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        channel.callLater = clock.callLater
        transport = StringTransport()
        channel.makeConnection(transport)
        self.addCleanup(lambda: channel.connectionLost(Failure(ConnectionDone())))
        return channel, transport, clock

    def trickle(self, channel: RegistryChannel, clock: Clock, data: bytes, every: float) -> None:
        for byte in data:
            channel.dataReceived(bytes([byte]))
            clock.advance(every)

    def test_first_request_headers_from_connection(self) -> None:
        """
        A connection that sends nothing is closed when its first request's
        headers are due, without a word: no request was started.
        """
        _, transport, clock = self.connect()
        clock.advance(4.9)
        self.assertFalse(transport.disconnecting)
        clock.advance(0.2)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), b"")

    def test_trickling_headers(self) -> None:
        """
        Headers that trickle in a byte a second do not push the deadline
        back: at C{readheadertimeout} the request is answered 408 and the
        connection closed.
        """
        channel, transport, clock = self.connect()
        self.trickle(channel, clock, b"GET /v2/ HTTP/1.1\r\nHost: x\r\n", 0.1)
        self.assertFalse(transport.disconnecting)  # 2.9 s
        self.trickle(channel, clock, b"X-Slow: abc", 1.0)
        self.assertTrue(transport.disconnecting)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 408 Request Timeout\r\n"))

    def test_idle_then_headers(self) -> None:
        """
        After a response the connection may stay idle for C{idletimeout};
        the next request's first byte starts its headers' deadline.
        """
        channel, transport, clock = self.connect()
        channel.dataReceived(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn(b" 200 ", transport.value())
        transport.clear()
        clock.advance(29)
        self.assertFalse(transport.disconnecting)
        channel.dataReceived(b"G")
        clock.advance(4.9)
        self.assertFalse(transport.disconnecting)
        clock.advance(0.2)
        self.assertTrue(transport.disconnecting)

    def test_idle_timeout(self) -> None:
        """A connection idle after a response is closed after C{idletimeout}, without a word."""
        channel, transport, clock = self.connect()
        channel.dataReceived(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        transport.clear()
        clock.advance(30.1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), b"")

    def test_body_keeps_coming(self) -> None:
        """
        A body may take as long as it takes while bytes keep coming; a body
        that stops for C{bodytimeout} is answered 408 and the connection
        closed.
        """
        channel, transport, clock = self.connect()
        channel.dataReceived(b"PUT /v2/foo/manifests/x HTTP/1.1\r\nContent-Length: 100\r\n\r\n")
        self.trickle(channel, clock, b"a" * 20, 6.5)  # 130 s in all
        self.assertFalse(transport.disconnecting)
        clock.advance(0.6)
        self.assertTrue(transport.disconnecting)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 408 "))

    def test_paused_by_the_registry(self) -> None:
        """
        While the registry stops reading a body (storage is behind), the
        body's timer does not run; once reading again the client has a
        whole C{bodytimeout}.
        """
        channel, transport, clock = self.connect()
        channel.dataReceived(b"PUT /v2/foo/manifests/x HTTP/1.1\r\nContent-Length: 100\r\n\r\n")
        clock.advance(6)
        channel.pause_body()
        self.assertEqual(transport.producerState, "paused")
        clock.advance(600)
        self.assertFalse(transport.disconnecting)
        channel.resume_body()
        self.assertEqual(transport.producerState, "producing")
        clock.advance(6.9)
        self.assertFalse(transport.disconnecting)
        clock.advance(0.2)
        self.assertTrue(transport.disconnecting)

    def test_idle_restored_after_a_body(self) -> None:
        """
        Once a request with a body is answered, the timer is the idle one
        again (Twisted restores what was in force when the body ended).
        """
        channel, transport, clock = self.connect()
        channel.dataReceived(b"PUT /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab")
        self.assertIn(b" 405 ", transport.value())
        [timer] = clock.getDelayedCalls()
        self.assertEqual(timer.getTime() - clock.seconds(), 30.0)

    def test_disabled(self) -> None:
        """
        With C{readheadertimeout: 0} the headers have the idle timeout, reset
        by every byte, as in Twisted; with C{bodytimeout: 0} a body may stall
        for ever.
        """
        http = (
            "{addr: '127.0.0.1:0', secret: t,"
            " idletimeout: 3s, readheadertimeout: 0, bodytimeout: 0}"
        )
        channel, transport, clock = self.connect(http)
        self.trickle(
            channel, clock, b"PUT /v2/foo/manifests/x HTTP/1.1\r\nContent-Length: 9\r\n\r\n", 2.9
        )
        clock.advance(3600)
        self.assertFalse(transport.disconnecting)


# -- (b) the process-wide budget ----------------------------------------------------


@implementer(IFileWriter)
class HeldWriter:
    """A driver writer whose writes wait until the test releases them."""

    def __init__(self, held: list[Deferred[None]]) -> None:
        self.size = 0
        self._held = held
        self.content = bytearray()

    def write(self, data: bytes) -> Deferred[None]:
        self.size += len(data)
        self.content += data
        done: Deferred[None] = Deferred()
        self._held.append(done)
        return done

    def close(self) -> Deferred[None]:
        return succeed(None)

    def commit(self) -> Deferred[None]:
        raise AssertionError("an appender never commits")

    def cancel(self) -> Deferred[None]:
        raise AssertionError("an appender never cancels")


class FakeChannel:
    """What an upload body uses of the channel: pausing and resuming reading."""

    _handlingRequest = False

    def __init__(self) -> None:
        self.paused = False

    def pause_body(self) -> None:
        assert not self.paused
        self.paused = True

    def resume_body(self) -> None:
        assert self.paused
        self.paused = False


class FakeRequest:
    def __init__(self) -> None:
        self.channel = FakeChannel()


class UploadBudgetTests(TestCase):
    """
    Many uploads to a slow storage: what they hold together stays under the
    budget, give or take one chunk per upload, and every upload finishes.
    """

    UPLOADS = 60
    CHUNK = 16 * KiB
    BODY = 512 * KiB

    async def test_many_uploads_slow_storage(self) -> None:
        budget = UploadBudget(1 * MiB)
        held: list[Deferred[None]] = []
        writers = [HeldWriter(held) for _ in range(self.UPLOADS)]
        bodies = []
        for writer in writers:
            appender = UploadAppender(None, writer, hashlib.sha256())  # type: ignore[arg-type]

            async def prepare(appender: UploadAppender = appender) -> UploadAppender:
                return appender

            async def abort(appender: UploadAppender) -> None:
                raise AssertionError("no client leaves")

            body = UploadBody(FakeRequest(), prepare, abort)  # type: ignore[arg-type]
            body.budget = budget
            bodies.append(body)

        bound = budget.limit + self.UPLOADS * self.CHUNK
        highest = 0
        was_exhausted = False
        sent = [0] * self.UPLOADS
        chunk = os.urandom(self.CHUNK)
        deadline = reactor.seconds() + 60
        while min(sent) < self.BODY:
            self.assertLess(reactor.seconds(), deadline, "the uploads did not finish")
            for index, body in enumerate(bodies):
                channel = body._request.channel
                if not channel.paused and sent[index] < self.BODY:
                    body.write(chunk)
                    sent[index] += len(chunk)
                    highest = max(highest, budget.total)
                    was_exhausted = was_exhausted or budget.exhausted
                    self.assertLessEqual(budget.total, bound)
            self.assertEqual(budget.total, sum(body._buffered for body in bodies))
            # The storage takes a few writes a round.
            for _ in range(3):
                if held:
                    held.pop(0).callback(None)
            await deferLater(reactor, 0.001, lambda: None)
        while held or budget.total:
            self.assertLess(reactor.seconds(), deadline, "the storage did not catch up")
            while held:
                held.pop(0).callback(None)
            await deferLater(reactor, 0.001, lambda: None)

        self.assertTrue(was_exhausted)
        self.assertGreater(highest, budget.limit)
        self.assertLess(HIGH_WATERMARK, self.UPLOADS * self.BODY)  # not the watermarks' doing
        self.assertEqual(budget.total, 0)
        self.assertFalse(budget.exhausted)
        for body, writer in zip(bodies, writers, strict=True):
            self.assertFalse(body._request.channel.paused)
            self.assertEqual(len(writer.content), self.BODY)
        print(f"\nbudget {budget.limit} B, {self.UPLOADS} uploads: at most {highest} B held")

    def test_relieved_below_low(self) -> None:
        """Waiting uploads are told once the total falls under three quarters of the limit."""
        budget = UploadBudget(100)
        told: list[str] = []
        budget.change(101)
        self.assertTrue(budget.exhausted)
        budget.wait(lambda: told.append("a"))
        budget.change(-25)  # 76: still above 75
        self.assertEqual(told, [])
        budget.change(-2)
        self.assertEqual((told, budget.exhausted), (["a"], False))
        budget.change(30)  # 104
        budget.change(-30)
        self.assertEqual(told, ["a"])


# -- (c) a real registry under slow clients ------------------------------------------

SLOWLORIS = 300
STALLED_BODIES = 100
TIMEOUT = 8.0  # readheadertimeout and bodytimeout of the process under test
SLACK = 4.0


def rss_kib(pid: int) -> int:
    """A process's resident set, in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


class SlowClients:
    """
    Connections that hold a registry: slowloris ones that send a request
    line, then a header a byte a second; and stalled ones that send part of
    an upload's body, then nothing.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.sockets: list[socket.socket] = []
        self.opened_at: dict[socket.socket, float] = {}
        self.closed_at: dict[socket.socket, float] = {}
        self.first_bytes: dict[socket.socket, bytes] = {}
        self.trickling: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, daemon=True)

    def _open(self, head: bytes) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port))
        sock.sendall(head)
        sock.setblocking(False)
        self.sockets.append(sock)
        self.opened_at[sock] = time.monotonic()
        self.first_bytes[sock] = b""
        return sock

    def open_slowloris(self, count: int) -> None:
        for _ in range(count):
            self.trickling.append(self._open(b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"))

    def open_stalled(self, uploads: list[str], body: bytes) -> None:
        for location in uploads:
            head = (
                f"PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Type: application/octet-stream\r\n"
                f"Content-Length: {4 * len(body)}\r\n\r\n"
            ).encode("ascii")
            self._open(head + body)

    def start(self) -> None:
        self._thread.start()

    def _trickle(self) -> None:
        header = b"X-Slow: " + b"a" * 4000
        position = 0
        while not self._stop.wait(1.0):
            byte = header[position % len(header) : position % len(header) + 1]
            position += 1
            for sock in self.trickling:
                if sock in self.closed_at:
                    continue
                try:
                    sock.send(byte)
                except OSError:
                    pass  # closed by the server: the reader notes it

    def poll(self, seconds: float) -> None:
        """Note the connections the server closed, for up to C{seconds}."""
        deadline = time.monotonic() + seconds
        while True:
            open_sockets = [s for s in self.sockets if s not in self.closed_at]
            remaining = deadline - time.monotonic()
            if not open_sockets or remaining <= 0:
                return
            readable, _, _ = select.select(open_sockets, [], [], min(remaining, 0.2))
            for sock in readable:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                except BlockingIOError:
                    continue
                if data:
                    self.first_bytes[sock] += data
                else:
                    self.closed_at[sock] = time.monotonic()

    @property
    def still_open(self) -> int:
        return sum(1 for s in self.sockets if s not in self.closed_at)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        for sock in self.sockets:
            sock.close()


@contextmanager
def slow_clients(port: int) -> Iterator[SlowClients]:
    clients = SlowClients(port)
    try:
        yield clients
    finally:
        clients.close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def timed(call: Callable[[], Any], latencies: list[float]) -> Any:
    start = time.perf_counter()
    result = call()
    latencies.append(time.perf_counter() - start)
    return result


def test_slow_clients_do_not_hold_the_registry(start_registry: StartRegistry, repo: str) -> None:
    """
    300 slowloris connections and 100 stalled upload bodies: a normal client
    meanwhile gets 200 manifests and pushes and pulls a blob; the registry's
    memory stays put; after the timeouts the server has closed every slow
    connection (a 408 first); nothing is logged as a problem.
    """
    registry = start_registry(readheadertimeout=f"{TIMEOUT}s", bodytimeout=f"{TIMEOUT}s")
    assert registry.process.process is not None
    pid = registry.process.process.pid
    images = Images(registry, repo)
    manifest = images.image()
    digest = images.push("latest", manifest)
    uploads = []
    for _ in range(STALLED_BODIES):
        location = registry.start_upload(repo).header("Location")
        assert location is not None
        uploads.append(registry.resolve(location).removeprefix(registry.url))
    rss_start = rss_kib(pid)
    port = int(registry.url.rsplit(":", 1)[1])

    with slow_clients(port) as slow:
        slow.open_slowloris(SLOWLORIS)
        slow.open_stalled(uploads, os.urandom(64 * KiB))
        slow.start()
        opened = time.monotonic()

        latencies: list[float] = []
        for _ in range(200):
            response = timed(lambda: images.get("latest"), latencies)
            assert response.status == 200
            assert response.body == manifest
        blob = os.urandom(3 * MiB + 17)
        blob_digest = timed(lambda: registry.push(repo, blob), latencies)
        pulled = timed(lambda: registry.request("GET", f"{repo}/blobs/{blob_digest}"), latencies)
        assert pulled.status == 200 and pulled.body == blob
        normal_done = time.monotonic() - opened
        slow.poll(0)
        held = slow.still_open
        rss_peak = rss_kib(pid)

        slow.poll(TIMEOUT + SLACK - (time.monotonic() - opened))
        rss_after = rss_kib(pid)
        lifetimes = [slow.closed_at[s] - slow.opened_at[s] for s in slow.closed_at]

        p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
        print(
            f"\nslow connections: {len(slow.sockets)} opened, {held} still held after the "
            f"normal client's {len(latencies)} requests ({normal_done:.2f} s); "
            f"normal client p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
            f"max {max(latencies) * 1000:.1f} ms; "
            f"registry RSS {rss_start // 1024} MiB at start, {rss_peak // 1024} MiB under load, "
            f"{rss_after // 1024} MiB after; slow connections closed after "
            f"{min(lifetimes, default=0):.1f} to {max(lifetimes, default=0):.1f} s"
        )
        assert slow.still_open == 0, f"{slow.still_open} slow connections still open"
        assert all(TIMEOUT - 0.5 < lifetime < TIMEOUT + SLACK for lifetime in lifetimes)
        if normal_done < TIMEOUT - 1:
            assert held == len(slow.sockets)  # none was closed early
        assert all(slow.first_bytes[s].startswith(b"HTTP/1.1 408 ") for s in slow.sockets), (
            "a slow connection was closed without a 408"
        )
        assert p99 < 2.0
        assert max(rss_peak, rss_after) - rss_start < 100 * 1024

    # The registry serves on, and the stalled uploads kept what they received.
    assert images.get("latest").status == 200
    assert digest == f"sha256:{hashlib.sha256(manifest).hexdigest()}"
    status = registry.request("GET", uploads[0])
    assert status.status == 204, status.body
    assert status.header("Range") == f"0-{64 * KiB - 1}"
