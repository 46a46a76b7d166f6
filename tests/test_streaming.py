"""
Streaming both ways: the private Twisted attributes the streaming request
factory relies on, back-pressure from a slow driver to the client's socket,
the download producer, and the upload appender between them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web import http
from zope.interface import implementer

from txregistry.config import load_config
from txregistry.digest import Digest
from txregistry.drivers.base import ValidatingDriver
from txregistry.drivers.errors import PathNotFoundError, StorageUnavailableError
from txregistry.drivers.inmemory import InMemoryDriver
from txregistry.interfaces import IFileReader, IFileWriter
from txregistry.registry import paths
from txregistry.registry.repository import Registry
from txregistry.registry.uploads import WRITE_BATCH, UploadAppender, UploadTotals
from txregistry.resources.download import READ_SIZE, BlobStreamer
from txregistry.resources.site import make_site
from txregistry.resources.streaming import HIGH_WATERMARK, LOW_WATERMARK, StreamingRequest
from txregistry.testing.drivers import random_bytes

CHUNK = 64 * 1024
MiB = 1024 * 1024


async def until(case: TestCase, condition: Callable[[], bool], what: str, timeout: float = 20):
    """Let the reactor run (threads finish hashing) until C{condition} holds."""
    deadline = reactor.seconds() + timeout
    while not condition():
        if reactor.seconds() > deadline:
            case.fail(f"timed out waiting for {what}")
        await deferLater(reactor, 0.001, lambda: None)


# -- (a) the private attributes of HTTPChannel --------------------------------


class RecordingRequest(http.Request):
    """Notes what the channel looks like at each step of a request."""

    events: list[tuple[Any, ...]]

    def gotLength(self, length: int | None) -> None:
        channel = self.channel
        self.events.append(
            (
                "gotLength",
                length,
                channel._command,
                channel._path,
                channel._handlingRequest,
                channel._networkProducer,
            )
        )
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        self.events.append(("chunk", data, self.channel._handlingRequest))
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        self.events.append(("received", self.channel._handlingRequest))
        super().requestReceived(command, path, version)


class HTTPChannelPrivatesTests(SynchronousTestCase):
    """
    Pin the private L{http.HTTPChannel} attributes that
    L{txregistry.resources.streaming} relies on: when one of these fails
    after a Twisted upgrade, the streaming request factory needs changing.
    """

    def setUp(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        events = self.events

        class Recording(RecordingRequest):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.events = events

        self.channel = http.HTTPChannel()
        self.channel.requestFactory = Recording
        self.channel.callLater = Clock().callLater
        self.transport = StringTransport()
        self.channel.makeConnection(self.transport)
        self.addCleanup(self.channel.connectionLost, Failure(ConnectionDone()))

    def test_network_producer_is_the_transport(self) -> None:
        """C{_networkProducer} is the transport: pausing it stops reading from the socket."""
        self.assertIs(self.channel._networkProducer, self.transport)
        self.channel._networkProducer.pauseProducing()
        self.assertEqual(self.transport.producerState, "paused")
        self.channel._networkProducer.resumeProducing()
        self.assertEqual(self.transport.producerState, "producing")

    def test_request_line_known_at_got_length(self) -> None:
        """
        C{_command} and C{_path} hold the request line when C{gotLength} is
        called, before any of the body; C{_handlingRequest} is still false.
        """
        self.channel.dataReceived(
            b"PATCH /v2/foo/blobs/uploads/abc?_state=x%2By HTTP/1.1\r\n"
            b"Host: 127.0.0.1\r\nContent-Length: 10\r\n\r\n"
        )
        self.assertEqual(
            self.events,
            [
                (
                    "gotLength",
                    10,
                    b"PATCH",
                    b"/v2/foo/blobs/uploads/abc?_state=x%2By",
                    False,
                    self.transport,
                )
            ],
        )

    def test_chunks_delivered_as_they_arrive(self) -> None:
        """
        Each piece of body is handed to C{handleContentChunk} as it arrives;
        C{_handlingRequest} turns true only once the whole body is in.
        """
        self.channel.dataReceived(b"PUT /x HTTP/1.1\r\nContent-Length: 10\r\n\r\n12345")
        self.assertEqual(self.events[1:], [("chunk", b"12345", False)])
        self.channel.dataReceived(b"678")
        self.assertEqual(self.events[2:], [("chunk", b"678", False)])
        self.assertFalse(self.channel._handlingRequest)
        self.channel.dataReceived(b"90")
        self.assertEqual(self.events[3:], [("chunk", b"90", False), ("received", True)])
        self.assertTrue(self.channel._handlingRequest)

    def test_chunked_body(self) -> None:
        """A chunked body has no length and arrives decoded, chunk by chunk."""
        self.channel.dataReceived(
            b"PATCH /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        )
        self.assertEqual(self.events[0][:4], ("gotLength", None, b"PATCH", b"/x"))
        self.assertEqual(self.events[1:], [("chunk", b"hello", False)])
        self.channel.dataReceived(b"6\r\n world\r\n0\r\n\r\n")
        self.assertEqual(self.events[2:], [("chunk", b" world", False), ("received", True)])

    def test_response_resumes_paused_transport(self) -> None:
        """
        When the body is complete, C{_handlingRequest} is true, and finishing
        the response resumes the transport even if it was paused meanwhile:
        the upload body leaves resuming to the channel then.
        """
        self.channel.dataReceived(b"PUT /x HTTP/1.1\r\nContent-Length: 2\r\n\r\nab")
        request = self.channel.requests[-1]
        self.assertTrue(self.channel._handlingRequest)
        self.channel._networkProducer.pauseProducing()
        request.finish()
        self.assertFalse(self.channel._handlingRequest)
        self.assertEqual(self.transport.producerState, "producing")
        self.assertTrue(self.transport.value().startswith(b"HTTP/1.1 200 OK\r\n"))


# -- (b) back-pressure from a slow driver -------------------------------------


@implementer(IFileWriter)
class SlowWriter:
    """A writer whose writes wait until its driver releases them."""

    def __init__(self, driver: SlowDriver, inner: IFileWriter) -> None:
        self._driver = driver
        self._inner = inner
        self.size = inner.size

    def write(self, data: bytes) -> Deferred[None]:
        self.size += len(data)
        done: Deferred[None] = Deferred()

        def release() -> None:
            self._inner.write(data)
            done.callback(None)

        self._driver.held.append((len(data), release))
        if not self._driver.holding:
            self._driver.release_all()
        return done

    def close(self) -> Deferred[None]:
        return self._inner.close()

    def commit(self) -> Deferred[None]:
        return self._inner.commit()

    def cancel(self) -> Deferred[None]:
        return self._inner.cancel()


class SlowDriver(InMemoryDriver):
    """
    An in-memory driver whose writers hold every write while C{holding},
    until the test releases it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.holding = False
        self.held: list[tuple[int, Callable[[], None]]] = []

    def writer(self, path: str, append: bool) -> Deferred[IFileWriter]:
        return super().writer(path, append).addCallback(lambda inner: SlowWriter(self, inner))

    def release_one(self) -> None:
        """Let the oldest held write through."""
        self.held.pop(0)[1]()

    def release_all(self) -> None:
        """Let every held write through."""
        while self.held:
            self.release_one()


