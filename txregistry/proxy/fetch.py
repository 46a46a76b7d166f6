# -*- test-case-name: tests.test_proxy_fetch -*-
"""
A blob's download from upstream into storage, shared by every client that
asks for it meanwhile.

One L{BlobFetch} reads upstream's response and writes it to an upload of
the repository, hashing it on the way; its L{FetchReader}s hand the same
bytes to clients as they arrive, so the first client does not wait for the
blob to be stored.  Once every byte is in, the upload is committed: checked
against the digest and moved into place, so that the blob becomes visible
only whole and verified.  Each reader holds back the blob's last bytes
until then, so a client never receives a whole blob that failed the check:
its connection is cut instead.

Backpressure, both ways:
  - upstream is paused while more than L{HIGH_WATERMARK} bytes wait for
    storage, and resumed below L{LOW_WATERMARK}: a slow disk or bucket slows
    the download, memory stays bounded;
  - clients do not slow the download: a reader whose client falls more than
    L{READER_BUFFER} bytes behind stops taking bytes from memory and reads
    what storage already holds instead (the upload's data while the
    download runs, where the driver can read a file being written; the
    blob once committed), at its own pace.

A client that leaves closes its reader; the download goes on for the others
and for the cache.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import UNKNOWN_LENGTH, IResponse
from zope.interface import implementer

from txregistry.digest import Digest
from txregistry.drivers.errors import PathNotFoundError
from txregistry.interfaces import IFileReader, IGrowingFileReader, ILocalFileReader
from txregistry.outcome import Outcome
from txregistry.registry import paths
from txregistry.registry.blobs import BlobDescriptor
from txregistry.registry.repository import Repository
from txregistry.registry.uploads import UploadAppender, UploadSession
from txregistry.threads import in_thread

HIGH_WATERMARK = 16 * 1024 * 1024
LOW_WATERMARK = 8 * 1024 * 1024
READER_BUFFER = 4 * 1024 * 1024
# What one read from upstream's socket may take.
RECEIVE_SIZE = 1024 * 1024
# Upstream that sends nothing for this long (while not paused) is given up.
STALL_TIMEOUT = 30.0

_log = Logger()


class FetchFailed(Exception):
    """The download ended without a verified blob (see the message)."""


class _Receiver(Protocol):
    """Upstream's body, handed to the fetch."""

    def __init__(self, fetch: BlobFetch) -> None:
        self.fetch = fetch
        self._socket: Any = None
        self._read_size: Any = None

    def connectionMade(self) -> None:
        # Before any byte: a short body is delivered within deliverBody.
        self.fetch._transport = self.transport
        # Larger reads from upstream's socket than Twisted's 64 KiB: fewer
        # calls per GiB through the HTTP parser and here.
        self._socket = getattr(self.transport, "_producer", None)
        self._read_size = getattr(self._socket, "bufferSize", None)
        if isinstance(self._read_size, int):
            self._socket.bufferSize = max(self._read_size, RECEIVE_SIZE)

    def dataReceived(self, data: bytes) -> None:
        self.fetch._received(data)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        if isinstance(self._read_size, int):
            # The connection may serve smaller responses next.
            self._socket.bufferSize = self._read_size
        self.fetch._ended(reason)


