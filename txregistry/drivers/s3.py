# -*- test-case-name: tests.test_drivers_s3 -*-
"""
The C{s3} storage driver: S3 and S3-compatible object storage, laid out as
Distribution's C{s3-aws} driver lays it out (a driver path is the key below
C{rootdirectory}), so either serves the other's bucket.

Every request goes through botocore in the thread pool of
L{txregistry.threads}: the reactor never waits on the network, and botocore
brings request signing, retries with back-off, checksums and credential
discovery, which would otherwise have to be written again over treq.

Writers
=======
A writer buffers up to C{chunksize} bytes, then sends them as one part of a
multipart upload, with at most one part in flight: memory stays within two
chunks per writer, and C{write} fires only once the bucket took the previous
part, which slows the client down when the bucket is slow.  C{close} and
C{commit} both complete the upload, so the bytes are an object any process
can read.  C{writer(path, append=True)} continues such an object: at its
first write, it starts a new multipart upload whose first parts are
server-side copies of it
(objects under 5 MiB, too small to be a part, are read back instead), as
Distribution's driver does.  Where no object is at the key but Distribution
left a multipart upload open there (its way of keeping an upload's bytes
between two requests), that upload is completed and continued.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Collection, Mapping, Sequence
from functools import partial
from itertools import pairwise
from typing import Any, TypeVar

from twisted.internet.defer import (
    Deferred,
    DeferredSemaphore,
    FirstError,
    ensureDeferred,
    gatherResults,
    succeed,
)
from zope.interface import implementer

from txregistry.drivers import paged_listing, s3_listing
from txregistry.drivers.errors import PathNotFoundError, StorageUnavailableError
from txregistry.drivers.paged_listing import EMPTY, FolderPage, Listing
from txregistry.drivers.s3_files import (
    S3Reader,
    S3Writer,
    call_in_thread,
    is_missing,
)
from txregistry.drivers.s3_parameters import (
    MAX_PART_SIZE,
    MIN_CHUNK_SIZE,
    S3Parameters,
    parse_parameters,
)
from txregistry.interfaces import (
    FileInfo,
    IBatchDeleter,
    IFileLister,
    IFileReader,
    IFileWriter,
    IPagedLister,
    IStaleWritesPurger,
    IStorageDriver,
    IStorageDriverFactory,
)

T = TypeVar("T")

# How long a presigned URL stays valid, as for Distribution.
PRESIGN_SECONDS = 20 * 60
# The most keys one DeleteObjects request takes.
DELETE_BATCH = 1000


@implementer(IStorageDriver, IBatchDeleter, IFileLister, IPagedLister, IStaleWritesPurger)
class S3Driver:
    """
    Stores each driver path as the object at the same key below the
    configured root, in one bucket.
    """

    name = "s3"

    def __init__(self, parameters: S3Parameters, client: Any = None) -> None:
        self.parameters = parameters
        # botocore makes a client's methods at run time: typed as Any.
        self.client: Any = client if client is not None else parameters.client()
        self._bucket = parameters.bucket

    # -- keys ------------------------------------------------------------------

    def key(self, path: str) -> str:
        """The object key of a driver path."""
        return self.parameters.root + path[1:]

    def _prefix(self, path: str) -> str:
        """The key prefix of everything below the directory C{path}."""
        return self.parameters.root if path == "/" else self.key(path) + "/"

    def _path(self, key: str) -> str:
        return "/" + key[len(self.parameters.root) :].rstrip("/")

    # -- whole objects ---------------------------------------------------------

    def get_content(self, path: str) -> Deferred[bytes]:
        """See L{IStorageDriver.get_content}."""

        def get() -> bytes:
            answer = self.client.get_object(Bucket=self._bucket, Key=self.key(path))
            with answer["Body"] as body:
                return bytes(body.read())

        return call_in_thread(path, get)

    def put_content(self, path: str, content: bytes) -> Deferred[None]:
        """See L{IStorageDriver.put_content}: one PutObject, so readers never see a mix."""

        def put() -> None:
            self.client.put_object(
                Bucket=self._bucket,
                Key=self.key(path),
                Body=content,
                **self.parameters.put_arguments(),
            )

        return call_in_thread(path, put)

    def reader(self, path: str, offset: int = 0) -> Deferred[IFileReader]:
        """See L{IStorageDriver.reader}."""
        from botocore.exceptions import ClientError

        def open_at() -> IFileReader:
            arguments: dict[str, Any] = {"Bucket": self._bucket, "Key": self.key(path)}
            if offset:
                arguments["Range"] = f"bytes={offset}-"
            try:
                answer = self.client.get_object(**arguments)
            except ClientError as error:
                # Only an existing object answers InvalidRange: the offset
                # is at or past its end.
                if error.response.get("Error", {}).get("Code") == "InvalidRange":
                    return S3Reader(path, None)
                raise
            return S3Reader(path, answer["Body"])

        return call_in_thread(path, open_at)

    def stat(self, path: str) -> Deferred[FileInfo]:
        """See L{IStorageDriver.stat}: the object, else any key below the path."""

        from botocore.exceptions import ClientError

        def stat() -> FileInfo:
            # The root is no object (its key may be empty): only a prefix.
            if path != "/":
                try:
                    head = self.client.head_object(Bucket=self._bucket, Key=self.key(path))
                except ClientError as error:
                    if not is_missing(error):
                        raise
                else:
                    return FileInfo(
                        path, int(head["ContentLength"]), head["LastModified"].timestamp(), False
                    )
            listed = self.client.list_objects_v2(
                Bucket=self._bucket, Prefix=self._prefix(path), MaxKeys=1
            )
            if not listed.get("KeyCount") and not listed.get("Contents"):
                raise PathNotFoundError(path)
            # Object storage keeps no times for directories.
            return FileInfo(path, 0, 0.0, True)

        return call_in_thread(path, stat)

    # -- writers ---------------------------------------------------------------

    def writer(self, path: str, append: bool) -> Deferred[IFileWriter]:
        """
        See L{IStorageDriver.writer}.  Without C{append}, the old object
        stays readable until the new one is closed or committed.
        """
        if not append:
            return succeed(S3Writer(self, path))
        return ensureDeferred(self._continue(path))

    async def _continue(self, path: str) -> IFileWriter:
        try:
            size = (await self._head(path))["ContentLength"]
        except PathNotFoundError:
            if not await self._complete_abandoned_upload(path):
                raise
            size = (await self._head(path))["ContentLength"]
        return S3Writer(self, path, continues=int(size))

    async def continue_in_upload(self, path: str, size: int) -> tuple[str, list[dict[str, Any]]]:
        """
        Start a multipart upload to C{path} whose first parts are copies of
        the C{size} bytes (at least a part's worth) of the object there.

        @return: the upload's id and its parts so far.
        """
        upload_id = await self.create_multipart_upload(path)
        try:
            parts = await self._copy_into(path, path, upload_id, _copy_ranges(size, MAX_PART_SIZE))
        except BaseException:
            await self.abort_multipart_upload(path, upload_id)
            raise
        return upload_id, parts

    def _head(self, path: str) -> Deferred[dict[str, Any]]:
        return call_in_thread(
            path, lambda: dict(self.client.head_object(Bucket=self._bucket, Key=self.key(path)))
        )

    async def _copy_into(
        self, source: str, dest: str, upload_id: str, ranges: list[tuple[int, int]]
    ) -> list[dict[str, Any]]:
        """
        Copy the byte C{ranges} of the object at C{source} into the first
        parts of the multipart upload C{upload_id} to C{dest}, at most
        C{multipartcopymaxconcurrency} at once.
        """
        limit = DeferredSemaphore(self.parameters.copy_concurrency)

        def copy(number: int, first: int, last: int) -> dict[str, Any]:
            answer = self.client.upload_part_copy(
                Bucket=self._bucket,
                Key=self.key(dest),
                UploadId=upload_id,
                PartNumber=number,
                CopySource={"Bucket": self._bucket, "Key": self.key(source)},
                CopySourceRange=f"bytes={first}-{last}",
            )
            return {"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]}

        copies = [
            limit.run(call_in_thread, source, partial(copy, number, first, last))
            for number, (first, last) in enumerate(ranges, start=1)
        ]
        try:
            return list(await gatherResults(copies, consumeErrors=True))
        except FirstError as error:
            error.subFailure.raiseException()
            raise

    async def _complete_abandoned_upload(self, path: str) -> bool:
        """
        Complete a multipart upload left open at C{path} (as Distribution's
        driver leaves one between two chunks of a blob upload).

        @return: whether there was one.
        """
        key = self.key(path)

        def find() -> tuple[str, list[dict[str, Any]]] | None:
            listed = self.client.list_multipart_uploads(Bucket=self._bucket, Prefix=key)
            for upload in listed.get("Uploads", []):
                if upload["Key"] == key:
                    upload_id = upload["UploadId"]
                    parts = self.client.list_parts(
                        Bucket=self._bucket, Key=key, UploadId=upload_id
                    ).get("Parts", [])
                    return upload_id, [
                        {"PartNumber": part["PartNumber"], "ETag": part["ETag"]} for part in parts
                    ]
            return None

        found = await call_in_thread(path, find)
        if found is None:
            return False
        upload_id, parts = found
        if not parts:
            await self.abort_multipart_upload(path, upload_id)
            await self.put_content(path, b"")
        else:
            await self.complete_multipart_upload(path, upload_id, parts)
        return True

    def purge_stale_writes(self, started_before: float) -> Deferred[int]:
        """
        See L{IStaleWritesPurger}: abort the multipart uploads below the
        root initiated before C{started_before}, which the bucket would
        otherwise keep (and bill) until a lifecycle rule removes them.
        """

        def purge() -> int:
            aborted = 0
            paginator = self.client.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self._bucket, Prefix=self.parameters.root):
                for upload in page.get("Uploads", []):
                    if upload["Initiated"].timestamp() >= started_before:
                        continue
                    try:
                        self.client.abort_multipart_upload(
                            Bucket=self._bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                    except ClientError as error:
                        if not is_missing(error):
                            raise
                        continue
                    aborted += 1
            return aborted

        from botocore.exceptions import ClientError

        return call_in_thread(self.parameters.root or "/", purge)

    def create_multipart_upload(self, path: str) -> Deferred[str]:
        """Start a multipart upload to C{path}; its id."""

        def create() -> str:
            answer = self.client.create_multipart_upload(
                Bucket=self._bucket, Key=self.key(path), **self.parameters.put_arguments()
            )
            return str(answer["UploadId"])

        return call_in_thread(path, create)

    def complete_multipart_upload(
        self, path: str, upload_id: str, parts: list[dict[str, Any]]
    ) -> Deferred[None]:
        """Make the parts of C{upload_id} the object at C{path}."""

        def complete() -> None:
            self.client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=self.key(path),
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [
                        {"PartNumber": part["PartNumber"], "ETag": part["ETag"]} for part in parts
                    ]
                },
            )

        return call_in_thread(path, complete)

    def abort_multipart_upload(self, path: str, upload_id: str) -> Deferred[None]:
        """Drop the multipart upload C{upload_id} and its parts."""

        from botocore.exceptions import ClientError

        def abort() -> None:
            try:
                self.client.abort_multipart_upload(
                    Bucket=self._bucket, Key=self.key(path), UploadId=upload_id
                )
            except ClientError as error:
                if not is_missing(error):
                    raise

        return call_in_thread(path, abort)

    # -- listing ---------------------------------------------------------------

    def _children(self, path: str) -> list[tuple[str, FileInfo]]:
        """The direct children of the directory C{path}: (path, info), sorted."""
        prefix = self._prefix(path)
        children: dict[str, FileInfo] = {}
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                child = self._path(common["Prefix"])
                children[child] = FileInfo(child, 0, 0.0, True)
            for item in page.get("Contents", []):
                if item["Key"] == prefix:
                    continue  # a "directory marker" object some tools create
                child = self._path(item["Key"])
                children.setdefault(
                    child,
                    FileInfo(child, int(item["Size"]), item["LastModified"].timestamp(), False),
                )
        return sorted(children.items())

    def list(self, path: str) -> Deferred[list[str]]:
        """See L{IStorageDriver.list}."""

        def list_children() -> list[str]:
            children = self._children(path)
            if not children and path != "/":
                raise PathNotFoundError(path)
            return [child for child, _ in children]

        return call_in_thread(path, list_children)

    def list_page(
        self, path: str, after: str | None, limit: int | None
    ) -> Deferred[builtins.list[str]]:
        """
        See L{IPagedLister.list_page}: one C{ListObjectsV2} from C{after} on
        (C{StartAfter}, C{MaxKeys} of the page and a few), and a request
        for each beginning of the last name read that may sort before it
        (C{1.0} when the listing stopped at C{1.0-alpine}; see
        L{txregistry.drivers.s3_listing}); one more when the page is empty,
        to tell an empty directory from a missing one.
        """

        def page() -> list[str]:
            prefix = self._prefix(path)
            children = s3_listing.children_after(
                self.client, self._bucket, prefix, after, limit, folders_only=False
            )
            if (
                not children.last_key
                and path != "/"
                and (
                    after is None
                    or not s3_listing.holds_anything(self.client, self._bucket, prefix)
                )
            ):
                raise PathNotFoundError(path)
            return [name for name, _ in children.entries][:limit]

        return call_in_thread(path, page)

    def _folder_page(self, listing: Listing) -> FolderPage:
        """One folder's page for the search of marked folders (blocking)."""
        prefix = self._prefix(listing.folder)
        if len(prefix.encode("utf-8")) > s3_listing.KEY_BYTES:
            return EMPTY  # named after a "last" no key can begin with
        children = s3_listing.children_after(
            self.client, self._bucket, prefix, listing.after, listing.limit, folders_only=True
        )
        marked = not listing.marks.isdisjoint(children.read)
        if not marked and not children.complete:
            # A mark the listing did not reach is looked for, unless keys
            # after its own were read from the folder's start.
            marked = any(
                s3_listing.holds(self.client, self._bucket, prefix, mark)
                for mark in sorted(listing.marks)
                if listing.after is not None or f"{prefix}{mark}/" > children.last_key
            )
        return FolderPage([name for name, _ in children.entries], children.complete, marked)

    def marked_folders(
        self, path: str, marks: Collection[str], after: str | None, limit: int | None
    ) -> Deferred[builtins.list[str]]:
        """
        See L{IPagedLister.marked_folders}: a C{ListObjectsV2} (with
        C{Delimiter} and C{StartAfter}) per folder the search looks into,
        the folders of a page looked into concurrently: a page of C{n}
        repositories costs about C{n + 3} requests, whatever the bucket
        holds.
        """
        return ensureDeferred(
            paged_listing.run_async(
                paged_listing.search(path, marks, after, limit),
                lambda listing: call_in_thread(listing.folder, lambda: self._folder_page(listing)),
            )
        )

    def list_files(
        self, path: str, skip: Collection[str] = ()
    ) -> Deferred[builtins.list[FileInfo]]:
        """
        See L{IFileLister.list_files}: one flat listing of the prefix (a
        thousand keys a request), where a walk makes one per directory.
        """
        prefix = self._prefix(path)

        def list_keys() -> list[FileInfo]:
            found: list[FileInfo] = []
            seen = False
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    key = item["Key"]
                    if key.endswith("/"):
                        continue  # a "directory marker" object some tools create
                    seen = True  # the folder holds a file, listed or skipped
                    folders = key[len(prefix) :].split("/")[:-1]
                    if skip and any(folder in skip for folder in folders):
                        continue
                    found.append(
                        FileInfo(
                            self._path(key),
                            int(item["Size"]),
                            item["LastModified"].timestamp(),
                            False,
                        )
                    )
            if not seen and path != "/":
                raise PathNotFoundError(path)
            return found

        return call_in_thread(path, list_keys)

    def walk(self, path: str, visit: Callable[[FileInfo], bool | None]) -> Deferred[None]:
        """See L{IStorageDriver.walk}: one listing per directory, depth first."""

        async def walk_from(folder: str) -> None:
            children = await call_in_thread(folder, lambda: self._children(folder))
            if not children and folder == path and path != "/":
                raise PathNotFoundError(path)
            for _, info in children:
                if visit(info) is not False and info.is_dir:
                    await walk_from(info.path)

        return ensureDeferred(walk_from(path))

    # -- moving and deleting ---------------------------------------------------

    def move(self, source: str, dest: str) -> Deferred[None]:
        """
        See L{IStorageDriver.move}: a server-side copy (in parts above
        C{multipartcopythresholdsize}), then the source is deleted.  Readers
        of C{dest} see the old or the new object, as a copy is atomic.
        """
        return ensureDeferred(self._move(source, dest))

    async def _move(self, source: str, dest: str) -> None:
        size = int((await self._head(source))["ContentLength"])
        if size <= self.parameters.copy_threshold:

            def copy() -> None:
                self.client.copy_object(
                    Bucket=self._bucket,
                    Key=self.key(dest),
                    CopySource={"Bucket": self._bucket, "Key": self.key(source)},
                    **self.parameters.put_arguments(),
                )

            await call_in_thread(source, copy)
        else:
            await self._copy_in_parts(source, dest, size)
        await call_in_thread(
            source, lambda: self.client.delete_object(Bucket=self._bucket, Key=self.key(source))
        )

    async def _copy_in_parts(self, source: str, dest: str, size: int) -> None:
        upload_id = await self.create_multipart_upload(dest)
        try:
            ranges = _copy_ranges(size, self.parameters.copy_chunk_size)
            parts = await self._copy_into(source, dest, upload_id, ranges)
            await self.complete_multipart_upload(dest, upload_id, parts)
        except BaseException:
            await self.abort_multipart_upload(dest, upload_id)
            raise

    def _keys_of(self, path: str) -> builtins.list[str]:
        """The keys a delete of C{path} removes: the object and every key below (blocking)."""
        from botocore.exceptions import ClientError

        keys: builtins.list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self._bucket, Prefix=self._prefix(path)):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        if path != "/":
            try:
                self.client.head_object(Bucket=self._bucket, Key=self.key(path))
            except ClientError as error:
                if not is_missing(error):
                    raise
            else:
                keys.insert(0, self.key(path))
        return keys

    def _delete_keys(self, keys: builtins.list[str], path: str) -> None:
        """Delete C{keys}, a batch per request (blocking)."""
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            answer = self.client.delete_objects(
                Bucket=self._bucket,
                Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
            )
            if answer.get("Errors"):
                failed = answer["Errors"][0]
                raise StorageUnavailableError(
                    f"{path}: could not delete {failed.get('Key')}: {failed.get('Code')}"
                )

    def delete(self, path: str) -> Deferred[None]:
        """See L{IStorageDriver.delete}: the object and every key below the path."""

        def delete() -> None:
            keys = self._keys_of(path)
            if not keys:
                if path == "/":
                    return
                raise PathNotFoundError(path)
            self._delete_keys(keys, path)

        return call_in_thread(path, delete)

    def delete_many(self, paths: Sequence[str]) -> Deferred[builtins.list[str]]:
        """
        See L{IBatchDeleter.delete_many}: the keys of every path found, then
        deleted a thousand a request.
        """

        def delete_all() -> builtins.list[str]:
            keys: builtins.list[str] = []
            deleted = []
            for path in paths:
                found = self._keys_of(path)
                if found:
                    keys.extend(found)
                    deleted.append(path)
            self._delete_keys(keys, paths[0] if paths else "/")
            return deleted

        return call_in_thread(paths[0] if paths else "/", delete_all)

    # -- redirects -------------------------------------------------------------

    def redirect_url(self, method: str, path: str) -> Deferred[str | None]:
        """See L{IStorageDriver.redirect_url}: a presigned URL, valid 20 minutes."""
        operation = {"GET": "get_object", "HEAD": "head_object"}.get(method)
        if operation is None:
            return succeed(None)

        def presign() -> str | None:
            url: str = self.client.generate_presigned_url(
                operation,
                Params={"Bucket": self._bucket, "Key": self.key(path)},
                ExpiresIn=PRESIGN_SECONDS,
            )
            return url

        # In a thread: finding credentials may ask the instance metadata service.
        return call_in_thread(path, presign)


def _copy_ranges(size: int, chunk: int) -> list[tuple[int, int]]:
    """
    Inclusive byte ranges covering C{size} bytes in pieces of C{chunk}, so
    that every piece but the last is large enough to be a part: a last piece
    under the minimum joins the one before it, or shares its bytes with it
    when together they would be over the maximum.
    """
    bounds = [*range(0, size, chunk), size]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < MIN_CHUNK_SIZE:
        if bounds[-1] - bounds[-3] <= MAX_PART_SIZE:
            del bounds[-2]
        else:
            bounds[-2] = (bounds[-3] + bounds[-1]) // 2
    return [(first, end - 1) for first, end in pairwise(bounds)]


class S3DriverFactory:
    """Makes L{S3Driver}s from Distribution's C{s3-aws} parameters."""

    name = "s3"

    def create(self, parameters: Mapping[str, Any]) -> IStorageDriver:
        """See L{IStorageDriverFactory.create} and L{parse_parameters}."""
        return S3Driver(parse_parameters(parameters))


implementer(IStorageDriverFactory)(S3DriverFactory)
