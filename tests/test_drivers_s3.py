"""
The s3 storage driver against an S3-compatible server (moto's, a process of
its own on loopback): the shared driver suite, multipart writes and copies,
continuing uploads across writers and processes, presigned URLs, the
parameters, and outages.
"""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from support import temporary_directory
from txregistry.config import ConfigError
from txregistry.drivers import s3_listing
from txregistry.drivers.base import ValidatingDriver, list_files, list_page, marked_folders
from txregistry.drivers.errors import PathNotFoundError, StorageUnavailableError
from txregistry.drivers.plugins import driver_factories
from txregistry.drivers.s3 import S3Driver, S3DriverFactory, _copy_ranges
from txregistry.drivers.s3_listing import start_after
from txregistry.drivers.s3_parameters import MAX_PART_SIZE, MIN_CHUNK_SIZE, parse_parameters
from txregistry.interfaces import IStorageDriver
from txregistry.testing.drivers import MARKS, DriverTestsMixin, random_bytes, read_all
from txregistry.testing.process import free_port
from txregistry.testing.s3server import S3ServerProcess

BUCKET = "txregistry-driver-tests"
MiB = 1024 * 1024

_servers: dict[str, S3ServerProcess] = {}


@pytest.fixture(scope="module", autouse=True)
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3ServerProcess]:
    """One S3 server for the module's tests, each under a root of its own."""
    with S3ServerProcess(tmp_path_factory.mktemp("s3")) as server:
        server.create_bucket(BUCKET)
        _servers["shared"] = server
        yield server
        del _servers["shared"]


def make_s3_driver(**extra: Any) -> S3Driver:
    """A driver on the shared server's bucket, under a new root directory."""
    parameters = _servers["shared"].storage_parameters(BUCKET, f"/{uuid.uuid4().hex}", **extra)
    driver = S3DriverFactory().create(parameters["s3"])
    assert isinstance(driver, S3Driver)
    return driver