class BlobFetch:
    """
    One blob's download from upstream into one repository.

    @ivar size: the blob's size, from upstream's C{Content-Length}, or
        L{None} when upstream did not give it.
    @ivar received: bytes received so far.
    @ivar stored: bytes received that storage holds.
    @ivar descriptor: the stored blob, once verified.
    @ivar failure: why the download failed, once it has.
    """

    def __init__(
        self,
        repository: Repository,
        digest: Digest,
        response: IResponse,
        clock: IReactorTime,
        on_stored: Callable[[BlobDescriptor], object] = lambda descriptor: None,
    ) -> None:
        self.repository = repository
        self.digest = digest
        self.size: int | None = None if response.length is UNKNOWN_LENGTH else response.length
        self.received = 0
        self.stored = 0
        self.descriptor: BlobDescriptor | None = None
        self.failure: Failure | None = None
        # Whether the driver lets a reader see the upload's data while it is
        # written (the filesystem does; a bucket's multipart upload does not).
        self.partial_readable = True
        self._response = response
        self._clock = clock
        self._on_stored = on_stored
        self._session: UploadSession | None = None
        self._appender: UploadAppender | None = None
        self._transport: Any = None
        self._paused = False
        self._readers: set[FetchReader] = set()
        self._waiters: list[Deferred[None]] = []
        self._last_data = clock.seconds()
        self._watchdog: IDelayedCall | None = None
        self._begun = False
        self._done: Deferred[BlobDescriptor] = Deferred()
        self._outcome = Outcome(self._done)

    def result(self) -> Deferred[BlobDescriptor]:
        """
        A new Deferred firing with the stored blob once verified, or failing
        with why the download failed: cancelling it cancels nothing else.
        """
        return self._outcome.wait()

    def check_failed(self) -> None:
        """
        @raise FetchFailed: saying why, once the download has failed.
        """
        if self.failure is not None:
            raise FetchFailed(
                f"downloading {self.digest} from upstream failed: {self.failure.getErrorMessage()}"
            )

    @property
    def finished(self) -> bool:
        """Whether the download is over, verified or failed."""
        return self.descriptor is not None or self.failure is not None

    async def start(self) -> None:
        """
        Open the upload and start receiving.  On failure the response's
        body is dropped and the failure raised (and kept as the result).
        """
        try:
            self._session = await self.repository.uploads.start()
            self._appender = await self._session.open_appender(self.digest.algorithm)
        except BaseException:
            self._response.deliverBody(Protocol())  # read and dropped
            failure = Failure()
            self._fail(failure)
            failure.raiseException()
        self._appender.on_progress = self._progress
        self._watchdog = self._clock.callLater(STALL_TIMEOUT, self._check_stalled)
        # Received once the first reader is there (its client then reads
        # from memory from the first byte), or on the reactor's next turn.
        self._clock.callLater(0, self.begin)

    def begin(self) -> None:
        """Start receiving upstream's body, if not started."""
        if self._begun or self.finished:
            return
        self._begun = True
        self._response.deliverBody(_Receiver(self))

    # -- readers --------------------------------------------------------------------

    def reader(self, offset: int) -> FetchReader:
        """
        A reader of the blob from C{offset}: bytes from memory when the
        download has not passed C{offset} yet, else from storage.
        """
        reader = FetchReader(self, offset, lagging=offset < self.received)
        if not self.finished:
            self._readers.add(reader)
        self.begin()
        return reader

    async def open_reader(self, offset: int) -> IFileReader:
        """
        A reader of the blob from C{offset}, for a client: where the driver
        keeps the download in a local file, one of that file, which the
        HTTP layer sends with C{sendfile} as it grows (an
        L{IGrowingFileReader}); else L{reader}'s.
        """
        session = self._session
        if session is not None and not self.finished and self.size is not None:
            try:
                local: IFileReader | None = await self.repository.blobs.driver.reader(
                    paths.upload_data(session.repository, session.upload_id), 0
                )
            except PathNotFoundError:
                local = None  # moved into place meanwhile
            if ILocalFileReader.providedBy(local):
                return GrowingFileReader(self, local, offset)
            if local is not None:
                await local.close()
        return self.reader(offset)

    def _forget(self, reader: FetchReader) -> None:
        self._readers.discard(reader)

    def wait(self) -> Deferred[None]:
        """Fires at the next change: bytes received or stored, the end."""
        if self.finished:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        return waiter

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)

    # -- receiving ------------------------------------------------------------------

    def _received(self, data: bytes) -> None:
        if self.finished:
            return
        assert self._appender is not None
        self._last_data = self._clock.seconds()
        start = self.received
        self.received += len(data)
        if self.size is not None and self.received > self.size:
            self._abort(FetchFailed(f"upstream sent more than the {self.size} bytes it announced"))
            return
        self._appender.write(data)
        for reader in list(self._readers):
            reader._feed(start, data)
        if not self._paused and self._appender.buffered > HIGH_WATERMARK:
            self._paused = True
            self._transport.pauseProducing()
        self._wake()

    def _progress(self) -> None:
        """The driver took a batch."""
        appender = self._appender
        assert appender is not None
        if appender.failure is not None and not self.finished:
            # Storage failed: downloading the rest would be for nothing.
            self._abort(
                FetchFailed(f"storing {self.digest} failed: {appender.failure.getErrorMessage()}")
            )
            return
        self.stored = self.received - appender.buffered
        if self._paused and appender.buffered < LOW_WATERMARK and not self.finished:
            self._paused = False
            self._last_data = self._clock.seconds()
            self._transport.resumeProducing()
        self._wake()

    def _check_stalled(self) -> None:
        self._watchdog = None
        if self.finished:
            return
        idle = self._clock.seconds() - self._last_data
        if not self._paused and idle >= STALL_TIMEOUT:
            self._abort(FetchFailed(f"upstream sent nothing for {STALL_TIMEOUT:g}s"))
            return
        self._watchdog = self._clock.callLater(
            max(STALL_TIMEOUT - idle, 1.0) if not self._paused else STALL_TIMEOUT,
            self._check_stalled,
        )

    def _abort(self, error: Exception) -> None:
        """Give up: cut upstream's connection and fail."""
        if self._transport is not None:
            self._transport.stopProducing()
        self._fail(Failure(error))
        ensureDeferred(self._discard())

    def _ended(self, reason: Failure) -> None:
        if self.finished:
            return
        # Without a Content-Length, the connection's end is the body's.
        complete = reason.check(ResponseDone) or (
            self.size is None and reason.check(PotentialDataLoss)
        )
        if not complete:
            self._fail(
                Failure(FetchFailed(f"upstream's response broke off: {reason.getErrorMessage()}"))
            )
            ensureDeferred(self._discard())
            return
        if self.size is not None and self.received != self.size:
            self._fail(
                Failure(
                    FetchFailed(f"upstream sent {self.received} of the {self.size} bytes announced")
                )
            )
            ensureDeferred(self._discard())
            return
        # The body is whole: nothing more is awaited from upstream, however
        # long storage takes to commit (a bucket copying a large blob).
        self._stop_watchdog()
        ensureDeferred(self._commit())

    async def _commit(self) -> None:
        assert self._session is not None and self._appender is not None
        try:
            await self._appender.close()
            descriptor = await self._session.commit(self.digest)
        except Exception:
            failure = Failure()
            _log.warn(
                "caching {digest} from upstream failed: {error}",
                digest=self.digest,
                error=failure.getErrorMessage(),
            )
            self._fail(failure)
            await self._discard()
            return
        self.stored = self.received
        self.descriptor = descriptor
        self._stop_watchdog()
        self._readers.clear()
        try:
            self._on_stored(descriptor)
        except Exception:
            _log.failure("after caching {digest}", digest=self.digest)
        self._done.callback(descriptor)
        self._wake()

    def _fail(self, failure: Failure) -> None:
        if self.finished:
            return
        self.failure = failure
        self._stop_watchdog()
        self._readers.clear()
        self._done.errback(failure)
        self._wake()

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.cancel()
        self._watchdog = None

    async def _discard(self) -> None:
        """Remove the failed download's upload (a digest mismatch did already)."""
        session, appender = self._session, self._appender
        if session is None or appender is None:
            return
        try:
            await appender.close()
        except Exception:
            pass  # the failure is known; the upload goes anyway
        try:
            await session.cancel()
        except Exception:
            pass  # gone already: a failed commit cancels it


