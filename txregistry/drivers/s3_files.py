# -*- test-case-name: tests.test_drivers_s3 -*-
"""
The files of the C{s3} driver: reading one object, writing one as a
multipart upload, and turning botocore's errors into driver errors.  See
L{txregistry.drivers.s3} for how writers use multipart uploads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from twisted.internet.defer import Deferred, ensureDeferred, succeed
from zope.interface import implementer

from txregistry.drivers.errors import PathNotFoundError, StorageUnavailableError
from txregistry.drivers.s3_parameters import MIN_CHUNK_SIZE, S3Parameters
from txregistry.interfaces import IFileReader, IFileWriter
from txregistry.threads import in_thread

T = TypeVar("T")

_NOT_FOUND = ("NoSuchKey", "NotFound", "404", "NoSuchUpload")


def is_missing(error: Exception) -> bool:
    """Whether a botocore C{ClientError} says the key (or upload) is not there."""
    response = getattr(error, "response", {})
    return str(response.get("Error", {}).get("Code", "")) in _NOT_FOUND


def call(path: str, work: Callable[[], T]) -> T:
    """
    Run C{work} (in a pool thread), turning botocore's errors into driver
    errors: a missing key is L{PathNotFoundError}; everything else the
    bucket or the network answers is L{StorageUnavailableError}.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return work()
    except ClientError as error:
        if is_missing(error):
            raise PathNotFoundError(path) from None
        code = str(error.response.get("Error", {}).get("Code", ""))
        raise StorageUnavailableError(f"{path}: the bucket answered {code or error}") from None
    except BotoCoreError as error:
        raise StorageUnavailableError(f"{path}: {error}") from None
    except OSError as error:
        # urllib3's read errors on a streaming body surface as OSErrors.
        raise StorageUnavailableError(f"{path}: {error}") from None


def call_in_thread(path: str, work: Callable[[], T]) -> Deferred[T]:
    """L{call} in the thread pool."""
    return in_thread(call, path, work)


@implementer(IFileReader)
class S3Reader:
    """Reads the body of one GetObject response, in the thread pool."""

    def __init__(self, path: str, body: Any) -> None:
        self._path = path
        self._body = body

    def read(self, max_bytes: int) -> Deferred[bytes]:
        """See L{IFileReader.read}."""
        if self._body is None:
            return succeed(b"")
        body = self._body
        return call_in_thread(self._path, lambda: bytes(body.read(max_bytes)))

    def close(self) -> Deferred[None]:
        """See L{IFileReader.close}."""
        body, self._body = self._body, None
        if body is None:
            return succeed(None)
        return in_thread(body.close)


class MultipartStore(Protocol):
    """
    What an L{S3Writer} needs of the bucket it writes to: the whole-object
    calls and the steps of a multipart upload.  L{txregistry.drivers.s3.S3Driver}
    provides it; the writer names this protocol rather than the driver so
    that the driver's module may import this one and not the other way round.
    """

    parameters: S3Parameters
    # botocore makes a client's methods at run time.
    client: Any

    def key(self, path: str) -> str:
        """The object key of the driver path C{path}."""

    def get_content(self, path: str) -> Deferred[bytes]:
        """The whole object at C{path}."""

    def put_content(self, path: str, content: bytes) -> Deferred[None]:
        """Make C{content} the object at C{path}, in one request."""

    def delete(self, path: str) -> Deferred[None]:
        """Delete the object at C{path} (and anything below it)."""

    def create_multipart_upload(self, path: str) -> Deferred[str]:
        """Start a multipart upload to C{path}; fires with its id."""

    async def continue_in_upload(self, path: str, size: int) -> tuple[str, list[dict[str, Any]]]:
        """
        Start a multipart upload to C{path} whose first parts copy the
        C{size} bytes of the object there; the upload's id and its parts so
        far.
        """

    def complete_multipart_upload(
        self, path: str, upload_id: str, parts: list[dict[str, Any]]
    ) -> Deferred[None]:
        """Make the upload's C{parts} the object at C{path}."""

    def abort_multipart_upload(self, path: str, upload_id: str) -> Deferred[None]:
        """Drop the upload and the parts sent."""