class S3DriverTests(DriverTestsMixin, TestCase):
    """The driver suite against the s3 driver."""

    def make_driver(self) -> IStorageDriver:
        return make_s3_driver()

    async def test_directory_marker_alone_is_no_folder(self) -> None:
        """
        A "directory marker" object (a key ending in a slash, as some tools
        make) is no file and no folder: listing and walking below it both
        say the path is missing, and beside a file it is left out.
        """
        raw = self.raw_driver
        tree = self.tree()
        marker = raw.key(f"{tree}/marked") + "/"
        raw.client.put_object(Bucket=BUCKET, Key=marker, Body=b"")
        self.addCleanup(raw.client.delete_object, Bucket=BUCKET, Key=marker)
        await self.assert_fails(
            PathNotFoundError, lambda: list_files(self.driver, f"{tree}/marked")
        )
        await self.assert_fails(
            PathNotFoundError, lambda: self.driver.walk(f"{tree}/marked", lambda info: None)
        )
        await self.driver.put_content(f"{tree}/marked/file", b"x")
        listed = await list_files(self.driver, f"{tree}/marked")
        self.assertEqual([info.path for info in listed], [f"{tree}/marked/file"])

    def count_listings(self) -> list[dict[str, Any]]:
        """The arguments of every C{ListObjectsV2} request from now on."""
        client = self.raw_driver.client
        calls: list[dict[str, Any]] = []
        original = client.list_objects_v2

        def counting(**arguments: Any) -> Any:
            calls.append(arguments)
            return original(**arguments)

        self.patch(client, "list_objects_v2", counting)
        return calls

    async def test_list_pages_in_short_listings(self) -> None:
        """
        Listings that stop after a few keys give the same pages: a name that
        sorts before the last one read, though its key sorts after it
        (C{1.0/} after C{1.0-alpine/}), is looked for.
        """
        self.patch(s3_listing, "LIST_AT_LEAST", 1)
        calls = self.count_listings()
        await self.assert_list_pages()
        self.assertTrue(any(call.get("MaxKeys", 1000) < 10 for call in calls))
        self.assertTrue(any("Delimiter" not in call for call in calls), "nothing looked for")

    async def test_marked_folder_pages_in_short_listings(self) -> None:
        """
        Listings that stop after a few keys give the same pages; a mark that
        sorts after the keys a listing reached is looked for.
        """
        self.patch(s3_listing, "LIST_AT_LEAST", 1)
        await self.assert_marked_folder_pages()

    async def test_page_costs_requests_of_the_page(self) -> None:
        """
        A page of marked folders costs a few requests more than it holds,
        whatever the number of folders: one listing of the folder from
        C{after} on, one of each folder looked into (and one of the folder
        C{after} names, for what is below it).
        """
        tree = self.tree()
        names = [f"r{index:03d}" for index in range(40)]
        for name in names:
            await self.driver.put_content(f"{tree}/{name}/_layers/link", b"x")
        await self.driver.put_content(f"{tree}/r000/_uploads/u/data", b"x")
        calls = self.count_listings()
        self.assertEqual(await marked_folders(self.driver, tree, MARKS, None, 5), names[:5])
        self.assertEqual(len(calls), 1 + 5)
        del calls[:]
        self.assertEqual(await marked_folders(self.driver, tree, MARKS, "r020", 5), names[21:26])
        self.assertEqual(len(calls), 1 + 1 + 5)
        self.assertEqual(calls[0]["Prefix"], self.raw_driver.key(f"{tree}/r020") + "/")
        self.assertEqual(calls[1]["StartAfter"], self.raw_driver.key(f"{tree}/r020"))
        del calls[:]
        self.assertEqual(await list_page(self.driver, tree, "r020", 5), names[21:26])
        self.assertEqual(len(calls), 1)

    async def test_marks_looked_for_fail(self) -> None:
        """
        A mark the listing did not reach is looked for; when the bucket
        fails to answer, so does the search.
        """
        from botocore.exceptions import ClientError

        self.patch(s3_listing, "LIST_AT_LEAST", 1)
        tree = self.tree()
        for name in ("0a", "0b", "0c"):
            await self.driver.put_content(f"{tree}/n/{name}/_layers/link", b"x")
        await self.driver.put_content(f"{tree}/n/_manifests/link", b"x")
        self.assertEqual(await marked_folders(self.driver, tree, MARKS, None, 1), ["n"])

        def refuse(**arguments: Any) -> Any:
            raise ClientError({"Error": {"Code": "AccessDenied"}}, "HeadObject")

        self.patch(self.raw_driver.client, "head_object", refuse)
        with self.assertRaises(StorageUnavailableError):
            await marked_folders(self.driver, tree, ["_layers", "_other"], None, 1)


