"""
A blob's download from upstream into storage (L{txregistry.proxy.fetch}), in
process: a fake upstream response whose body the test pushes, a real
L{Registry} over the filesystem driver (and over the in-memory driver), and a
driver wrapper that holds writes and moves, or hides uploads from readers,
when a test says so.

The fetch's clock is a L{Clock}, so the stall watchdog runs only when a test
advances it; the drivers hash and write in threads, whose results come back
through the real reactor, so the tests are trial's, asynchronous.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred, fail, succeed
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IProtocol
from twisted.internet.task import Clock, deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import ResponseDone, ResponseFailed
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import UNKNOWN_LENGTH
from zope.interface import implementer

from support import temporary_directory, wait_until
from txregistry.digest import Digest
from txregistry.drivers.base import perform
from txregistry.drivers.filesystem import FilesystemDriver
from txregistry.drivers.inmemory import InMemoryDriver
from txregistry.errors import BLOB_UNKNOWN, DIGEST_INVALID, RegistryError
from txregistry.interfaces import (
    IFileReader,
    IFileWriter,
    IGrowingFileReader,
    IStorageDriver,
    WriteOperation,
)
from txregistry.proxy.fetch import (
    HIGH_WATERMARK,
    LOW_WATERMARK,
    READER_BUFFER,
    RECEIVE_SIZE,
    STALL_TIMEOUT,
    BlobFetch,
    FetchFailed,
    FetchReader,
    GrowingFileReader,
)
from txregistry.registry import paths
from txregistry.registry.blobs import BlobDescriptor
from txregistry.registry.repository import Registry
from txregistry.testing.drivers import random_bytes

if TYPE_CHECKING:
    _Base = TestCase
else:
    _Base = object

MiB = 1024 * 1024
CHUNK = 64 * 1024
NAME = "library/app"


class FakeTransport:
    """Upstream's connection, as the body's protocol sees it: records what it is asked."""

    def __init__(self) -> None:
        self.paused = False
        self.pauses = 0
        self.resumes = 0
        self.stopped = False

    def pauseProducing(self) -> None:
        self.paused = True
        self.pauses += 1

    def resumeProducing(self) -> None:
        self.paused = False
        self.resumes += 1

    def stopProducing(self) -> None:
        self.stopped = True


class FakeResponse:
    """
    Upstream's response to a blob's GET: C{length} as announced, and a body
    the test pushes (L{send}) and ends (L{end}).  With C{whole_body}, the
    body is delivered and ended within C{deliverBody}, as Twisted does with
    a body it has already received.
    """

    def __init__(self, length: Any, whole_body: bytes | None = None) -> None:
        self.length = length
        self.transport = FakeTransport()
        self.protocol: IProtocol | None = None
        self._whole_body = whole_body

    def deliverBody(self, protocol: IProtocol) -> None:
        self.protocol = protocol
        protocol.makeConnection(self.transport)  # type: ignore[arg-type]
        if self._whole_body is not None:
            self.send(self._whole_body)
            self.end()

    def send(self, data: bytes, chunk: int = CHUNK) -> None:
        """Push C{data} to the body's protocol in pieces of C{chunk}."""
        assert self.protocol is not None, "deliverBody was not called"
        for start in range(0, len(data), chunk):
            self.protocol.dataReceived(data[start : start + chunk])

    def end(self, reason: Exception | None = None) -> None:
        """End the body: complete (C{ResponseDone}) unless another C{reason} is given."""
        assert self.protocol is not None, "deliverBody was not called"
        self.protocol.connectionLost(Failure(ResponseDone() if reason is None else reason))


@implementer(IFileReader)
class EmptyReader:
    """A reader that sees nothing, as of a file a bucket has not completed yet."""

    def read(self, max_bytes: int) -> Deferred[bytes]:
        return succeed(b"")

    def close(self) -> Deferred[None]:
        return succeed(None)


@implementer(IFileWriter)
class HeldWriter:
    """A driver's writer whose writes wait for the test while its driver holds them."""

    def __init__(self, driver: ControlledDriver, writer: IFileWriter) -> None:
        self._driver = driver
        self._writer = writer
        self.size = writer.size

    def write(self, data: bytes) -> Deferred[None]:
        self.size += len(data)
        if self._driver.fail_writes:
            return fail(OSError(28, "No space left on device"))
        if not self._driver.hold_writes:
            return self._writer.write(data)
        gate: Deferred[None] = Deferred()
        self._driver.held_writes.append(gate)
        return gate.addCallback(lambda _: self._writer.write(data))

    def close(self) -> Deferred[None]:
        return self._writer.close()

    def commit(self) -> Deferred[None]:
        return self._writer.commit()

    def cancel(self) -> Deferred[None]:
        return self._writer.cancel()