def parse_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    """The status, headers (lower-case names) and the rest, of one response."""
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, rest


class BackpressureTests(TestCase):
    """
    An upload body meets a slow driver: the site stops reading from the
    client while too many bytes wait, and starts again once the driver has
    caught up.
    """

    def setUp(self) -> None:
        config = load_config(
            "version: 0.1\n"
            "log: {accesslog: {disabled: true}}\n"
            "storage: {inmemory: {}}\n"
            "http: {addr: '127.0.0.1:0', secret: test}\n",
            environ={},
        )
        self.storage = SlowDriver()
        site = make_site(config, Registry(ValidatingDriver(self.storage)), b"test")
        self.protocol = self.connect(site)

    def connect(self, site: Any) -> Any:
        protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        protocol.callLater = Clock().callLater  # no real idle timeouts
        self.transport = StringTransport()
        protocol.makeConnection(self.transport)
        self.addCleanup(lambda: protocol.connectionLost(Failure(ConnectionDone())))
        return protocol

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        """Wait for the next response's head; clear the transport."""
        await until(self, lambda: b"\r\n\r\n" in self.transport.value(), "a response")
        result = parse_response(self.transport.value())
        self.transport.clear()
        return result

    async def start_upload(self) -> tuple[str, str]:
        """Start an upload of C{foo}; its URL's path and query, and its id."""
        self.send(
            b"POST /v2/foo/blobs/uploads/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
        )
        status, headers, _ = await self.response()
        self.assertEqual(status, 202)
        location = urlsplit(headers["location"])
        return f"{location.path}?{location.query}", headers["docker-upload-uuid"]

    def patch_head(self, url: str, length: int) -> bytes:
        return (
            f"PATCH {url} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {length}\r\n\r\n"
        ).encode("ascii")

    def held_sizes(self) -> list[int]:
        return [size for size, _ in self.storage.held]

    async def test_pause_and_resume(self) -> None:
        """
        The transport is paused as soon as more than C{HIGH_WATERMARK} bytes
        wait for the driver, stays paused while more than C{LOW_WATERMARK}
        wait, and resumes below; the stored upload is the whole body.
        """
        url, upload_id = await self.start_upload()
        body = random_bytes(12 * MiB + 1000, seed=7)
        self.storage.holding = True
        self.send(self.patch_head(url, len(body)))
        request = self.protocol.requests[-1]
        self.assertIsInstance(request, StreamingRequest)
        self.assertIsNotNone(request.upload_body)

        chunks = [body[offset : offset + CHUNK] for offset in range(0, len(body), CHUNK)]
        sent = 0
        while sent <= HIGH_WATERMARK:
            self.assertEqual(self.transport.producerState, "producing", sent)
            self.send(chunks.pop(0))
            sent += CHUNK
        # One chunk past the high watermark: paused, with the first chunk
        # still held by the driver and the rest waiting in memory.
        self.assertEqual(sent, HIGH_WATERMARK + CHUNK)
        self.assertEqual(self.transport.producerState, "paused")
        self.assertEqual(self.held_sizes(), [CHUNK])

        # The driver takes the first chunk: 8 MiB still wait; the next batch
        # is as large as a batch may be.
        self.storage.release_one()
        await until(self, lambda: bool(self.storage.held), "the second batch")
        self.assertEqual(self.held_sizes(), [WRITE_BATCH])
        self.assertEqual(self.transport.producerState, "paused")

        # 4 MiB wait: above the low watermark, still paused.
        self.storage.release_one()
        await until(self, lambda: bool(self.storage.held), "the third batch")
        self.assertEqual(self.held_sizes(), [WRITE_BATCH])
        self.assertGreater(WRITE_BATCH, LOW_WATERMARK)
        self.assertEqual(self.transport.producerState, "paused")

        # Nothing waits: reading resumes.
        self.storage.release_one()
        await until(self, lambda: self.transport.producerState == "producing", "resuming")
        self.assertEqual(self.storage.held, [])

        self.storage.holding = False
        for chunk in chunks:
            self.send(chunk)
            self.assertEqual(self.transport.producerState, "producing")
        status, headers, _ = await self.response()
        self.assertEqual(status, 202)
        self.assertEqual(headers["range"], f"0-{len(body) - 1}")
        self.assertEqual(self.storage.get_content(paths.upload_data("foo", upload_id)).result, body)

        digest = Digest.of(body)
        location = urlsplit(headers["location"])
        self.send(
            f"PUT {location.path}?{location.query}&digest={digest} HTTP/1.1\r\n"
            "Host: 127.0.0.1\r\nContent-Length: 0\r\n\r\n".encode("ascii")
        )
        status, headers, _ = await self.response()
        self.assertEqual(status, 201)
        self.assertEqual(headers["docker-content-digest"], str(digest))
        self.assertEqual(self.storage.get_content(paths.blob_data(digest)).result, body)

    async def test_paused_by_last_chunk(self) -> None:
        """
        When the last chunk of a body crosses the high watermark, the
        transport is resumed once the response is sent, and the connection
        serves the next request.
        """
        url, upload_id = await self.start_upload()
        body = random_bytes(HIGH_WATERMARK + CHUNK, seed=8)
        self.storage.holding = True
        self.send(self.patch_head(url, len(body)))
        for offset in range(0, len(body), CHUNK):
            self.send(body[offset : offset + CHUNK])
        self.assertEqual(self.transport.producerState, "paused")
        self.assertTrue(self.protocol._handlingRequest)

        self.storage.holding = False
        self.storage.release_all()
        status, headers, _ = await self.response()
        self.assertEqual(status, 202)
        self.assertEqual(headers["range"], f"0-{len(body) - 1}")
        self.assertEqual(self.transport.producerState, "producing")
        self.assertEqual(self.storage.get_content(paths.upload_data("foo", upload_id)).result, body)

        self.send(b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, _, rest = await self.response()
        self.assertEqual((status, rest), (200, b"{}"))

    async def test_client_leaves_half_way(self) -> None:
        """
        When the client leaves in the middle of a chunk, what arrived is
        kept, so that the upload can resume from there.
        """
        url, upload_id = await self.start_upload()
        self.send(self.patch_head(url, 3 * CHUNK))
        self.send(b"a" * CHUNK + b"b" * 1000)
        self.protocol.connectionLost(Failure(ConnectionDone()))
        data_path = paths.upload_data("foo", upload_id)
        await until(
            self,
            lambda: len(self.storage.get_content(data_path).result) == CHUNK + 1000,
            "the received bytes to be stored",
        )
        self.assertEqual(self.storage.get_content(data_path).result, b"a" * CHUNK + b"b" * 1000)


# -- (c) the download producer --------------------------------------------------


@implementer(IFileReader)
class HeldReader:
    """A reader whose reads the test answers."""

    def __init__(self) -> None:
        self.reads: list[tuple[int, Deferred[bytes]]] = []
        self.closed = 0

    def read(self, max_bytes: int) -> Deferred[bytes]:
        result: Deferred[bytes] = Deferred()
        self.reads.append((max_bytes, result))
        return result

    def close(self) -> Deferred[None]:
        self.closed += 1
        return succeed(None)

    def answer(self, data: bytes | None = None) -> None:
        """Answer the only pending read, with as much as it asked for by default."""
        pending = [(size, read) for size, read in self.reads if not read.called]
        assert len(pending) == 1, pending
        size, read = pending[0]
        read.callback(b"x" * size if data is None else data)

    @property
    def pending(self) -> int:
        return sum(1 for _, read in self.reads if not read.called)


class FakeRequest:
    """
    What L{BlobStreamer} uses of a request: producer registration, write, and
    the channel (L{None} once the client is gone).
    """

    def __init__(self) -> None:
        self.channel: Any = object()
        self.producer: Any = None
        self.streaming: bool | None = None
        self.written: list[bytes] = []

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        assert self.producer is None
        self.producer, self.streaming = producer, streaming

    def unregisterProducer(self) -> None:
        assert self.producer is not None
        self.producer = None

    def write(self, data: bytes) -> None:
        self.written.append(data)

    @property
    def sent(self) -> int:
        return sum(map(len, self.written))


class BlobStreamerTests(SynchronousTestCase):
    """The download producer reads one chunk ahead, no more, and stops when told."""

    def setUp(self) -> None:
        self.request = FakeRequest()
        self.reader = HeldReader()

    def stream(self, length: int) -> tuple[BlobStreamer, Deferred[None]]:
        streamer = BlobStreamer(self.request, self.reader, length)  # type: ignore[arg-type]
        return streamer, streamer.stream()

    def test_streams_everything(self) -> None:
        """Reads follow writes until exactly C{length} bytes are sent."""
        length = 2 * READ_SIZE + 10
        streamer, done = self.stream(length)
        self.assertIs(self.request.producer, streamer)
        self.assertTrue(self.request.streaming)
        self.assertEqual([size for size, _ in self.reader.reads], [READ_SIZE])
        self.reader.answer()
        self.reader.answer()
        self.assertNoResult(done)
        self.reader.answer()
        self.assertEqual([size for size, _ in self.reader.reads], [READ_SIZE, READ_SIZE, 10])
        self.assertEqual(self.request.sent, length)
        self.assertIsNone(self.successResultOf(done))
        self.assertIsNone(self.request.producer)
        self.assertEqual(self.reader.closed, 1)

    def test_never_more_than_length(self) -> None:
        """A reader returning more than asked for is cut at C{length}."""
        _, done = self.stream(10)
        self.reader.answer(b"y" * 25)
        self.assertEqual(self.request.written, [b"y" * 10])
        self.successResultOf(done)
        self.assertEqual(len(self.reader.reads), 1)

    def test_short_reads(self) -> None:
        """Short reads are fine: reading goes on until C{length} bytes came."""
        _, done = self.stream(10)
        for piece in (b"ab", b"cdef", b"ghij"):
            self.reader.answer(piece)
        self.assertEqual(b"".join(self.request.written), b"abcdefghij")
        self.successResultOf(done)

    def test_pause_holds_one_chunk(self) -> None:
        """
        While paused, the chunk being read is held, not written, and nothing
        more is read; resuming writes it and reads on.
        """
        streamer, done = self.stream(3 * READ_SIZE)
        self.reader.answer()
        self.assertEqual(self.request.sent, READ_SIZE)
        streamer.pauseProducing()
        self.reader.answer()
        self.assertEqual(self.request.sent, READ_SIZE)
        self.assertEqual((len(self.reader.reads), self.reader.pending), (2, 0))
        streamer.pauseProducing()
        self.assertEqual(len(self.reader.reads), 2)

        streamer.resumeProducing()
        self.assertEqual(self.request.sent, 2 * READ_SIZE)
        self.assertEqual((len(self.reader.reads), self.reader.pending), (3, 1))
        streamer.resumeProducing()  # a second resume reads nothing more
        self.assertEqual(len(self.reader.reads), 3)
        self.reader.answer()
        self.assertEqual(self.request.sent, 3 * READ_SIZE)
        self.successResultOf(done)

    def test_pause_before_read_finishes_the_last_chunk(self) -> None:
        """The last chunk, read while paused, is written on resume, then streaming is done."""
        streamer, done = self.stream(100)
        streamer.pauseProducing()
        self.reader.answer()
        self.assertEqual(self.request.sent, 0)
        self.assertNoResult(done)
        streamer.resumeProducing()
        self.assertEqual(self.request.sent, 100)
        self.successResultOf(done)
        self.assertEqual(self.reader.closed, 1)

    def test_stop_producing(self) -> None:
        """After C{stopProducing}: done, reader closed, nothing more read or written."""
        streamer, done = self.stream(3 * READ_SIZE)
        self.reader.answer()
        streamer.stopProducing()
        self.assertIsNone(self.successResultOf(done))
        self.assertIsNone(self.request.producer)
        self.assertEqual(self.reader.closed, 1)
        self.reader.answer()  # the read in flight comes back
        streamer.resumeProducing()
        self.assertEqual(self.request.sent, READ_SIZE)
        self.assertEqual(len(self.reader.reads), 2)
        self.assertEqual(self.reader.closed, 1)

    def test_stop_while_paused_drops_held_chunk(self) -> None:
        """A held chunk is never written once the client has gone."""
        streamer, done = self.stream(2 * READ_SIZE)
        streamer.pauseProducing()
        self.reader.answer()
        streamer.stopProducing()
        streamer.resumeProducing()
        self.assertEqual(self.request.written, [])
        self.successResultOf(done)

    def test_early_end_fails(self) -> None:
        """A blob shorter than its stored size fails the stream."""
        _, done = self.stream(100)
        self.reader.answer(b"z" * 40)
        self.reader.answer(b"")
        self.failureResultOf(done, EOFError)
        self.assertEqual(self.reader.closed, 1)
        self.assertIsNone(self.request.producer)

    def test_read_failure_fails(self) -> None:
        """A failing read fails the stream."""
        _, done = self.stream(100)
        self.reader.reads[0][1].errback(StorageUnavailableError("gone"))
        self.failureResultOf(done, StorageUnavailableError)
        self.assertEqual(self.reader.closed, 1)


# -- (d) the upload appender -------------------------------------------------------


@implementer(IFileWriter)
class HeldWriter:
    """A writer whose writes the test completes or fails, one by one."""

    def __init__(self) -> None:
        self.size = 0
        self.writes: list[tuple[bytes, Deferred[None]]] = []
        self.closed = False

    def write(self, data: bytes) -> Deferred[None]:
        self.size += len(data)
        result: Deferred[None] = Deferred()
        self.writes.append((data, result))
        return result

    def close(self) -> Deferred[None]:
        self.closed = True
        return succeed(None)

    def commit(self) -> Deferred[None]:
        raise AssertionError("an appender never commits")

    def cancel(self) -> Deferred[None]:
        raise AssertionError("an appender never cancels")

    @property
    def pending(self) -> list[Deferred[None]]:
        return [result for _, result in self.writes if not result.called]

    def sizes(self) -> list[int]:
        return [len(data) for data, _ in self.writes]

    @property
    def content(self) -> bytes:
        return b"".join(data for data, _ in self.writes)


class UploadAppenderTests(TestCase):
    """The appender batches queued bytes into driver writes, one write at a time."""

    def setUp(self) -> None:
        self.writer = HeldWriter()
        self.progress = 0

        def progressed() -> None:
            self.progress += 1

        # The session is only used by close(), after a successful flush.
        self.appender = UploadAppender(
            None,  # type: ignore[arg-type]
            self.writer,
            hashlib.sha256(),
            on_progress=progressed,
        )

    async def complete(self, count: int) -> None:
        """Complete the pending driver write, and wait until the appender took it in."""
        self.writer.pending[0].callback(None)
        await until(self, lambda: self.progress == count, f"batch {count} to be taken")

    async def test_batches(self) -> None:
        """
        Bytes queued while a write is in flight go out in batches of at
        most C{WRITE_BATCH}, in order; C{buffered} counts what waits,
        in flight included, and C{size} what the upload will hold.
        """
        self.appender.write(b"x")
        self.assertEqual(self.writer.sizes(), [1])
        pieces = [random_bytes(MiB, seed=seed) for seed in range(10)]
        for piece in pieces:
            self.appender.write(piece)
        self.assertEqual(self.writer.sizes(), [1])
        self.assertEqual(self.appender.buffered, 1 + 10 * MiB)
        self.assertEqual(self.appender.size, 1 + 10 * MiB)

        expected = [(4 * MiB, 10 * MiB), (4 * MiB, 6 * MiB), (2 * MiB, 2 * MiB)]
        for batch, (size, buffered) in enumerate(expected, start=1):
            await self.complete(batch)
            self.assertEqual(self.writer.sizes()[-1], size)
            self.assertEqual(self.appender.buffered, buffered)
            self.assertEqual(self.appender.size, 1 + 10 * MiB)
        await self.complete(4)
        self.assertEqual(self.appender.buffered, 0)
        await self.appender.flush()

        content = b"x" + b"".join(pieces)
        self.assertEqual(self.writer.content, content)
        self.assertEqual(self.appender.size, len(content))
        self.assertEqual(self.appender.hasher.hexdigest(), hashlib.sha256(content).hexdigest())

    async def test_oversized_chunk_alone(self) -> None:
        """A chunk larger than a batch is written whole, and alone."""
        self.appender.write(b"a")
        self.appender.write(b"b" * (WRITE_BATCH + 1))
        self.appender.write(b"c")
        await self.complete(1)
        await self.complete(2)
        await self.complete(3)
        self.assertEqual(self.writer.sizes(), [1, WRITE_BATCH + 1, 1])
        await self.appender.flush()

    async def test_totals(self) -> None:
        """The bytes taken are counted in the registry's upload totals (for the metrics)."""
        totals = UploadTotals()
        self.appender.totals = totals
        self.appender.write(b"abc")
        self.appender.write(b"")
        self.appender.write(b"de")
        self.assertEqual(totals.bytes_received, 5)
        await self.complete(1)
        await self.complete(2)
        await self.appender.flush()

    async def test_empty_write_ignored(self) -> None:
        """Writing nothing starts no driver write."""
        self.appender.write(b"")
        self.assertEqual(self.writer.writes, [])
        await self.appender.flush()

    async def test_flush_waits(self) -> None:
        """C{flush} fires only once the driver has taken every byte."""
        self.appender.write(b"first")
        self.appender.write(b"second")
        flushed = ensureDeferred(self.appender.flush())
        await self.complete(1)
        self.assertFalse(flushed.called)
        await self.complete(2)
        await flushed
        self.assertEqual(self.writer.content, b"firstsecond")

    async def test_failed_write(self) -> None:
        """
        A failed driver write makes C{flush} raise the driver's error, drops
        what waited and every later write.
        """
        self.appender.write(b"first")
        self.appender.write(b"second")
        flushed = ensureDeferred(self.appender.flush())
        self.writer.pending[0].errback(StorageUnavailableError("disk on fire"))
        await until(self, lambda: self.progress == 1, "the failure to be taken")
        self.assertEqual(self.appender.buffered, 0)
        with self.assertRaises(StorageUnavailableError):
            await flushed
        self.appender.write(b"third")
        self.assertEqual(self.writer.sizes(), [5])
        self.assertEqual(self.appender.buffered, 0)
        with self.assertRaises(StorageUnavailableError):
            await self.appender.flush()

    async def test_close_after_failure(self) -> None:
        """C{close} raises the write's error, and still closes the driver's writer."""
        self.appender.write(b"first")
        self.writer.pending[0].errback(PathNotFoundError("/gone"))
        await until(self, lambda: self.progress == 1, "the failure to be taken")
        with self.assertRaises(PathNotFoundError):
            await self.appender.close()
        self.assertTrue(self.writer.closed)