class S3MultipartTests(TestCase):
    """Writes and copies that take several parts (5 MiB parts, so tests stay small)."""

    def setUp(self) -> None:
        self.raw = make_s3_driver(
            chunksize=MIN_CHUNK_SIZE,
            multipartcopychunksize=MIN_CHUNK_SIZE,
            multipartcopythresholdsize=MIN_CHUNK_SIZE,
        )
        self.driver = ValidatingDriver(self.raw)
        self.addCleanup(self._delete_all)

    def _delete_all(self) -> Deferred[None]:
        return self.driver.delete("/")

    def open_uploads(self) -> list[str]:
        """Keys of the multipart uploads still open under this test's root."""
        listed = self.raw.client.list_multipart_uploads(
            Bucket=BUCKET, Prefix=self.raw.parameters.root
        )
        return [upload["Key"] for upload in listed.get("Uploads", [])]

    async def test_large_write_in_parts(self) -> None:
        """A writer sends full chunks as parts and the rest on commit; nothing stays open."""
        content = random_bytes(12 * MiB + 7, seed=11)
        writer = await self.driver.writer("/blob", append=False)
        for start in range(0, len(content), 3 * MiB + 1):
            await writer.write(content[start : start + 3 * MiB + 1])
        self.assertEqual(writer.size, len(content))
        await writer.commit()
        self.assertEqual(await self.driver.get_content("/blob"), content)
        self.assertEqual(self.open_uploads(), [])

    async def test_append_across_writers_in_parts(self) -> None:
        """
        Closing and continuing a large file, with small and large sessions,
        keeps every byte in order (copied parts, then read-back small ones).
        """
        pieces = [
            random_bytes(1 * MiB, seed=1),  # small: read back on append
            random_bytes(6 * MiB + 3, seed=2),  # now over 5 MiB: copied on append
            random_bytes(17, seed=3),
            random_bytes(5 * MiB, seed=4),
        ]
        writer = await self.driver.writer("/upload", append=False)
        await writer.write(pieces[0])
        await writer.close()
        for piece in pieces[1:]:
            writer = await self.driver.writer("/upload", append=True)
            self.assertEqual(writer.size, (await self.driver.stat("/upload")).size)
            await writer.write(piece)
            await writer.close()
        self.assertEqual(await self.driver.get_content("/upload"), b"".join(pieces))
        self.assertEqual(self.open_uploads(), [])

    async def test_purge_stale_writes(self) -> None:
        """
        Upload purging aborts the multipart uploads started before the
        cutoff, under the driver's root only, and keeps younger ones.
        """
        client, root = self.raw.client, self.raw.parameters.root
        stale = client.create_multipart_upload(Bucket=BUCKET, Key=root + "stale")["UploadId"]
        elsewhere = client.create_multipart_upload(Bucket=BUCKET, Key="elsewhere/x")["UploadId"]
        self.addCleanup(
            client.abort_multipart_upload, Bucket=BUCKET, Key="elsewhere/x", UploadId=elsewhere
        )
        # moto says every multipart upload was initiated on 2010-11-10.
        self.assertEqual(await self.raw.purge_stale_writes(1_000_000_000.0), 0)
        self.assertEqual(self.open_uploads(), [root + "stale"])
        self.assertEqual(await self.raw.purge_stale_writes(time.time() + 60), 1)
        self.assertEqual(self.open_uploads(), [])
        listed = client.list_multipart_uploads(Bucket=BUCKET, Prefix="elsewhere/")
        self.assertEqual([u["UploadId"] for u in listed["Uploads"]], [elsewhere])
        self.assertNotEqual(stale, elsewhere)

    async def test_append_from_another_process(self) -> None:
        """A second driver (another process's) continues what the first closed."""
        first, second = random_bytes(7 * MiB, seed=5), random_bytes(MiB, seed=6)
        writer = await self.driver.writer("/upload", append=False)
        await writer.write(first)
        await writer.close()
        other = ValidatingDriver(S3Driver(self.raw.parameters))
        writer = await other.writer("/upload", append=True)
        await writer.write(second)
        await writer.commit()
        self.assertEqual(await self.driver.get_content("/upload"), first + second)

    async def test_continue_upload_left_open(self) -> None:
        """A multipart upload left open at the key (as Distribution leaves one) is continued."""
        key = self.raw.key("/upload")
        client = self.raw.client
        upload_id = client.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
        first = random_bytes(MIN_CHUNK_SIZE, seed=7)
        client.upload_part(Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=1, Body=first)
        writer = await self.driver.writer("/upload", append=True)
        self.assertEqual(writer.size, len(first))
        await writer.write(b"more")
        await writer.commit()
        self.assertEqual(await self.driver.get_content("/upload"), first + b"more")
        self.assertEqual(self.open_uploads(), [])

    async def test_append_writing_nothing_copies_nothing(self) -> None:
        """An appending writer closed or committed without a write leaves the object as it was."""
        for size in (MiB, 6 * MiB):
            content = random_bytes(size, seed=size)
            await self.driver.put_content("/upload", content)
            before = self.raw.client.head_object(Bucket=BUCKET, Key=self.raw.key("/upload"))
            for finish in ("close", "commit"):
                writer = await self.driver.writer("/upload", append=True)
                self.assertEqual(writer.size, size)
                await getattr(writer, finish)()
            after = self.raw.client.head_object(Bucket=BUCKET, Key=self.raw.key("/upload"))
            self.assertEqual(after["ETag"], before["ETag"])
            self.assertEqual(after["LastModified"], before["LastModified"])
            self.assertEqual(await self.driver.get_content("/upload"), content)
            self.assertEqual(self.open_uploads(), [])

    async def test_cancel_aborts_upload(self) -> None:
        """Cancelling a writer with parts sent aborts its upload and removes the file."""
        await self.driver.put_content("/upload", random_bytes(6 * MiB, seed=8))
        writer = await self.driver.writer("/upload", append=True)
        await writer.write(random_bytes(6 * MiB, seed=9))
        self.assertTrue(self.open_uploads())
        await writer.cancel()
        self.assertEqual(self.open_uploads(), [])
        with self.assertRaises(PathNotFoundError):
            await self.driver.stat("/upload")

    async def test_move_in_parts(self) -> None:
        """A move above the copy threshold copies in parts, bytes intact."""
        content = random_bytes(11 * MiB + 5, seed=10)
        await self.driver.put_content("/source", content)
        await self.driver.put_content("/dest", b"replaced")
        await self.driver.move("/source", "/dest")
        self.assertEqual(await self.driver.get_content("/dest"), content)
        with self.assertRaises(PathNotFoundError):
            await self.driver.stat("/source")
        self.assertEqual(self.open_uploads(), [])

    async def test_distribution_layout(self) -> None:
        """A driver path is the key below C{rootdirectory}, as for Distribution."""
        await self.driver.put_content("/docker/registry/v2/blobs/data", b"layer")
        head = self.raw.client.head_object(
            Bucket=BUCKET, Key=self.raw.parameters.root + "docker/registry/v2/blobs/data"
        )
        self.assertEqual(head["ContentLength"], 5)

    async def test_presigned_url(self) -> None:
        """C{redirect_url} presigns a GET that fetches the file; other methods get none."""
        await self.driver.put_content("/blob", b"presigned bytes")
        url = await self.driver.redirect_url("GET", "/blob")
        assert url is not None
        self.assertTrue(url.startswith(_servers["shared"].url + "/"))
        with urllib.request.urlopen(url, timeout=10) as answer:
            self.assertEqual(answer.read(), b"presigned bytes")
        self.assertIsNone(await self.driver.redirect_url("DELETE", "/blob"))

    async def test_reader_of_large_file(self) -> None:
        """A reader streams a file written in parts, from an offset inside a part."""
        content = random_bytes(11 * MiB, seed=12)
        writer = await self.driver.writer("/blob", append=False)
        await writer.write(content)
        await writer.commit()
        reader = await self.driver.reader("/blob", 6 * MiB + 1)
        self.assertEqual(await read_all(reader, 1024 * 1024), content[6 * MiB + 1 :])