class ControlledDriver:
    """
    A driver wrapped so that the test decides when writes and moves complete
    (C{hold_writes}, C{hold_moves}), and whether readers see the data of an
    upload in progress (C{hide_uploads}).  Everything else goes through.
    """

    def __init__(self, driver: IStorageDriver) -> None:
        self.driver = driver
        self.hold_writes = False
        self.held_writes: list[Deferred[None]] = []
        self.hold_moves = False
        self.held_moves: list[Deferred[None]] = []
        self.hide_uploads = False
        self.fail_writes = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.driver, name)

    def writer(self, path: str, append: bool) -> Deferred[IFileWriter]:
        return self.driver.writer(path, append).addCallback(lambda w: HeldWriter(self, w))

    def move(self, source: str, dest: str) -> Deferred[None]:
        if not self.hold_moves:
            return self.driver.move(source, dest)
        gate: Deferred[None] = Deferred()
        self.held_moves.append(gate)
        return gate.addCallback(lambda _: self.driver.move(source, dest))

    def write_batch(self, operations: Sequence[WriteOperation]) -> Deferred[None]:
        """One write after another, through this wrapper's (a move may be held)."""

        async def one_by_one() -> None:
            for operation in operations:
                await perform(self, operation)

        return ensureDeferred(one_by_one())

    def reader(self, path: str, offset: int = 0) -> Deferred[IFileReader]:
        if self.hide_uploads and "/_uploads/" in path:
            return succeed(EmptyReader())
        return self.driver.reader(path, offset)

    def release_write(self) -> None:
        """Let the oldest held write go to the driver."""
        self.held_writes.pop(0).callback(None)

    def release_all(self) -> None:
        """Hold nothing any more, and let everything held go."""
        self.hold_writes = self.hold_moves = False
        held, self.held_writes, self.held_moves = self.held_writes + self.held_moves, [], []
        for gate in held:
            gate.callback(None)


class Consumer:
    """
    A client reading a reader to its end as fast as bytes come, keeping
    them; C{done} fires with all of them (or fails as the reader does), once
    the reader is closed.
    """

    def __init__(self, reader: IFileReader, chunk: int = CHUNK) -> None:
        self.reader = reader
        self.chunk = chunk
        self.parts: list[bytes] = []
        self.done: Deferred[bytes] = ensureDeferred(self._run())

    @property
    def data(self) -> bytes:
        return b"".join(self.parts)

    @property
    def received(self) -> int:
        return sum(map(len, self.parts))

    async def _run(self) -> bytes:
        try:
            while data := await self.reader.read(self.chunk):
                if len(data) > self.chunk:
                    raise AssertionError(f"read({self.chunk}) returned {len(data)} bytes")
                self.parts.append(data)
        finally:
            await self.reader.close()
        return self.data


async def spin(seconds: float = 0.05) -> None:
    """Let the reactor run a while (threads finish what they were given)."""
    await deferLater(reactor, seconds, lambda: None)