@implementer(IFileWriter)
class S3Writer:
    """
    Writes one object as a multipart upload (see L{txregistry.drivers.s3}).

    @param continues: the size of the object this writer continues (0 for
        a new file).  Its bytes are taken in at the first write (copied
        into the upload's first parts, or read back when too small to be a
        part), so a writer that writes nothing costs nothing and leaves the
        object as it was.
    """

    def __init__(self, driver: MultipartStore, path: str, continues: int = 0) -> None:
        self._driver = driver
        self._path = path
        self._key = driver.key(path)
        self.size = continues
        self._continues = continues
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._in_flight: Deferred[None] | None = None
        self._finished = False

    def write(self, data: bytes) -> Deferred[None]:
        """See L{IFileWriter.write}."""
        self.size += len(data)
        return ensureDeferred(self._write(data))

    async def _write(self, data: bytes) -> None:
        self._check_open()
        if self._continues:
            await self._take_in_existing()
        self._buffer += data
        chunk = self._driver.parameters.chunk_size
        while len(self._buffer) >= chunk:
            with memoryview(self._buffer) as view:
                part = bytes(view[:chunk])
            del self._buffer[:chunk]
            await self._wait_in_flight()
            self._in_flight = ensureDeferred(self._upload_part(part))

    async def _take_in_existing(self) -> None:
        existing, self._continues = self._continues, 0
        if existing >= MIN_CHUNK_SIZE:
            self._upload_id, self._parts = await self._driver.continue_in_upload(
                self._path, existing
            )
        else:
            self._buffer[:0] = await self._driver.get_content(self._path)

    def _check_open(self) -> None:
        if self._finished:
            raise ValueError(f"the writer of {self._path} is closed")

    async def _wait_in_flight(self) -> None:
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            await in_flight

    async def _upload_part(self, data: bytes) -> None:
        client = self._driver.client
        bucket = self._driver.parameters.bucket
        if self._upload_id is None:
            self._upload_id = await self._driver.create_multipart_upload(self._path)
        upload_id = self._upload_id
        number = len(self._parts) + 1
        self._parts.append({"PartNumber": number})
        answer = await call_in_thread(
            self._path,
            lambda: client.upload_part(
                Bucket=bucket, Key=self._key, UploadId=upload_id, PartNumber=number, Body=data
            ),
        )
        self._parts[number - 1]["ETag"] = answer["ETag"]

    async def _finish(self) -> None:
        self._check_open()
        self._finished = True
        driver = self._driver
        if self._continues:
            return  # nothing written: the object stays as it is
        try:
            await self._wait_in_flight()
            if self._upload_id is None:
                content = bytes(self._buffer)
                self._buffer = bytearray()
                await driver.put_content(self._path, content)
                return
            if self._buffer:
                await self._upload_part(bytes(self._buffer))
                self._buffer = bytearray()
            await driver.complete_multipart_upload(self._path, self._upload_id, self._parts)
        except BaseException:
            # The object keeps what it held before this writer; drop the
            # parts sent if the bucket answers (else they wait for the
            # bucket's rule for incomplete multipart uploads).
            if self._upload_id is not None:
                try:
                    await driver.abort_multipart_upload(self._path, self._upload_id)
                except StorageUnavailableError:
                    pass
            raise

    def close(self) -> Deferred[None]:
        """See L{IFileWriter.close}: the bytes become the object, to be continued."""
        return ensureDeferred(self._finish())

    def commit(self) -> Deferred[None]:
        """See L{IFileWriter.commit}: a completed upload is durable."""
        return ensureDeferred(self._finish())

    def cancel(self) -> Deferred[None]:
        """See L{IFileWriter.cancel}."""

        async def cancel() -> None:
            self._check_open()
            self._finished = True
            self._buffer = bytearray()
            try:
                await self._wait_in_flight()
            except Exception:
                pass  # The upload is aborted below whatever its last part did.
            if self._upload_id is not None:
                await self._driver.abort_multipart_upload(self._path, self._upload_id)
            try:
                await self._driver.delete(self._path)
            except PathNotFoundError:
                pass

        return ensureDeferred(cancel())