class StartAfterTests(SynchronousTestCase):
    """The C{StartAfter} of a page: one the bucket takes, at or before the key."""

    def test_plain(self) -> None:
        """A key the bucket takes is kept, whatever its characters."""
        for key in ("root/tags/1.0", "root/a/b", "root/caf\u00e9", "root/~"):
            self.assertEqual(start_after(key), key)

    def test_cut_at_control_or_surrogate(self) -> None:
        """An XML answer holds no control character: the key is cut before it."""
        self.assertEqual(start_after("root/a\x00b"), "root/a")
        self.assertEqual(start_after("root/a\nb"), "root/a")
        self.assertEqual(start_after("root/a\ud800b"), "root/a")

    def test_longest_key(self) -> None:
        """A key is cut to 1024 UTF-8 bytes, never inside a character."""
        self.assertEqual(start_after("r/" + "x" * 2000), "r/" + "x" * 1022)
        cut = start_after("r/" + "\u00e9" * 1000)
        self.assertEqual(cut, "r/" + "\u00e9" * 511)
        self.assertLessEqual(len(cut.encode("utf-8")), 1024)


class ReadNamesTests(SynchronousTestCase):
    """
    The listings of L{s3_listing.children_after} read their names with
    ElementTree (L{s3_listing._list_names}), and no other listing does.
    """

    def setUp(self) -> None:
        self.driver = make_s3_driver()
        self.client = self.driver.client
        self.prefix = self.driver.key("/folder") + "/"
        # Names S3 sends URL-encoded (botocore asks it to): decoded all the same.
        for name in ("a", "b c", "d+e", "f%20g", "sub/h", "x-y/i"):
            self.client.put_object(Bucket=BUCKET, Key=self.prefix + name, Body=b"12345")

    def tearDown(self) -> None:
        for item in self.client.list_objects_v2(Bucket=BUCKET, Prefix=self.prefix)["Contents"]:
            self.client.delete_object(Bucket=BUCKET, Key=item["Key"])

    def test_same_names_as_botocore(self) -> None:
        """The keys and common prefixes botocore's own parse gives, and the same flags."""
        for arguments in (
            {"Delimiter": "/"},
            {"Delimiter": "/", "MaxKeys": 2},
            {"Delimiter": "/", "StartAfter": self.prefix + "b"},
            {},
        ):
            arguments = {"Bucket": BUCKET, "Prefix": self.prefix, **arguments}
            theirs = self.client.list_objects_v2(**arguments)
            ours = s3_listing._list_names(self.client, arguments)
            for field in ("IsTruncated", "KeyCount", "NextContinuationToken"):
                self.assertEqual(ours.get(field), theirs.get(field), field)
            self.assertEqual(
                [item["Key"] for item in ours.get("Contents", [])],
                [item["Key"] for item in theirs.get("Contents", [])],
            )
            self.assertEqual(ours.get("CommonPrefixes"), theirs.get("CommonPrefixes"))
            # Read by _read_names, which keeps nothing of a key but its name.
            self.assertNotIn("Size", ours["Contents"][0])

    def test_other_listings_untouched(self) -> None:
        """A listing outside children_after, after one inside it, has every field."""
        s3_listing._list_names(self.client, {"Bucket": BUCKET, "Prefix": self.prefix})
        listed = self.client.list_objects_v2(Bucket=BUCKET, Prefix=self.prefix)
        self.assertEqual({item["Size"] for item in listed["Contents"]}, {5})
        self.assertTrue(all("LastModified" in item for item in listed["Contents"]))

    def test_error_answers_parsed_by_botocore(self) -> None:
        """An error answer is botocore's to read: the same ClientError."""
        from botocore.exceptions import ClientError

        with self.assertRaises(ClientError) as raised:
            s3_listing._list_names(self.client, {"Bucket": "no-such-bucket-here"})
        self.assertEqual(raised.exception.response["Error"]["Code"], "NoSuchBucket")