@implementer(IFileReader)
class FetchReader:
    """
    One client's view of a L{BlobFetch}, as a stored file's reader would
    be: bytes from C{offset} on, C{b""} at the end, a failure when the
    download fails.
    """

    def __init__(self, fetch: BlobFetch, offset: int, lagging: bool) -> None:
        self._fetch = fetch
        self.position = offset
        self._queue: deque[bytes] = deque()
        self._queued = 0
        # Behind what memory holds: reads come from storage.
        self.lagging = lagging
        self._stored_reader: IFileReader | None = None
        self._stored_reader_of: str | None = None
        self._closed = False

    def _feed(self, start: int, data: bytes) -> None:
        """Bytes C{start} onwards arrived."""
        if self.lagging:
            return
        queued_end = self.position + self._queued
        if start + len(data) <= queued_end:
            return
        if start < queued_end:
            data = data[queued_end - start :]
        self._queue.append(data)
        self._queued += len(data)
        if self._queued > READER_BUFFER:
            # The client is slow: it reads the rest from storage.
            self.lagging = True
            self._queue.clear()
            self._queued = 0
            self._fetch._forget(self)

    def _deliverable(self) -> int:
        """How many queued bytes may go out: all but the blob's last until verified."""
        fetch = self._fetch
        if fetch.descriptor is not None:
            return self._queued
        if fetch.size is None:
            # Any chunk may be the last: the newest waits for the next.
            return self._queued - len(self._queue[-1]) if self._queue else 0
        return max(0, min(self._queued, fetch.size - 1 - self.position))

    def read(self, max_bytes: int) -> Deferred[bytes]:
        """See L{IFileReader.read}."""
        if not self.lagging and not self._closed and self._fetch.failure is None:
            allowed = self._deliverable()
            if allowed:
                # The common case, without a coroutine: bytes are waiting.
                return succeed(self._take(min(allowed, max_bytes)))
        return ensureDeferred(self._read(max_bytes))

    async def _read(self, max_bytes: int) -> bytes:
        fetch = self._fetch
        while True:
            if self._closed:
                return b""
            fetch.check_failed()
            if self.lagging:
                data = await self._read_stored(max_bytes)
                if data is not None:
                    return data
            else:
                allowed = self._deliverable()
                if allowed:
                    return self._take(min(allowed, max_bytes))
                if fetch.descriptor is not None and not self._queue:
                    if self.position >= fetch.descriptor.size:
                        return b""
                    # Joined after the bytes went by: storage has them.
                    self.lagging = True
                    continue
            await fetch.wait()

    def _take(self, count: int) -> bytes:
        parts = []
        taken = 0
        while taken < count:
            chunk = self._queue[0]
            if len(chunk) <= count - taken:
                self._queue.popleft()
            else:
                chunk, self._queue[0] = chunk[: count - taken], chunk[count - taken :]
            parts.append(chunk)
            taken += len(chunk)
        self._queued -= taken
        self.position += taken
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def _read_stored(self, max_bytes: int) -> bytes | None:
        """
        Bytes from storage, or L{None} when storage has none for this
        position yet (wait for the download and try again).
        """
        fetch = self._fetch
        if fetch.descriptor is not None:
            if self.position >= fetch.descriptor.size:
                return b""
            reader = await self._open_stored(paths.blob_data(fetch.digest))
            data = await reader.read(max_bytes)
            if not data:
                raise FetchFailed(f"{fetch.digest} ended before its stored size")
            self.position += len(data)
            return data
        if fetch.size is None or not fetch.partial_readable:
            return None
        # Never the blob's last byte before it is verified.
        available = min(fetch.stored, fetch.size - 1) - self.position
        if available <= 0:
            return None
        session = fetch._session
        assert session is not None
        try:
            reader = await self._open_stored(
                paths.upload_data(session.repository, session.upload_id)
            )
            data = await reader.read(min(max_bytes, available))
        except PathNotFoundError:
            data = b""
        if not data:
            # The driver shows no bytes of a file while it is written.
            fetch.partial_readable = False
            await self._close_stored()
            return None
        self.position += len(data)
        return data

    async def _open_stored(self, path: str) -> IFileReader:
        if self._stored_reader is not None and self._stored_reader_of == path:
            return self._stored_reader
        await self._close_stored()
        reader: IFileReader = await self._fetch.repository.blobs.driver.reader(path, self.position)
        self._stored_reader, self._stored_reader_of = reader, path
        return reader

    async def _close_stored(self) -> None:
        reader, self._stored_reader = self._stored_reader, None
        if reader is not None:
            await reader.close()

    def close(self) -> Deferred[None]:
        """See L{IFileReader.close}: the client is done or gone."""
        self._closed = True
        self._fetch._forget(self)
        self._queue.clear()
        self._queued = 0
        return ensureDeferred(self._close_stored())