class FetchTestsMixin(_Base):
    """
    L{BlobFetch} and L{FetchReader} over one driver; mix into a trial
    L{TestCase} that provides L{make_driver}, L{stored} and L{uploads_left}.
    """

    def make_driver(self) -> IStorageDriver:
        """An empty driver for one test."""
        raise NotImplementedError

    def stored(self) -> list[str]:
        """The driver path of every file stored."""
        raise NotImplementedError

    def uploads_left(self) -> list[str]:
        """What is left of the repository's uploads (folders or files)."""
        raise NotImplementedError

    def setUp(self) -> None:
        self.driver = ControlledDriver(self.make_driver())
        self.registry = Registry(self.driver)  # type: ignore[arg-type]
        self.repository = self.registry.repository(NAME)
        self.clock = Clock()
        # Nothing stays held when a test fails half-way.
        self.addCleanup(self.driver.release_all)

    async def start_fetch(
        self,
        data: bytes,
        *,
        length: Any = None,
        digest: Digest | None = None,
        whole_body: bool = False,
    ) -> tuple[BlobFetch, FakeResponse]:
        """A started fetch of C{data}, announced as C{length} bytes (its size unless given)."""
        response = FakeResponse(
            len(data) if length is None else length, data if whole_body else None
        )
        fetch = BlobFetch(
            self.repository,
            Digest.of(data) if digest is None else digest,
            response,  # type: ignore[arg-type]
            self.clock,
        )
        await fetch.start()
        fetch.begin()  # as the reactor's next turn would (the fetch's clock is a Clock)
        return fetch, response

    async def assert_stored(self, data: bytes) -> None:
        """The blob of C{data} is stored, linked here, and nothing of its upload is left."""
        digest = Digest.of(data)
        self.assertEqual(await self.registry.blobs.stat(digest), BlobDescriptor(digest, len(data)))
        self.assertEqual(
            await self.repository.blobs.stat(digest), BlobDescriptor(digest, len(data))
        )
        self.assertEqual(await self.driver.get_content(paths.blob_data(digest)), data)
        self.assertEqual(self.uploads_left(), [])

    async def assert_not_stored(self, digest: Digest) -> None:
        """Nothing is stored under the blob's path, and the blob store says so."""
        self.assertNotIn(paths.blob_data(digest), self.stored())
        with self.assertRaises(RegistryError) as raised:
            await self.registry.blobs.stat(digest)
        self.assertIs(raised.exception.error_code, BLOB_UNKNOWN)

    async def assert_failed(
        self, fetch: BlobFetch, consumers: list[Consumer], error: type[Exception] = FetchFailed
    ) -> Failure:
        """
        Every consumer failed with L{FetchFailed} having received less than
        the whole blob, C{result()} failed with C{error}, the upload is gone
        and no blob stored.
        """
        for consumer in consumers:
            await self.assertFailure(consumer.done, FetchFailed)
            if fetch.size is not None:
                self.assertLess(consumer.received, fetch.size)
        await self.assertFailure(fetch.result(), error)
        self.assertIsNotNone(fetch.failure)
        await wait_until(lambda: not self.uploads_left())
        await self.assert_not_stored(fetch.digest)
        assert fetch.failure is not None
        return fetch.failure

    # -- a verified blob --------------------------------------------------------------

    async def test_one_reader(self) -> None:
        """
        One reader gets the whole blob; the blob is visible only once
        verified; C{result()} fires with its descriptor; its upload is gone.
        """
        data = random_bytes(3 * MiB + 17, seed=1)
        fetch, response = await self.start_fetch(data)
        self.assertEqual(fetch.size, len(data))
        consumer = Consumer(fetch.reader(0))
        response.send(data)
        await wait_until(lambda: fetch.stored == len(data))
        self.assertFalse(fetch.finished)
        await self.assert_not_stored(fetch.digest)

        response.end()
        descriptor = await fetch.result()
        self.assertEqual(descriptor, BlobDescriptor(Digest.of(data), len(data)))
        self.assertEqual(fetch.descriptor, descriptor)
        self.assertEqual(await consumer.done, data)
        await self.assert_stored(data)
        self.assertFalse(response.transport.stopped)
        self.assertEqual(response.transport.pauses, 0)
        # Another wait for the result gets it too.
        self.assertEqual(await fetch.result(), descriptor)

    async def test_body_within_deliver_body(self) -> None:
        """A body Twisted had already received, delivered and ended within C{deliverBody}."""
        data = b"a small config blob"
        fetch, _ = await self.start_fetch(data, whole_body=True)
        await fetch.result()
        self.assertEqual(await Consumer(fetch.reader(0)).done, data)
        await self.assert_stored(data)

    async def test_body_received_from_the_first_reader_on(self) -> None:
        """
        Upstream's body is received once the first reader is there (which
        then takes every byte from memory), else on the reactor's next turn.
        """
        data = random_bytes(1000, seed=35)
        response = FakeResponse(len(data))
        fetch = BlobFetch(self.repository, Digest.of(data), response, self.clock)  # type: ignore[arg-type]
        await fetch.start()
        self.assertIsNone(response.protocol)
        reader = fetch.reader(0)
        self.assertIsNotNone(response.protocol)
        self.assertFalse(reader.lagging)
        response.send(data)
        response.end()
        self.assertEqual(await Consumer(reader).done, data)

        alone = FakeResponse(len(data))
        unread = BlobFetch(self.repository, Digest.of(data), alone, self.clock)  # type: ignore[arg-type]
        await unread.start()
        self.assertIsNone(alone.protocol)
        self.clock.advance(0)
        self.assertIsNotNone(alone.protocol)
        alone.send(data)
        alone.end()
        await unread.result()

    async def test_larger_reads_from_upstream_socket(self) -> None:
        """
        The upstream connection's socket reads RECEIVE_SIZE at a time during
        the download, and its own size again after (the pool reuses it).
        """
        data = random_bytes(1000, seed=36)
        fetch, response = await self.start_fetch(data)
        socket = SimpleNamespace(bufferSize=65536)
        other = FakeResponse(len(data))
        other.transport._producer = socket  # type: ignore[attr-defined]
        sized = BlobFetch(self.repository, Digest.of(data), other, self.clock)  # type: ignore[arg-type]
        await sized.start()
        sized.begin()
        self.assertEqual(socket.bufferSize, RECEIVE_SIZE)
        other.send(data)
        other.end()
        await sized.result()
        self.assertEqual(socket.bufferSize, 65536)
        response.send(data)
        response.end()
        await fetch.result()

    async def test_last_byte_held_until_verified(self) -> None:
        """
        With the whole body received but the commit not done, a reader
        from memory and a reader from storage each have all but the last
        byte; the last comes once the blob is in place.
        """
        data = random_bytes(MiB + 5, seed=2)
        self.driver.hold_moves = True
        fetch, response = await self.start_fetch(data)
        fast = Consumer(fetch.reader(0))
        response.send(data)
        response.end()
        await wait_until(lambda: self.driver.held_moves)
        # Verified, not moved into place yet: a reader joining now reads storage.
        late = fetch.reader(0)
        self.assertTrue(late.lagging)
        from_storage = Consumer(late)
        await wait_until(lambda: from_storage.received == len(data) - 1)
        await spin()
        self.assertEqual(fast.received, len(data) - 1)
        self.assertEqual(from_storage.received, len(data) - 1)
        self.assertFalse(fast.done.called or from_storage.done.called)
        await self.assert_not_stored(fetch.digest)

        self.driver.release_all()
        self.assertEqual(await fast.done, data)
        self.assertEqual(await from_storage.done, data)
        await fetch.result()
        await self.assert_stored(data)

    # -- failures ----------------------------------------------------------------------

    async def test_digest_mismatch(self) -> None:
        """
        Content that does not match the digest: readers fail (never having
        had the whole blob), nothing is stored, the upload is removed, and
        C{result()} fails with C{DIGEST_INVALID}.
        """
        data = random_bytes(MiB + 3, seed=3)
        fetch, response = await self.start_fetch(data, digest=Digest.of(b"something else"))
        consumers = [Consumer(fetch.reader(0)), Consumer(fetch.reader(1000))]
        response.send(data)
        response.end()
        failure = await self.assert_failed(fetch, consumers, RegistryError)
        assert isinstance(failure.value, RegistryError)
        self.assertIs(failure.value.error_code, DIGEST_INVALID)
        self.assertEqual(consumers[0].data, data[:-1])
        # A reader asking after the failure fails at once.
        await self.assertFailure(fetch.reader(0).read(10), FetchFailed)

    async def test_fewer_bytes_than_announced(self) -> None:
        """Upstream's body ends (C{ResponseDone}) short of its Content-Length."""
        data = random_bytes(MiB, seed=4)
        fetch, response = await self.start_fetch(data)
        consumer = Consumer(fetch.reader(0))
        response.send(data[:-10])
        await wait_until(lambda: fetch.stored == len(data) - 10)
        response.end()
        failure = await self.assert_failed(fetch, [consumer])
        self.assertIn(f"{len(data) - 10} of the {len(data)} bytes", failure.getErrorMessage())

    async def test_more_bytes_than_announced(self) -> None:
        """
        Upstream sends more than its Content-Length: the download is cut at
        once (the transport stopped), before the rest is ever ended.
        """
        data = random_bytes(MiB, seed=5)
        fetch, response = await self.start_fetch(data)
        consumer = Consumer(fetch.reader(0))
        response.send(data + b"and then some")
        self.assertTrue(response.transport.stopped)
        self.assertTrue(fetch.finished)
        failure = await self.assert_failed(fetch, [consumer])
        self.assertIn("more than", failure.getErrorMessage())
        # Twisted then reports the connection's end, which changes nothing.
        response.end(ResponseFailed([Failure(ConnectionLost())]))
        self.assertIs(fetch.failure, failure)

    async def test_connection_broken(self) -> None:
        """Upstream's connection breaks mid-body (C{ResponseFailed})."""
        data = random_bytes(2 * MiB, seed=6)
        fetch, response = await self.start_fetch(data)
        consumers = [Consumer(fetch.reader(0)), Consumer(fetch.reader(MiB))]
        response.send(data[:MiB])
        await wait_until(lambda: fetch.stored == MiB)
        late = Consumer(fetch.reader(0))  # reads storage
        await wait_until(lambda: late.received == MiB)
        response.end(ResponseFailed([Failure(ConnectionLost())]))
        await self.assert_failed(fetch, [*consumers, late])

    async def test_potential_data_loss_with_length(self) -> None:
        """
        A connection closed without a complete body (C{PotentialDataLoss})
        is no end of a body whose length was announced.
        """
        data = random_bytes(1000, seed=7)
        fetch, response = await self.start_fetch(data)
        consumer = Consumer(fetch.reader(0))
        response.send(data)
        response.end(PotentialDataLoss())
        await self.assert_failed(fetch, [consumer])

    # -- readers -------------------------------------------------------------------------

    async def test_late_reader(self) -> None:
        """
        A reader from offset 0 created after bytes have gone by reads them
        from storage, then the rest, and gets the whole blob.
        """
        data = random_bytes(2 * MiB + 1, seed=8)
        fetch, response = await self.start_fetch(data)
        response.send(data[:MiB])
        await wait_until(lambda: fetch.stored == MiB)
        reader = fetch.reader(0)
        self.assertTrue(reader.lagging)
        consumer = Consumer(reader)
        await wait_until(lambda: consumer.received == MiB)
        response.send(data[MiB:])
        response.end()
        self.assertEqual(await consumer.done, data)
        await fetch.result()
        await self.assert_stored(data)
        # Once stored, a reader reads the blob.
        self.assertEqual(await Consumer(fetch.reader(0)).done, data)

    async def test_slow_reader(self) -> None:
        """
        A reader that stops reading while many MiB arrive passes
        C{READER_BUFFER}: its queue is dropped and it reads storage from
        where it was, getting every byte in order; a fast reader is not
        held up, nor is the download.
        """
        data = random_bytes(3 * READER_BUFFER + 12345, seed=9)
        fetch, response = await self.start_fetch(data)
        fast = Consumer(fetch.reader(0))
        slow = fetch.reader(0)
        response.send(data[: 4 * CHUNK])
        first = await slow.read(100_000)
        self.assertEqual(first, data[:100_000])

        for start in range(4 * CHUNK, len(data), CHUNK):
            response.send(data[start : start + CHUNK])
            # Memory held for the slow reader stays bounded.
            self.assertLessEqual(slow._queued, READER_BUFFER)
            # (all but the last byte, held until verified)
            self.assertEqual(fast.received, min(start + CHUNK, len(data) - 1))
            self.assertFalse(fast.reader.lagging)  # type: ignore[attr-defined]
        self.assertTrue(slow.lagging)
        self.assertEqual(slow._queued, 0)
        self.assertEqual(len(slow._queue), 0)
        self.assertNotIn(slow, fetch._readers)
        self.assertEqual(slow.position, 100_000)

        response.end()
        await fetch.result()
        self.assertEqual(await fast.done, data)
        self.assertEqual(slow.position, 100_000)
        rest = await Consumer(slow).done
        self.assertEqual(first + rest, data)
        await self.assert_stored(data)

    async def test_reader_at_offset(self) -> None:
        """
        A reader from an offset (a Range) gets the bytes from there: one
        joining before the offset arrived (from memory), one joining after
        (from storage), one after the blob is stored.
        """
        data = random_bytes(MiB + 99, seed=10)
        fetch, response = await self.start_fetch(data)
        ahead = fetch.reader(300_000)
        self.assertFalse(ahead.lagging)
        ahead_consumer = Consumer(ahead)
        response.send(data[:500_000])
        await wait_until(lambda: fetch.stored == 500_000)
        self.assertEqual(ahead_consumer.data, data[300_000:500_000])
        behind = fetch.reader(1000)
        self.assertTrue(behind.lagging)
        behind_consumer = Consumer(behind)
        response.send(data[500_000:])
        response.end()
        self.assertEqual(await ahead_consumer.done, data[300_000:])
        self.assertEqual(await behind_consumer.done, data[1000:])
        await fetch.result()
        self.assertEqual(await Consumer(fetch.reader(123)).done, data[123:])
        self.assertEqual(await Consumer(fetch.reader(len(data))).done, b"")

    async def test_reader_closed_midway(self) -> None:
        """
        A reader closed half-way (its client left) reads nothing more, and
        the download goes on: other readers complete, the blob is stored.
        """
        data = random_bytes(2 * MiB, seed=11)
        fetch, response = await self.start_fetch(data)
        leaving = fetch.reader(0)
        staying = Consumer(fetch.reader(0))
        response.send(data[:MiB])
        self.assertEqual(await leaving.read(1000), data[:1000])
        await leaving.close()
        self.assertNotIn(leaving, fetch._readers)
        self.assertEqual(self.successResultOf(leaving.read(1000)), b"")
        response.send(data[MiB:])
        response.end()
        await fetch.result()
        self.assertEqual(await staying.done, data)
        self.assertFalse(response.transport.stopped)
        await self.assert_stored(data)
        self.assertEqual(self.successResultOf(leaving.read(1000)), b"")

    async def test_upload_unreadable_while_written(self) -> None:
        """
        Where the driver shows none of an upload's bytes while it is
        written, a reader behind memory waits for the commit, then reads
        the blob whole.
        """
        data = random_bytes(MiB + 7, seed=12)
        self.driver.hide_uploads = True
        self.driver.hold_moves = True
        fetch, response = await self.start_fetch(data)
        response.send(data[:MiB])
        await wait_until(lambda: fetch.stored == MiB)
        reader = fetch.reader(0)
        self.assertTrue(reader.lagging)
        consumer = Consumer(reader)
        self.assertFalse(fetch.partial_readable)
        response.send(data[MiB:])
        response.end()
        await wait_until(lambda: self.driver.held_moves)
        await spin()
        self.assertEqual(consumer.received, 0)
        self.assertFalse(consumer.done.called)
        # A reader joining now waits the same way.
        joining = Consumer(fetch.reader(10))
        self.driver.release_all()
        self.assertEqual(await consumer.done, data)
        self.assertEqual(await joining.done, data[10:])
        await self.assert_stored(data)

    # -- backpressure and the watchdog -------------------------------------------------------

    async def fill_past_high_watermark(
        self, data: bytes, response: FakeResponse, fetch: BlobFetch
    ) -> int:
        """
        With storage's writes held, send C{data} a MiB at a time until more
        than C{HIGH_WATERMARK} bytes wait; upstream is paused only then.
        How many bytes were sent.
        """
        sent = 0
        while fetch.received - fetch.stored <= HIGH_WATERMARK:
            self.assertFalse(response.transport.paused)
            response.send(data[sent : sent + MiB], chunk=MiB)
            sent += MiB
        self.assertTrue(response.transport.paused)
        self.assertEqual(response.transport.pauses, 1)
        return sent

    async def release_write(self, fetch: BlobFetch) -> None:
        """Let the oldest held write go, and wait until the fetch counts it stored."""
        before = fetch.stored
        self.driver.release_write()
        await wait_until(lambda: fetch.stored > before)

    async def test_backpressure(self) -> None:
        """
        Upstream is paused while more than C{HIGH_WATERMARK} bytes wait for
        storage, stays paused down to C{LOW_WATERMARK}, and is resumed below.
        """
        data = random_bytes(HIGH_WATERMARK + 3 * MiB + 11, seed=13)
        self.driver.hold_writes = True
        fetch, response = await self.start_fetch(data)
        consumer = Consumer(fetch.reader(0))
        sent = await self.fill_past_high_watermark(data, response, fetch)
        self.assertEqual(consumer.received, sent)  # readers are not held up

        held_between = False
        while response.transport.paused:
            await self.release_write(fetch)
            waiting = fetch.received - fetch.stored
            self.assertEqual(response.transport.paused, waiting >= LOW_WATERMARK)
            held_between = held_between or (LOW_WATERMARK <= waiting <= HIGH_WATERMARK)
        self.assertTrue(held_between, "never paused between the watermarks")
        self.assertEqual((response.transport.pauses, response.transport.resumes), (1, 1))

        self.driver.release_all()
        response.send(data[sent:])
        response.end()
        await fetch.result()
        self.assertEqual(await consumer.done, data)
        await self.assert_stored(data)

    async def test_stall_aborts(self) -> None:
        """
        Upstream that sends nothing for C{STALL_TIMEOUT} is given up: the
        connection is cut, readers fail, nothing is stored.  Each byte
        received starts the count anew.
        """
        data = random_bytes(MiB, seed=14)
        fetch, response = await self.start_fetch(data)
        consumer = Consumer(fetch.reader(0))
        response.send(data[:1000])
        self.clock.advance(STALL_TIMEOUT - 1)
        response.send(data[1000:2000])
        self.clock.advance(STALL_TIMEOUT - 1)
        self.assertFalse(fetch.finished)
        self.assertFalse(response.transport.stopped)
        self.clock.advance(1)
        self.assertTrue(fetch.finished)
        self.assertTrue(response.transport.stopped)
        failure = await self.assert_failed(fetch, [consumer])
        self.assertIn("sent nothing", failure.getErrorMessage())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    async def test_paused_not_stalled(self) -> None:
        """
        A download paused by backpressure is not stalled, however long
        storage takes; once resumed, the count starts anew.
        """
        data = random_bytes(HIGH_WATERMARK + MiB + 1, seed=15)
        self.driver.hold_writes = True
        fetch, response = await self.start_fetch(data)
        sent = await self.fill_past_high_watermark(data, response, fetch)
        self.clock.pump([STALL_TIMEOUT] * 5)
        self.assertFalse(fetch.finished)
        self.assertFalse(response.transport.stopped)

        self.driver.release_all()
        await wait_until(lambda: not response.transport.paused)
        self.clock.advance(STALL_TIMEOUT - 1)
        self.assertFalse(fetch.finished)
        response.send(data[sent:])
        response.end()
        await fetch.result()
        await self.assert_stored(data)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    async def test_slow_commit_not_stalled(self) -> None:
        """
        Once upstream's body is complete nothing more is awaited from it: a
        commit that takes longer than C{STALL_TIMEOUT} (a bucket copying a
        large blob into place) is not given up.
        """
        data = random_bytes(MiB, seed=16)
        self.driver.hold_moves = True
        fetch, response = await self.start_fetch(data)
        consumer = Consumer(fetch.reader(0))
        response.send(data)
        response.end()
        await wait_until(lambda: self.driver.held_moves)
        self.clock.pump([STALL_TIMEOUT] * 3)
        self.assertIsNone(fetch.failure)
        self.assertFalse(response.transport.stopped)
        self.driver.release_all()
        await fetch.result()
        self.assertEqual(await consumer.done, data)
        await self.assert_stored(data)

    # -- no Content-Length -----------------------------------------------------------------

    async def check_unknown_length(self, reason: Exception, seed: int) -> None:
        data = random_bytes(MiB + 1, seed=seed)
        fetch, response = await self.start_fetch(data, length=UNKNOWN_LENGTH)
        self.assertIsNone(fetch.size)
        consumer = Consumer(fetch.reader(0))
        response.send(data)
        response.end(reason)
        self.assertEqual(await fetch.result(), BlobDescriptor(Digest.of(data), len(data)))
        self.assertEqual(await consumer.done, data)
        await self.assert_stored(data)

    async def test_unknown_length_response_done(self) -> None:
        """Without a Content-Length, a body ended by C{ResponseDone} is whole."""
        await self.check_unknown_length(ResponseDone(), seed=17)

    async def test_unknown_length_potential_data_loss(self) -> None:
        """
        Without a Content-Length, the connection's close is the body's end
        (Twisted says C{PotentialDataLoss}).
        """
        await self.check_unknown_length(PotentialDataLoss(), seed=18)

    async def test_unknown_length_holds_the_newest_chunk(self) -> None:
        """
        Without a Content-Length any chunk may be the last: a reader gets a
        chunk once the next one came, and the last once verified.
        """
        data = random_bytes(3 * CHUNK, seed=20)
        fetch, response = await self.start_fetch(data, length=UNKNOWN_LENGTH)
        consumer = Consumer(fetch.reader(0))
        response.send(data[:CHUNK])
        await wait_until(lambda: fetch.stored == CHUNK)
        self.assertEqual(consumer.received, 0)
        response.send(data[CHUNK:])
        await wait_until(lambda: consumer.received == 2 * CHUNK)
        response.end()
        self.assertEqual(await consumer.done, data)
        await self.assert_stored(data)

    async def test_storage_failure_stops_the_download(self) -> None:
        """
        A storage write that fails (a full disk) ends the download at once:
        upstream's connection is cut, readers fail, nothing is stored.
        """
        data = random_bytes(2 * MiB, seed=21)
        fetch, response = await self.start_fetch(data)
        consumer = Consumer(fetch.reader(0))
        self.driver.fail_writes = True
        response.send(data[:MiB])
        await wait_until(lambda: fetch.finished)
        self.assertTrue(response.transport.stopped)
        failure = await self.assert_failed(fetch, [consumer])
        self.assertIn("No space left on device", failure.getErrorMessage())

    async def test_unknown_length_broken(self) -> None:
        """Without a Content-Length, a broken connection is still a failure."""
        data = random_bytes(1000, seed=19)
        fetch, response = await self.start_fetch(data, length=UNKNOWN_LENGTH)
        consumer = Consumer(fetch.reader(0))
        response.send(data[:500])
        response.end(ResponseFailed([Failure(ConnectionLost())]))
        await self.assert_failed(fetch, [consumer])