class CopyRangeTests(SynchronousTestCase):
    """How sizes are cut into parts."""

    def test_ranges_cover_size(self) -> None:
        """Ranges are inclusive, contiguous, and cover every byte."""
        for size, chunk in [(1, MIN_CHUNK_SIZE), (12 * MiB, 5 * MiB), (10 * MiB, 5 * MiB)]:
            ranges = _copy_ranges(size, chunk)
            self.assertEqual(ranges[0][0], 0)
            self.assertEqual(ranges[-1][1], size - 1)
            for (_, last), (first, _) in pairwise(ranges):
                self.assertEqual(first, last + 1)

    def test_small_remainder_joins_previous(self) -> None:
        """A last piece under the part minimum joins the one before it."""
        self.assertEqual(
            _copy_ranges(12 * MiB, 5 * MiB), [(0, 5 * MiB - 1), (5 * MiB, 12 * MiB - 1)]
        )

    def test_remainder_shared_when_too_large_to_join(self) -> None:
        """Near the part maximum, the last two pieces share the bytes instead."""
        size = MAX_PART_SIZE + MiB
        ranges = _copy_ranges(size, MAX_PART_SIZE)
        self.assertEqual(len(ranges), 2)
        for first, last in ranges:
            self.assertGreaterEqual(last - first + 1, MIN_CHUNK_SIZE)
            self.assertLessEqual(last - first + 1, MAX_PART_SIZE)


