# -*- test-case-name: tests.test_uploads -*-
"""
Blob uploads: sessions kept in storage (Distribution's C{_uploads} layout),
so that any process can continue an upload another one started.

Bytes are appended through an L{UploadAppender}, which hashes them on the
way.  The running hash is kept in process memory between requests as an
optimisation only: when it is missing (another process received the earlier
chunks, or this one restarted), the digest is computed again from the stored
bytes.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred, DeferredLock, FirstError, gatherResults, succeed
from twisted.python.failure import Failure

from txregistry.digest import CANONICAL_ALGORITHM, Digest
from txregistry.drivers.base import exists, write_batch
from txregistry.drivers.errors import PathNotFoundError, StorageFullError
from txregistry.errors import BLOB_UPLOAD_UNKNOWN, DIGEST_INVALID
from txregistry.interfaces import (
    Delete,
    FileInfo,
    IFileWriter,
    IStorageDriver,
    Move,
    PutContent,
    WriteOperation,
)
from txregistry.registry import paths
from txregistry.registry.blobs import BlobDescriptor, LinkedBlobStore
from txregistry.threads import in_thread

# How many bytes one driver write takes at most: large enough that thread
# hops and requests to object storage are few, small enough to bound memory.
WRITE_BATCH = 4 * 1024 * 1024
REHASH_READ = 1024 * 1024
# Bytes hashed on the reactor thread: a trip to the thread pool and back
# costs more than hashing this much (SHA-256 of 64 KiB: about 0.1 ms).
INLINE_HASH = 64 * 1024


@dataclass
class _HashState:
    algorithm: str
    offset: int
    hasher: Any


class HashStates:
    """
    Running hashes of uploads, by upload id, bounded to C{limit} entries
    (least recently used dropped first).
    """

    def __init__(self, limit: int = 1024) -> None:
        self._states: OrderedDict[str, _HashState] = OrderedDict()
        self._limit = limit
        self._locks: dict[str, DeferredLock] = {}

    async def lock(self, upload_id: str) -> None:
        """
        Wait until no other request of this process appends to or commits
        C{upload_id}: two appenders at once would each hash only their own
        bytes, and a commit must verify the very bytes it makes a blob.
        """
        await self._locks.setdefault(upload_id, DeferredLock()).acquire()

    def unlock(self, upload_id: str) -> None:
        """Let the next request for C{upload_id} go on."""
        lock = self._locks[upload_id]
        lock.release()
        if not lock.locked:
            del self._locks[upload_id]

    def take(self, upload_id: str, algorithm: str, offset: int) -> Any | None:
        """Remove and return the hash of C{upload_id} if it covers C{offset} bytes."""
        state = self._states.pop(upload_id, None)
        if state is None or state.algorithm != algorithm or state.offset != offset:
            return None
        return state.hasher

    def keep(self, upload_id: str, algorithm: str, offset: int, hasher: Any) -> None:
        """Remember the hash of the first C{offset} bytes of C{upload_id}."""
        self._states[upload_id] = _HashState(algorithm, offset, hasher)
        self._states.move_to_end(upload_id)
        while len(self._states) > self._limit:
            self._states.popitem(last=False)

    def forget(self, upload_id: str) -> None:
        """Drop what is known of C{upload_id}."""
        self._states.pop(upload_id, None)


@dataclass
class UploadTotals:
    """What every upload of a registry received, for the metrics."""

    bytes_received: int = 0


@dataclass
class UploadAppender:
    """
    Appends bytes to an upload, hashing them, with one driver write in
    flight at a time.  C{write} never blocks: bytes wait in memory until the
    driver takes them, and C{buffered} says how many wait, so that the HTTP
    layer can stop reading from the client while the driver is slow.

    @ivar on_progress: called after every batch the driver took.
    @ivar release: called once closed, to let the next request for the
        upload go on (see L{HashStates.lock}).
    """

    session: UploadSession
    writer: IFileWriter
    hasher: Any
    on_progress: Callable[[], None] = lambda: None
    release: Callable[[], None] = lambda: None
    totals: UploadTotals | None = None  # counts the bytes taken, for the metrics
    buffered: int = 0
    _pending: list[bytes] = field(default_factory=list)
    _in_flight: Deferred[Any] | None = None
    _failure: Failure | None = None
    _closed: bool = False
    _idle_waiters: list[Deferred[None]] = field(default_factory=list)

    @property
    def failure(self) -> Failure | None:
        """Why a driver write failed, once one has (later writes are dropped)."""
        return self._failure

    @property
    def size(self) -> int:
        """The upload's size once everything written so far is stored."""
        # The writer's size already counts the batch in flight; add what
        # has not been handed to it yet.
        return int(self.writer.size) + sum(map(len, self._pending))

    def write(self, data: bytes) -> None:
        """Queue C{data}; dropped when an earlier write failed."""
        if self._failure is not None or self._closed or not data:
            return
        self._pending.append(data)
        self.buffered += len(data)
        if self.totals is not None:
            self.totals.bytes_received += len(data)
        self._next_batch()

    def _next_batch(self) -> None:
        if self._in_flight is not None or not self._pending:
            if self._in_flight is None:
                self._notify_idle()
            return
        batch: list[bytes] = []
        taken = 0
        while self._pending and (not batch or taken + len(self._pending[0]) <= WRITE_BATCH):
            chunk = self._pending.pop(0)
            batch.append(chunk)
            taken += len(chunk)
        data = batch[0] if len(batch) == 1 else b"".join(batch)
        del batch
        if len(data) <= INLINE_HASH:
            self.hasher.update(data)
            hashed: Deferred[Any] = succeed(None)
        else:
            hashed = in_thread(self.hasher.update, data)
        written = self.writer.write(data)
        self._in_flight = gatherResults([hashed, written], consumeErrors=True)

        def done(result: Any) -> None:
            self._in_flight = None
            self.buffered -= taken
            if isinstance(result, Failure):
                error = result.value
                self._failure = error.subFailure if isinstance(error, FirstError) else result
                self._pending.clear()
                self.buffered = 0
            self.on_progress()
            self._next_batch()

        self._in_flight.addBoth(done)

    def _notify_idle(self) -> None:
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    async def flush(self) -> None:
        """
        Wait until the driver has taken every queued byte.

        @raise Exception: the failure of a driver write, if one failed.
        """
        if self._in_flight is not None or self._pending:
            waiter: Deferred[None] = Deferred()
            self._idle_waiters.append(waiter)
            await waiter
        if self._failure is not None:
            self._failure.raiseException()

    async def close(self) -> None:
        """
        Flush, then close the driver's writer, keeping the bytes for a later
        request; the running hash is kept for that request too.  When the
        storage was full, the upload is discarded instead: a chunk stored
        in part cannot be resumed, and what it holds is given back.

        @raise Exception: the failure of a driver write, if one failed.
        """
        if self._closed:
            return
        try:
            try:
                await self.flush()
            finally:
                self._closed = True
                await self.writer.close()
            self.session.size = self.writer.size
            self.session.uploads.hash_states.keep(
                self.session.upload_id, self.hasher.name, self.writer.size, self.hasher
            )
        except StorageFullError:
            await self.session.discard()
            raise
        finally:
            self.release()