class FilesystemFetchTests(FetchTestsMixin, TestCase):
    """The fetch over the filesystem driver, which reads an upload while it is written."""

    def make_driver(self) -> IStorageDriver:
        self.root = temporary_directory(self)
        return FilesystemDriver(self.root)

    def stored(self) -> list[str]:
        found: list[str] = []
        for folder, _, files in os.walk(self.root):
            found.extend(os.path.join(folder, name)[len(self.root) :] for name in files)
        return sorted(found)

    def uploads_left(self) -> list[str]:
        folder = self.root + paths.repository(NAME) + "/_uploads"
        return sorted(os.listdir(folder)) if os.path.isdir(folder) else []

    # -- a client's reader of the local file -------------------------------------------

    async def test_open_reader_of_the_local_file(self) -> None:
        """
        A client's reader is one of the upload's local file (for sendfile):
        it may send what is stored, less the last byte until verified, and
        reads the rest once the blob is in place.
        """
        data = random_bytes(2 * MiB + 9, seed=30)
        self.driver.hold_moves = True
        fetch, response = await self.start_fetch(data)
        reader = await fetch.open_reader(0)
        self.assertIsInstance(reader, GrowingFileReader)
        assert isinstance(reader, GrowingFileReader)
        self.assertTrue(IGrowingFileReader.providedBy(reader))
        self.assertEqual(reader.readable_end(), 0)
        grown = reader.grown()
        response.send(data[:MiB])
        await grown
        await wait_until(lambda: fetch.stored == MiB)
        self.assertEqual(reader.readable_end(), MiB)
        self.assertEqual(reader.local_file()[1], 0)
        response.send(data[MiB:])
        response.end()
        await wait_until(lambda: self.driver.held_moves)
        self.assertEqual(reader.readable_end(), len(data) - 1)
        consumer = Consumer(reader)
        await wait_until(lambda: consumer.received == len(data) - 1)
        await spin()
        self.assertFalse(consumer.done.called)
        self.driver.release_all()
        self.assertEqual(await consumer.done, data)
        self.assertEqual(reader.readable_end(), len(data))

    async def test_local_file_reader_at_offset(self) -> None:
        """A client's reader from an offset (a Range) reads from there."""
        data = random_bytes(MiB, seed=31)
        fetch, response = await self.start_fetch(data)
        consumer = Consumer(await fetch.open_reader(1000))
        response.send(data)
        response.end()
        self.assertEqual(await consumer.done, data[1000:])

    async def test_local_file_reader_fails_with_the_download(self) -> None:
        """A failed download fails its readers of the local file."""
        data = random_bytes(MiB, seed=32)
        fetch, response = await self.start_fetch(data, digest=Digest.of(b"other"))
        reader = await fetch.open_reader(0)
        consumer = Consumer(reader)
        response.send(data)
        response.end()
        await self.assertFailure(consumer.done, FetchFailed)
        self.assertLess(consumer.received, len(data))
        assert isinstance(reader, GrowingFileReader)
        self.assertRaises(FetchFailed, reader.readable_end)

    async def test_open_reader_once_stored(self) -> None:
        """Once the download is over, a reader reads the stored blob."""
        data = random_bytes(1000, seed=33)
        fetch, response = await self.start_fetch(data)
        response.send(data)
        response.end()
        await fetch.result()
        reader = await fetch.open_reader(10)
        self.assertIsInstance(reader, FetchReader)
        self.assertEqual(await Consumer(reader).done, data[10:])


class InMemoryFetchTests(FetchTestsMixin, TestCase):
    """
    The fetch over the in-memory driver, whose reader sees a snapshot of a
    file: a reader behind memory reads that much, then waits for the commit.
    """

    def make_driver(self) -> IStorageDriver:
        self.memory = InMemoryDriver()
        return self.memory

    def stored(self) -> list[str]:
        return sorted(self.memory._files)

    def uploads_left(self) -> list[str]:
        return [path for path in self.stored() if "/_uploads/" in path]

    async def test_open_reader_from_memory(self) -> None:
        """Where storage is no local file, a client's reader takes bytes from memory."""
        data = random_bytes(MiB, seed=34)
        fetch, response = await self.start_fetch(data)
        reader = await fetch.open_reader(0)
        self.assertIsInstance(reader, FetchReader)
        consumer = Consumer(reader)
        response.send(data)
        response.end()
        self.assertEqual(await consumer.done, data)