class ParameterTests(SynchronousTestCase):
    """Distribution's s3-aws parameters, checked."""

    minimal = {"region": "us-east-1", "bucket": "b"}

    def assert_error(self, parameters: dict[str, Any], key: str) -> None:
        with self.assertRaises(ConfigError) as raised:
            parse_parameters(parameters)
        self.assertIn(key, str(raised.exception))

    def test_defaults(self) -> None:
        """Distribution's defaults."""
        parameters = parse_parameters(self.minimal)
        self.assertEqual(parameters.chunk_size, 10 * MiB)
        self.assertEqual(parameters.copy_chunk_size, 32 * MiB)
        self.assertEqual(parameters.copy_threshold, 32 * MiB)
        self.assertEqual(parameters.root, "")
        self.assertTrue(parameters.secure)
        self.assertEqual(
            parameters.put_arguments(),
            {
                "ContentType": "application/octet-stream",
                "ACL": "private",
                "StorageClass": "STANDARD",
            },
        )

    def test_strings_accepted(self) -> None:
        """Strings from REGISTRY_STORAGE_S3_* overrides are read as their types."""
        parameters = parse_parameters(
            {**self.minimal, "secure": "false", "chunksize": "6291456", "readtimeout": "2s"}
        )
        self.assertFalse(parameters.secure)
        self.assertEqual(parameters.chunk_size, 6291456)
        self.assertEqual(parameters.read_timeout, 2.0)

    def test_root_directory(self) -> None:
        """C{rootdirectory} becomes a key prefix, whatever its slashes."""
        for root in ("/registry", "registry/", "/registry/"):
            self.assertEqual(
                parse_parameters({**self.minimal, "rootdirectory": root}).root, "registry/"
            )

    def test_encryption(self) -> None:
        """C{encrypt} asks for server-side encryption, with KMS when C{keyid} is given."""
        arguments = parse_parameters(
            {**self.minimal, "encrypt": True, "keyid": "k"}
        ).put_arguments()
        self.assertEqual(arguments["ServerSideEncryption"], "aws:kms")
        self.assertEqual(arguments["SSEKMSKeyId"], "k")
        arguments = parse_parameters({**self.minimal, "storageclass": "NONE"}).put_arguments()
        self.assertNotIn("StorageClass", arguments)

    def test_errors_name_the_key(self) -> None:
        """Every bad parameter is refused naming its key."""
        self.assert_error({"bucket": "b"}, "storage.s3.region")
        self.assert_error({"region": "r"}, "storage.s3.bucket")
        self.assert_error({**self.minimal, "unknown": 1}, "storage.s3.unknown")
        self.assert_error({**self.minimal, "secure": "maybe"}, "storage.s3.secure")
        self.assert_error({**self.minimal, "secure": 3}, "storage.s3.secure")
        self.assert_error({**self.minimal, "chunksize": 1024}, "storage.s3.chunksize")
        self.assert_error({**self.minimal, "chunksize": "big"}, "storage.s3.chunksize")
        self.assert_error({**self.minimal, "multipartcopychunksize": 1}, "multipartcopychunksize")
        self.assert_error(
            {**self.minimal, "multipartcopymaxconcurrency": 0}, "multipartcopymaxconcurrency"
        )
        self.assert_error(
            {**self.minimal, "multipartcopythresholdsize": -1}, "multipartcopythresholdsize"
        )
        self.assert_error({**self.minimal, "storageclass": "GOLD"}, "storage.s3.storageclass")
        self.assert_error({**self.minimal, "objectacl": "open"}, "storage.s3.objectacl")
        self.assert_error({**self.minimal, "readtimeout": "soon"}, "storage.s3.readtimeout")
        self.assert_error({**self.minimal, "readtimeout": 0}, "storage.s3.readtimeout")
        self.assert_error({**self.minimal, "maxretries": -1}, "storage.s3.maxretries")
        self.assert_error([], "storage.s3")  # type: ignore[arg-type]

    def test_found_as_plugin(self) -> None:
        """Both of Distribution's names select the driver."""
        factories = driver_factories()
        for name in ("s3", "s3aws"):
            driver = factories[name].create(self.minimal)
            self.assertEqual(driver.name, "s3")