@implementer(IGrowingFileReader)
class GrowingFileReader:
    """
    A client's reader of a download kept in a local file (the upload's
    data, moved into place once verified: the open file stays the same):
    bytes up to what is stored, less the last until verified.
    """

    def __init__(self, fetch: BlobFetch, local: ILocalFileReader, offset: int) -> None:
        self._fetch = fetch
        self._local = local
        self._fd = local.local_file()[0]
        self.position = offset

    def local_file(self) -> tuple[int, int]:
        """See L{ILocalFileReader.local_file}."""
        return self._fd, self.position

    def readable_end(self) -> int:
        """See L{IGrowingFileReader.readable_end}."""
        fetch = self._fetch
        fetch.check_failed()
        if fetch.descriptor is not None:
            return fetch.descriptor.size
        assert fetch.size is not None  # see BlobFetch.open_reader
        return min(fetch.stored, fetch.size - 1)

    def grown(self) -> Deferred[None]:
        """See L{IGrowingFileReader.grown}."""
        return self._fetch.wait()

    def read(self, max_bytes: int) -> Deferred[bytes]:
        """See L{IFileReader.read}: for a transport that cannot take C{sendfile} (TLS)."""
        return ensureDeferred(self._read(max_bytes))

    async def _read(self, max_bytes: int) -> bytes:
        while True:
            available = self.readable_end() - self.position
            if available > 0:
                data: bytes = await in_thread(
                    os.pread, self._fd, min(max_bytes, available), self.position
                )
                if not data:
                    raise FetchFailed(f"{self._fetch.digest}: its file ended early")
                self.position += len(data)
                return data
            if self._fetch.descriptor is not None:
                return b""
            await self.grown()

    def close(self) -> Deferred[None]:
        """See L{IFileReader.close}."""
        return self._local.close()