class UploadSession:
    """
    One upload in progress in one repository.

    @ivar size: how many bytes the upload holds.
    """

    def __init__(self, uploads: Uploads, upload_id: str, started_at: str, size: int) -> None:
        self.uploads = uploads
        self.upload_id = upload_id
        self.started_at = started_at
        self.size = size

    @property
    def repository(self) -> str:
        """The repository the upload is for."""
        return self.uploads.repository

    @property
    def _data_path(self) -> str:
        return paths.upload_data(self.repository, self.upload_id)

    async def open_appender(self, algorithm: str = CANONICAL_ALGORITHM) -> UploadAppender:
        """
        Start appending to the upload.

        @param algorithm: the hash to compute on the way; the client may
            commit with another, which costs a second read of the data.
        """
        hash_states = self.uploads.hash_states
        await hash_states.lock(self.upload_id)
        try:
            try:
                writer = await self.uploads.driver.writer(self._data_path, append=True)
            except PathNotFoundError:
                raise BLOB_UPLOAD_UNKNOWN(self.upload_id) from None
            self.size = writer.size
            try:
                hasher = hash_states.take(self.upload_id, algorithm, self.size)
                if hasher is None:
                    hasher = await self._hash_stored(algorithm)
            except BaseException:
                await writer.close()
                raise
        except BaseException:
            hash_states.unlock(self.upload_id)
            raise
        return UploadAppender(
            self,
            writer,
            hasher,
            release=lambda: hash_states.unlock(self.upload_id),
            totals=self.uploads.totals,
        )

    async def _hash_stored(self, algorithm: str) -> Any:
        hasher = Digest(algorithm, "").hasher()
        try:
            reader = await self.uploads.driver.reader(self._data_path, 0)
        except PathNotFoundError:
            raise BLOB_UPLOAD_UNKNOWN(self.upload_id) from None
        try:
            while chunk := await reader.read(REHASH_READ):
                await in_thread(hasher.update, chunk)
        finally:
            await reader.close()
        return hasher

    async def commit(self, expected: Digest) -> BlobDescriptor:
        """
        Verify the upload against C{expected} and make it a blob of the
        repository.  The blob becomes visible only once verified and moved
        into place whole.  On a digest mismatch the upload is cancelled.

        @raise txregistry.errors.RegistryError: DIGEST_INVALID when the
            content does not match; BLOB_UPLOAD_UNKNOWN when the upload is
            gone.
        """
        await self.uploads.hash_states.lock(self.upload_id)
        try:
            return await self._commit(expected)
        except StorageFullError:
            # The client starts over once space is freed; until then, the
            # upload's bytes are given back (a blob already moved into
            # place stays unlinked, for garbage collection).
            await self.discard()
            raise
        finally:
            self.uploads.hash_states.unlock(self.upload_id)

    async def _commit(self, expected: Digest) -> BlobDescriptor:
        driver = self.uploads.driver
        try:
            info = await driver.stat(self._data_path)
        except PathNotFoundError:
            raise BLOB_UPLOAD_UNKNOWN(self.upload_id) from None
        self.size = info.size
        hasher = self.uploads.hash_states.take(self.upload_id, expected.algorithm, self.size)
        if hasher is None:
            hasher = await self._hash_stored(expected.algorithm)
        if hasher.hexdigest() != expected.hex:
            await self.cancel()
            raise DIGEST_INVALID(f"content does not match digest {expected}")
        blob_path = paths.blob_data(expected)
        writes: list[WriteOperation] = []
        if not await exists(driver, blob_path):
            if self.size == 0:
                writes.append(PutContent(blob_path, b""))
            else:
                writes.append(Move(self._data_path, blob_path))
        await self._finish(expected, writes)
        return BlobDescriptor(expected, self.size)

    async def commit_bytes(self, content: bytes, expected: Digest) -> BlobDescriptor:
        """
        Append C{content} (the request's whole body, small enough to be held
        in memory) and commit, as L{commit} does after an appender wrote
        it.  When the upload holds nothing yet, which is the usual case (a
        POST, then a PUT with the blob), C{content} becomes the blob without
        going through the upload's file: a few small writes in one batch.
        """
        await self.uploads.hash_states.lock(self.upload_id)
        try:
            try:
                info = await self.uploads.driver.stat(self._data_path)
            except PathNotFoundError:
                raise BLOB_UPLOAD_UNKNOWN(self.upload_id) from None
            if info.size == 0:
                self.size = len(content)
                self.uploads.totals.bytes_received += len(content)
                if (await _hashed(expected.algorithm, content)).hexdigest() != expected.hex:
                    await self.cancel()
                    raise DIGEST_INVALID(f"content does not match digest {expected}")
                await self._finish(expected, [PutContent(paths.blob_data(expected), content)])
                return BlobDescriptor(expected, self.size)
        except StorageFullError:
            await self.discard()
            raise
        finally:
            self.uploads.hash_states.unlock(self.upload_id)
        if content:
            appender = await self.open_appender(expected.algorithm)
            appender.write(content)
            await appender.close()
        return await self.commit(expected)

    async def _finish(self, digest: Digest, writes: list[WriteOperation]) -> None:
        """
        Store the blob (C{writes}), link it into the repository and delete
        the upload, in one batch of writes (see L{write_batch}).
        """
        self.uploads.hash_states.forget(self.upload_id)
        await write_batch(
            self.uploads.driver,
            [
                *writes,
                self.uploads.linked.link_operation(digest),
                Delete(paths.upload(self.repository, self.upload_id), missing_ok=True),
            ],
        )

    async def cancel(self) -> None:
        """
        Abandon the upload and delete what it stored.

        @raise txregistry.errors.RegistryError: BLOB_UPLOAD_UNKNOWN when gone.
        """
        try:
            await self.uploads.driver.delete(paths.upload(self.repository, self.upload_id))
        except PathNotFoundError:
            raise BLOB_UPLOAD_UNKNOWN(self.upload_id) from None
        finally:
            self.uploads.hash_states.forget(self.upload_id)

    async def discard(self) -> None:
        """Delete what the upload stored, if anything is left (unlike L{cancel})."""
        self.uploads.hash_states.forget(self.upload_id)
        try:
            await self.uploads.driver.delete(paths.upload(self.repository, self.upload_id))
        except PathNotFoundError:
            pass