class OutageTests(TestCase):
    """The bucket unreachable, hanging, or refusing: L{StorageUnavailableError}, then recovery."""

    def setUp(self) -> None:
        self.server = S3ServerProcess(Path(temporary_directory(self)), name="s3-outage")
        self.server.start()
        self.addCleanup(self.server.stop)
        self.server.create_bucket(BUCKET)

    def driver(self, **extra: Any) -> ValidatingDriver:
        parameters = self.server.storage_parameters(
            BUCKET, "/outage", readtimeout=1, connecttimeout=1, maxretries=0, **extra
        )
        return ValidatingDriver(S3DriverFactory().create(parameters["s3"]))

    async def test_hanging_server(self) -> None:
        """A server that stops answering fails requests within the timeout; then recovers."""
        driver = self.driver()
        await driver.put_content("/file", b"kept")
        self.server.pause()
        try:
            began = time.monotonic()
            for attempt in (
                lambda: driver.get_content("/file"),
                lambda: driver.stat("/file"),
                lambda: driver.put_content("/other", b"lost"),
                lambda: driver.list("/"),
            ):
                with self.assertRaises(StorageUnavailableError):
                    await attempt()
            self.assertLess(time.monotonic() - began, 4 * 3)
        finally:
            self.server.resume()
        self.assertEqual(await driver.get_content("/file"), b"kept")
        await driver.delete("/")

    async def test_nothing_listening(self) -> None:
        """A refused connection is L{StorageUnavailableError}, not a crash."""
        parameters = self.server.storage_parameters(BUCKET, "", maxretries=0)
        parameters["s3"]["regionendpoint"] = f"http://127.0.0.1:{free_port()}"
        driver = ValidatingDriver(S3DriverFactory().create(parameters["s3"]))
        with self.assertRaises(StorageUnavailableError):
            await driver.stat("/file")

    async def test_missing_bucket(self) -> None:
        """A bucket that does not exist is an outage of the storage, not a missing file."""
        parameters = self.server.storage_parameters("no-such-bucket", "")
        driver = ValidatingDriver(S3DriverFactory().create(parameters["s3"]))
        with self.assertRaises(StorageUnavailableError):
            await driver.get_content("/file")
        with self.assertRaises(StorageUnavailableError):
            await driver.put_content("/file", b"x")
        with self.assertRaises(StorageUnavailableError):
            await driver.list_page("/file", "a", 1)
        with self.assertRaises(StorageUnavailableError):
            await driver.marked_folders("/", ("_layers",), None, 1)

    def test_failed_writer_part_is_reported(self) -> Deferred[None]:
        """A part that fails to upload fails the next write or the commit."""
        driver = self.driver(chunksize=MIN_CHUNK_SIZE)

        async def run() -> None:
            writer = await driver.writer("/big", append=False)
            self.server.pause()
            try:
                with self.assertRaises(StorageUnavailableError):
                    await writer.write(random_bytes(MIN_CHUNK_SIZE, seed=1))
                    await writer.commit()
            finally:
                self.server.resume()
            with self.assertRaises(PathNotFoundError):
                await driver.stat("/big")

        return ensureDeferred(run())