class Uploads:
    """The uploads of one repository."""

    def __init__(
        self,
        driver: IStorageDriver,
        linked: LinkedBlobStore,
        hash_states: HashStates,
        totals: UploadTotals | None = None,
    ) -> None:
        self.driver = driver
        self.linked = linked
        self.hash_states = hash_states
        self.totals = UploadTotals() if totals is None else totals
        self.repository = linked.repository

    async def start(self) -> UploadSession:
        """Begin a new, empty upload."""
        upload_id = str(uuid.uuid4())
        started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        session = UploadSession(self, upload_id, started_at, 0)
        try:
            await write_batch(
                self.driver,
                [
                    PutContent(paths.upload_data(self.repository, upload_id), b""),
                    PutContent(
                        paths.upload_started_at(self.repository, upload_id),
                        started_at.encode("ascii"),
                    ),
                ],
            )
        except StorageFullError:
            await session.discard()  # an empty file fits where its date does not
            raise
        return session

    async def put_whole(self, content: bytes, expected: Digest) -> BlobDescriptor:
        """
        Store C{content} as blob C{expected} of this repository, once it is
        verified, with no upload in storage: a monolithic C{POST} whose
        body is small enough to be held in memory.

        @raise txregistry.errors.RegistryError: DIGEST_INVALID when the
            content does not match.
        """
        self.totals.bytes_received += len(content)
        if (await _hashed(expected.algorithm, content)).hexdigest() != expected.hex:
            raise DIGEST_INVALID(f"content does not match digest {expected}")
        await write_batch(
            self.driver,
            [PutContent(paths.blob_data(expected), content), self.linked.link_operation(expected)],
        )
        return BlobDescriptor(expected, len(content))

    async def resume(self, upload_id: str) -> UploadSession:
        """
        Find an upload in progress.

        @raise txregistry.errors.RegistryError: BLOB_UPLOAD_UNKNOWN when there
            is none by that id in this repository.
        """
        data_path = paths.upload_data(self.repository, upload_id)
        try:
            started_at = await self.driver.get_content(
                paths.upload_started_at(self.repository, upload_id)
            )
            try:
                info = await self.driver.stat(data_path)
            except PathNotFoundError:
                info = await self._adopt(data_path)
        except PathNotFoundError:
            raise BLOB_UPLOAD_UNKNOWN(upload_id) from None
        return UploadSession(self, upload_id, started_at.decode("ascii", "replace"), info.size)

    async def _adopt(self, data_path: str) -> FileInfo:
        """
        Make the bytes of an upload whose data is not (yet) a file a file:
        Distribution's s3 driver keeps them in an open multipart upload
        between requests, which an appending writer of ours completes (see
        L{txregistry.drivers.s3}).  Where there is nothing to continue,
        fails with L{PathNotFoundError}.
        """
        writer = await self.driver.writer(data_path, append=True)
        await writer.close()
        return await self.driver.stat(data_path)


async def _hashed(algorithm: str, content: bytes) -> Any:
    """A hash of C{content}: on the reactor thread when it is small."""
    hasher = Digest(algorithm, "").hasher()
    if len(content) <= INLINE_HASH:
        hasher.update(content)
    else:
        await in_thread(hasher.update, content)
    return hasher
