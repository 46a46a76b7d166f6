# -*- test-case-name: tests.test_drivers -*-
"""
The test suite every storage driver must pass, modelled on Distribution's
C{registry/storage/driver/testsuites/testsuites.go}.

A driver's own test module is a few lines::

    from twisted.trial.unittest import TestCase
    from txregistry.testing.drivers import DriverTestsMixin

    class MyDriverTests(DriverTestsMixin, TestCase):
        def make_driver(self):
            driver = MyDriver(...)
            self.addCleanup(...)  # optional: runs after the suite's checks
            return driver

Every test runs against the driver wrapped in
L{txregistry.drivers.base.ValidatingDriver}, as the registry runs it.  The
driver must be empty when a test starts, and each test deletes what it wrote:
a test that leaves anything behind (as C{list("/")} reports it) fails in its
cleanup.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, ensureDeferred, gatherResults
from zope.interface.verify import verifyObject

from txregistry.drivers.base import (
    ValidatingDriver,
    delete_many,
    get_contents,
    list_files,
    list_page,
    marked_folders,
    write_batch,
)
from txregistry.drivers.errors import (
    InvalidOffsetError,
    InvalidPathError,
    PathNotFoundError,
)
from txregistry.interfaces import (
    Delete,
    FileInfo,
    IBatchDeleter,
    IBatchReader,
    IBatchWriter,
    IFileLister,
    IFileReader,
    IFileWriter,
    IPagedLister,
    IStorageDriver,
    Move,
    PutContent,
    WriteOperation,
)

if TYPE_CHECKING:
    from twisted.trial.unittest import TestCase

    _Base = TestCase
else:
    _Base = object

# The folder every test writes below; each test deletes it when done.
TREE = "/suite"

# Paths the driver path rules reject (see txregistry.interfaces).
INVALID_PATHS = (
    "",
    "a",
    "a/b",
    "//",
    "/a//b",
    "/a/../b",
    "/a/./b",
    "/..",
    "/.",
    "/a/",
    "/a b",
    "/a:b",
    "/a*b",
    "/a\\b",
    "/a\x00b",
    "/a\nb",
    "/\u00e4",
    "/~tmp",
)

# The children of a folder, in plain string order, some of them beginnings
# of others before a character that sorts before "/" (as "1.0" of
# "1.0-alpine"): object storage lists "1.0/" after "1.0-alpine/".
PAGED_NAMES = (
    "1",
    "1.0",
    "1.0-alpine",
    "1.0.1",
    "1.0.1-slim",
    "10",
    "Z",
    "_x",
    "a",
    "a-b",
    "a-c",
    "a.b",
    "a_b",
    "ab",
    "latest",
)
# Those of PAGED_NAMES stored as files; the others are folders.
PAGED_FILES = ("a-c", "10")
# Values of "after" naming nothing stored: between names, before all, after
# all, and some that no name could be.
PAGED_AFTER_UNSTORED = (
    "",
    "0",
    "1.0-",
    "1.0.0",
    "1.0/x",
    "Y",
    "a-a",
    "aa",
    "m",
    "zzz",
    "\x00",
    "~",
    "1" * 2000,
)

# The marks of the marked folders of MARKED_TREE.
MARKS = ("_layers", "_manifests")
# Folders holding a mark, in component order: "a/b" sorts before "a-b".
MARKED_FOLDERS = (
    "0",
    "a",
    "a/b",
    "a/b/c",
    "a-b",
    "a.b",
    "ab",
    "n0",
    "n0/0a",
    "n0/0b",
    "n0/0c",
    "ns/x",
    "ns/y/z",
    "z",
)
# Files stored for MARKED_FOLDERS (the last one's mark is a file), and
# beside them: folders with no mark ("ns", "ns/y"), with uploads only ("up",
# "a/up"), below an underscore, and a file where a folder could be.
MARKED_TREE = (
    *(f"{folder}/{MARKS[index % 2]}/link" for index, folder in enumerate(MARKED_FOLDERS[:-1])),
    f"{MARKED_FOLDERS[-1]}/_manifests",
    "a/_uploads/u/data",
    "up/_uploads/u/data",
    "a/up/_uploads/u/data",
    "_hidden/r/_layers/link",
    "a/_layers/r/_manifests/link",
    "file",
)
# Values of "after" for MARKED_TREE naming no marked folder.
MARKED_AFTER_UNSTORED = (
    "",
    "-",
    "a/a",
    "a/b/b",
    "a/c",
    "a/",
    "a//b",
    "a/../b",
    "a-a",
    "aa",
    "file",
    "file/x",
    "m",
    "ns",
    "ns/y",
    "up",
    "zz",
    "~",
    "a" * 300,
    "a/" + "b" * 2000,
    "ns/" + "y" * 300 + "/z",
)


def component_order(path: str) -> list[str]:
    """The sort key of component order (see L{IPagedLister.marked_folders})."""
    return path.split("/")


# Paths that are unusual but legal.
ODD_PATHS = (
    "/a-b_c.d/e.f",
    "/A/Z9/-/_",
    "/.hidden/..x/...",
    "/0/1/2/3/4/5/6/7/8/9",
    "/" + "x" * 200,
)


def random_bytes(size: int, seed: int = 0) -> bytes:
    """C{size} reproducible pseudo-random bytes."""
    return random.Random(seed).randbytes(size)


async def read_all(reader: IFileReader, chunk: int = 64 * 1024) -> bytes:
    """Read C{reader} to its end, checking the size of every read, and close it."""
    parts = []
    try:
        while True:
            data = await reader.read(chunk)
            if not data:
                break
            if len(data) > chunk:
                raise AssertionError(f"read({chunk}) returned {len(data)} bytes")
            parts.append(data)
    finally:
        await reader.close()
    return b"".join(parts)


class DriverTestsMixin(_Base):
    """
    Tests of the L{IStorageDriver} contract; mix into a
    L{twisted.trial.unittest.TestCase} that provides L{make_driver}.

    @ivar raw_driver: what L{make_driver} returned.
    @ivar driver: C{raw_driver} inside a L{ValidatingDriver}.
    """

    raw_driver: IStorageDriver
    driver: ValidatingDriver

    def make_driver(self) -> IStorageDriver:
        """
        An empty driver for one test.  Cleanups registered here with
        C{addCleanup} run after the suite has checked that the test left
        nothing behind.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement make_driver()")

    # Trial waits for a Deferred that setUp returns; unittest's stub says None.
    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        """Make the driver, check it is empty, and arrange the leftover check."""
        self.raw_driver = self.make_driver()
        self.driver = ValidatingDriver(self.raw_driver)

        async def start_empty() -> None:
            found = await self.driver.list("/")
            if found:
                raise AssertionError(f"make_driver() returned a driver holding {found}")
            self.addCleanup(self.assert_driver_empty)

        return ensureDeferred(start_empty())

    def assert_driver_empty(self) -> Deferred[None]:
        """
        Fail, after deleting them, if files are left in the driver: each test
        must delete what it wrote.  The suite calls this after every test.
        """

        async def check() -> None:
            left = await self.driver.list("/")
            if left:
                for path in left:
                    await self.driver.delete(path)
                self.fail(f"the test left files behind: {left}")

        return ensureDeferred(check())

    # -- helpers -------------------------------------------------------------

    def tree(self) -> str:
        """L{TREE}, deleted (if anything is there) after the test."""
        self.addCleanup(self._delete_if_present, TREE)
        return TREE

    def _delete_if_present(self, path: str) -> Deferred[None]:
        async def delete() -> None:
            try:
                await self.driver.delete(path)
            except PathNotFoundError:
                pass

        return ensureDeferred(delete())

    async def assert_fails(
        self, exception: type[BaseException], work: Callable[[], Awaitable[Any]]
    ) -> BaseException:
        """Run C{work} and check that it fails with C{exception}; return the error."""
        try:
            await work()
        except exception as error:
            return error
        except BaseException as error:
            self.fail(f"expected {exception.__name__}, got {error!r}")
        self.fail(f"expected {exception.__name__}, nothing was raised")

    async def read_from(self, path: str, offset: int, chunk: int = 64 * 1024) -> bytes:
        """Everything from C{offset} to the end of C{path}, through a reader."""
        return await read_all(await self.driver.reader(path, offset), chunk)

    async def write_file(self, path: str, *chunks: bytes, append: bool = False) -> IFileWriter:
        """Write C{chunks} through a writer, one at a time, and return the open writer."""
        writer = await self.driver.writer(path, append=append)
        for chunk in chunks:
            await writer.write(chunk)
        return writer

    # -- the interfaces ------------------------------------------------------

    def test_provides_interface(self) -> None:
        """The driver, and the validating wrapper around it, provide L{IStorageDriver}."""
        self.assertTrue(verifyObject(IStorageDriver, self.raw_driver))
        self.assertTrue(verifyObject(IStorageDriver, self.driver))
        self.assertIsInstance(self.driver.name, str)
        self.assertTrue(self.driver.name)

    async def test_reader_and_writer_provide_interfaces(self) -> None:
        """Readers and writers provide L{IFileReader} and L{IFileWriter}."""
        path = self.tree() + "/file"
        writer = await self.driver.writer(path, append=False)
        self.assertTrue(verifyObject(IFileWriter, writer))
        await writer.commit()
        reader = await self.driver.reader(path)
        self.assertTrue(verifyObject(IFileReader, reader))
        await reader.close()

    # -- get_content and put_content -----------------------------------------

    async def test_put_get_small(self) -> None:
        """Small contents, the empty one included, come back as they were stored."""
        tree = self.tree()
        for index, content in enumerate([b"", b"x", b"hello\x00world\n", bytes(range(256))]):
            path = f"{tree}/small-{index}"
            await self.driver.put_content(path, content)
            self.assertEqual(await self.driver.get_content(path), content)

    async def test_put_get_large(self) -> None:
        """About 5 MiB come back whole."""
        path = self.tree() + "/large"
        content = random_bytes(5 * 1024 * 1024 + 17)
        await self.driver.put_content(path, content)
        self.assertEqual(await self.driver.get_content(path), content)
        self.assertEqual((await self.driver.stat(path)).size, len(content))

    async def test_put_content_replaces(self) -> None:
        """A second put replaces the first entirely, a shorter one too."""
        path = self.tree() + "/replaced"
        await self.driver.put_content(path, b"a long first content")
        await self.driver.put_content(path, b"short")
        self.assertEqual(await self.driver.get_content(path), b"short")
        self.assertEqual((await self.driver.stat(path)).size, 5)

    async def test_put_content_creates_parents(self) -> None:
        """Storing a file makes its parent directories."""
        tree = self.tree()
        await self.driver.put_content(f"{tree}/a/b/c/file", b"deep")
        for directory in (f"{tree}/a", f"{tree}/a/b", f"{tree}/a/b/c"):
            self.assertTrue((await self.driver.stat(directory)).is_dir, directory)
        self.assertEqual(await self.driver.get_content(f"{tree}/a/b/c/file"), b"deep")

    async def test_get_missing(self) -> None:
        """Getting a missing file, or a directory, fails with L{PathNotFoundError}."""
        tree = self.tree()
        error = await self.assert_fails(
            PathNotFoundError, lambda: self.driver.get_content(f"{tree}/missing")
        )
        self.assertEqual(getattr(error, "path", None), f"{tree}/missing")
        await self.driver.put_content(f"{tree}/dir/file", b"x")
        await self.assert_fails(PathNotFoundError, lambda: self.driver.get_content(f"{tree}/dir"))

    # -- reader --------------------------------------------------------------

    async def test_reader_offsets(self) -> None:
        """A reader starts at its offset; at or past the end it reads nothing."""
        path = self.tree() + "/read"
        content = random_bytes(300 * 1024 + 3, seed=1)
        await self.driver.put_content(path, content)
        middle = len(content) // 2 + 1
        self.assertEqual(await self.read_from(path, 0), content)
        self.assertEqual(await self.read_from(path, middle), content[middle:])
        self.assertEqual(await self.read_from(path, len(content) - 1), content[-1:])
        self.assertEqual(await self.read_from(path, len(content)), b"")
        self.assertEqual(await self.read_from(path, len(content) + 1000), b"")

    async def test_reader_small_reads(self) -> None:
        """A reader never returns more than asked for, and reads continue where they stopped."""
        path = self.tree() + "/read"
        content = random_bytes(10_000, seed=2)
        await self.driver.put_content(path, content)
        self.assertEqual(await self.read_from(path, 0, chunk=7), content)
        self.assertEqual(await self.read_from(path, 9_999, chunk=1), content[-1:])

    async def test_reader_of_empty_file(self) -> None:
        """A reader of an empty file is at its end at once."""
        path = self.tree() + "/empty"
        await self.driver.put_content(path, b"")
        self.assertEqual(await self.read_from(path, 0), b"")

    async def test_reader_close_twice(self) -> None:
        """Closing a reader twice is harmless."""
        path = self.tree() + "/read"
        await self.driver.put_content(path, b"content")
        reader = await self.driver.reader(path)
        self.assertEqual(await reader.read(3), b"con")
        await reader.close()
        await reader.close()

    async def test_reader_negative_offset(self) -> None:
        """A negative offset fails with L{InvalidOffsetError}."""
        path = self.tree() + "/read"
        await self.driver.put_content(path, b"content")
        error = await self.assert_fails(InvalidOffsetError, lambda: self.driver.reader(path, -1))
        self.assertEqual(getattr(error, "offset", None), -1)

    async def test_reader_missing(self) -> None:
        """A reader of a missing file, or a directory, fails with L{PathNotFoundError}."""
        tree = self.tree()
        await self.assert_fails(PathNotFoundError, lambda: self.driver.reader(f"{tree}/missing"))
        await self.driver.put_content(f"{tree}/dir/file", b"x")
        await self.assert_fails(PathNotFoundError, lambda: self.driver.reader(f"{tree}/dir"))

    # -- writer --------------------------------------------------------------

    async def test_writer_commit(self) -> None:
        """Committed writes are the file, in order; C{size} counts them."""
        path = self.tree() + "/written"
        chunks = [random_bytes(size, seed=size) for size in (1, 1000, 256 * 1024, 3)]
        writer = await self.driver.writer(path, append=False)
        self.assertEqual(writer.size, 0)
        written = 0
        for chunk in chunks:
            await writer.write(chunk)
            written += len(chunk)
            self.assertEqual(writer.size, written)
        await writer.commit()
        self.assertEqual(await self.driver.get_content(path), b"".join(chunks))
        self.assertEqual((await self.driver.stat(path)).size, written)

    async def test_writer_size_counts_unfinished_write(self) -> None:
        """C{size} counts a write at once, before its Deferred fires."""
        path = self.tree() + "/written"
        writer = await self.driver.writer(path, append=False)
        pending = writer.write(b"12345")
        self.assertEqual(writer.size, 5)
        await pending
        await writer.commit()

    async def test_writer_empty_commit(self) -> None:
        """Committing a writer that wrote nothing stores an empty file."""
        path = self.tree() + "/empty"
        writer = await self.driver.writer(path, append=False)
        await writer.commit()
        self.assertEqual(await self.driver.get_content(path), b"")
        self.assertEqual((await self.driver.stat(path)).size, 0)

    async def test_writer_creates_parents(self) -> None:
        """A writer makes the file's parent directories."""
        tree = self.tree()
        writer = await self.write_file(f"{tree}/x/y/z", b"deep")
        await writer.commit()
        self.assertTrue((await self.driver.stat(f"{tree}/x/y")).is_dir)
        self.assertEqual(await self.driver.get_content(f"{tree}/x/y/z"), b"deep")

    async def test_writer_replaces(self) -> None:
        """A writer that does not append replaces the file it commits over."""
        path = self.tree() + "/replaced"
        await self.driver.put_content(path, b"the old, longer content")
        writer = await self.write_file(path, b"new")
        await writer.commit()
        self.assertEqual(await self.driver.get_content(path), b"new")

    async def test_writer_append_across_sessions(self) -> None:
        """
        A closed writer keeps its bytes; a writer opened with C{append}
        starts at the file's size and continues it.
        """
        path = self.tree() + "/appended"
        first, second, third = random_bytes(70_000, 3), random_bytes(5, 4), random_bytes(9, 5)
        writer = await self.write_file(path, first)
        await writer.close()
        self.assertEqual((await self.driver.stat(path)).size, len(first))

        writer = await self.driver.writer(path, append=True)
        self.assertEqual(writer.size, len(first))
        await writer.write(second)
        self.assertEqual(writer.size, len(first) + len(second))
        await writer.close()

        writer = await self.write_file(path, third, append=True)
        self.assertEqual(writer.size, len(first) + len(second) + len(third))
        await writer.commit()
        self.assertEqual(await self.driver.get_content(path), first + second + third)
        self.assertEqual((await self.driver.stat(path)).size, writer.size)

    async def test_writer_append_to_put_content(self) -> None:
        """A file stored with C{put_content} can be appended to."""
        path = self.tree() + "/appended"
        await self.driver.put_content(path, b"start-")
        writer = await self.write_file(path, b"end", append=True)
        await writer.commit()
        self.assertEqual(await self.driver.get_content(path), b"start-end")

    async def test_writer_append_missing(self) -> None:
        """Appending to a missing file fails with L{PathNotFoundError}, creating nothing."""
        tree = self.tree()
        await self.assert_fails(
            PathNotFoundError, lambda: self.driver.writer(f"{tree}/missing", append=True)
        )
        self.assertEqual(await self.driver.list("/"), [])

    async def test_writer_cancel(self) -> None:
        """Cancelling a writer removes the file."""
        path = self.tree() + "/cancelled"
        writer = await self.write_file(path, b"doomed")
        await writer.cancel()
        await self.assert_fails(PathNotFoundError, lambda: self.driver.get_content(path))
        await self.assert_fails(PathNotFoundError, lambda: self.driver.stat(path))

    async def test_writer_cancel_after_append(self) -> None:
        """Cancelling an appending writer removes the whole file, not just its own bytes."""
        path = self.tree() + "/cancelled"
        writer = await self.write_file(path, b"kept for now")
        await writer.close()
        writer = await self.write_file(path, b" and more", append=True)
        await writer.cancel()
        await self.assert_fails(PathNotFoundError, lambda: self.driver.get_content(path))

    async def test_concurrent_writers(self) -> None:
        """Writers of different files interleave without mixing their bytes."""
        tree = self.tree()
        paths = [f"{tree}/one", f"{tree}/two/deeper", f"{tree}/three"]
        writers = [await self.driver.writer(path, append=False) for path in paths]
        contents: list[list[bytes]] = [[], [], []]
        for round_ in range(8):
            writes = []
            for index, writer in enumerate(writers):
                chunk = random_bytes(10_000 + round_ * 1000 + index, seed=round_ * 10 + index)
                contents[index].append(chunk)
                writes.append(writer.write(chunk))
            await gatherResults(writes)
        await gatherResults([writer.commit() for writer in writers])
        stored = await gatherResults([self.driver.get_content(path) for path in paths])
        self.assertEqual(stored, [b"".join(parts) for parts in contents])

    async def test_concurrent_readers(self) -> None:
        """Readers of one file at different offsets, read in turn, each see their own bytes."""
        path = self.tree() + "/shared"
        content = random_bytes(200_000, seed=21)
        await self.driver.put_content(path, content)
        offsets = [0, 1, 65_536, 199_999]
        readers = [await self.driver.reader(path, offset) for offset in offsets]
        received: list[list[bytes]] = [[] for _ in offsets]
        try:
            while True:
                chunks = await gatherResults([reader.read(10_000) for reader in readers])
                for index, chunk in enumerate(chunks):
                    received[index].append(chunk)
                if not any(chunks):
                    break
        finally:
            await gatherResults([reader.close() for reader in readers])
        for offset, parts in zip(offsets, received, strict=True):
            self.assertEqual(b"".join(parts), content[offset:])

    async def test_reading_while_writing_another_file(self) -> None:
        """A read and a write of another file, in flight together, do not mix."""
        tree = self.tree()
        content = random_bytes(100_000, seed=22)
        await self.driver.put_content(f"{tree}/read", content)
        reader = await self.driver.reader(f"{tree}/read")
        writer = await self.driver.writer(f"{tree}/written", append=False)
        read: list[bytes] = []
        while True:
            reading = reader.read(7_000)
            await writer.write(b"w" * 7_000)
            chunk = await reading
            if not chunk:
                break
            read.append(chunk)
        await reader.close()
        await writer.commit()
        self.assertEqual(b"".join(read), content)
        self.assertEqual(await self.driver.get_content(f"{tree}/written"), b"w" * writer.size)

    # -- stat ----------------------------------------------------------------

    async def test_stat_file(self) -> None:
        """A file's size, kind and modification time."""
        path = self.tree() + "/file"
        before = time.time()
        await self.driver.put_content(path, b"12345678")
        after = time.time()
        info = await self.driver.stat(path)
        self.assertIsInstance(info, FileInfo)
        self.assertEqual((info.path, info.size, info.is_dir), (path, 8, False))
        self.assertIsInstance(info.modified, float)
        # File systems round their times; allow some slack either way.
        self.assertTrue(before - 5 <= info.modified <= after + 5, (before, info.modified))

    async def test_stat_directory(self) -> None:
        """A directory is a directory, of size 0."""
        tree = self.tree()
        await self.driver.put_content(f"{tree}/dir/file", b"12345678")
        info = await self.driver.stat(f"{tree}/dir")
        self.assertEqual((info.path, info.size, info.is_dir), (f"{tree}/dir", 0, True))
        self.assertIsInstance(info.modified, float)

    async def test_stat_missing(self) -> None:
        """Stat of a missing path fails with L{PathNotFoundError}."""
        tree = self.tree()
        await self.assert_fails(PathNotFoundError, lambda: self.driver.stat(f"{tree}/missing"))
        await self.driver.put_content(f"{tree}/file", b"x")
        await self.assert_fails(PathNotFoundError, lambda: self.driver.stat(f"{tree}/file/below"))

    # -- list ----------------------------------------------------------------

    async def test_list(self) -> None:
        """A directory lists the full paths of its direct children, sorted."""
        tree = self.tree()
        for name in ("b/inner/file", "a", "c-d", "b/other", "C", "_x", "a.b"):
            await self.driver.put_content(f"{tree}/{name}", name.encode())
        self.assertEqual(
            await self.driver.list(tree),
            [f"{tree}/{name}" for name in sorted(["a", "a.b", "b", "c-d", "C", "_x"])],
        )
        self.assertEqual(
            await self.driver.list(f"{tree}/b"), [f"{tree}/b/inner", f"{tree}/b/other"]
        )
        self.assertEqual(await self.driver.list(f"{tree}/b/inner"), [f"{tree}/b/inner/file"])

    async def test_list_root(self) -> None:
        """The root lists as empty in an empty driver, and lists its children otherwise."""
        self.assertEqual(await self.driver.list("/"), [])
        tree = self.tree()
        await self.driver.put_content(f"{tree}/file", b"x")
        self.assertEqual(await self.driver.list("/"), [tree])

    async def test_list_missing(self) -> None:
        """Listing a missing path, or a file, fails with L{PathNotFoundError}."""
        tree = self.tree()
        await self.assert_fails(PathNotFoundError, lambda: self.driver.list(f"{tree}/missing"))
        await self.driver.put_content(f"{tree}/file", b"x")
        await self.assert_fails(PathNotFoundError, lambda: self.driver.list(f"{tree}/file"))

    # -- move ----------------------------------------------------------------

    async def test_move(self) -> None:
        """A moved file is at its destination, whose parents are made, and gone from its source."""
        tree = self.tree()
        content = random_bytes(100_000, seed=6)
        await self.driver.put_content(f"{tree}/source", content)
        await self.driver.move(f"{tree}/source", f"{tree}/new/parents/dest")
        self.assertEqual(await self.driver.get_content(f"{tree}/new/parents/dest"), content)
        await self.assert_fails(
            PathNotFoundError, lambda: self.driver.get_content(f"{tree}/source")
        )

    async def test_move_replaces(self) -> None:
        """Moving over an existing file replaces it."""
        tree = self.tree()
        await self.driver.put_content(f"{tree}/source", b"new")
        await self.driver.put_content(f"{tree}/dest", b"the old, longer content")
        await self.driver.move(f"{tree}/source", f"{tree}/dest")
        self.assertEqual(await self.driver.get_content(f"{tree}/dest"), b"new")
        self.assertEqual(await self.driver.list(tree), [f"{tree}/dest"])

    async def test_move_missing(self) -> None:
        """Moving a missing file fails with L{PathNotFoundError}, leaving the destination alone."""
        tree = self.tree()
        await self.driver.put_content(f"{tree}/dest", b"untouched")
        await self.assert_fails(
            PathNotFoundError, lambda: self.driver.move(f"{tree}/missing", f"{tree}/dest")
        )
        self.assertEqual(await self.driver.get_content(f"{tree}/dest"), b"untouched")

    # -- delete --------------------------------------------------------------

    async def test_delete_file(self) -> None:
        """Deleting a file removes it and nothing else, not even names it prefixes."""
        tree = self.tree()
        for name in ("file", "file2", "file.x", "file-x/inner"):
            await self.driver.put_content(f"{tree}/{name}", b"x")
        await self.driver.delete(f"{tree}/file")
        await self.assert_fails(PathNotFoundError, lambda: self.driver.get_content(f"{tree}/file"))
        self.assertEqual(
            await self.driver.list(tree),
            [f"{tree}/file-x", f"{tree}/file.x", f"{tree}/file2"],
        )

    async def test_delete_tree(self) -> None:
        """Deleting a directory removes everything below it, and nothing beside it."""
        tree = self.tree()
        for name in ("dir/a", "dir/b/c", "dir/b/d/e", "dir2/f", "dir-x"):
            await self.driver.put_content(f"{tree}/{name}", b"x")
        await self.driver.delete(f"{tree}/dir")
        for gone in ("dir", "dir/a", "dir/b", "dir/b/d/e"):
            await self.assert_fails(PathNotFoundError, partial(self.driver.stat, f"{tree}/{gone}"))
        self.assertEqual(await self.driver.list(tree), [f"{tree}/dir-x", f"{tree}/dir2"])
        self.assertEqual(await self.driver.get_content(f"{tree}/dir2/f"), b"x")

    async def test_delete_root(self) -> None:
        """Deleting the root deletes everything."""
        tree = self.tree()
        await self.driver.put_content(f"{tree}/a/b", b"x")
        await self.driver.put_content("/other", b"y")
        await self.driver.delete("/")
        self.assertEqual(await self.driver.list("/"), [])

    async def test_delete_missing(self) -> None:
        """Deleting a missing path fails with L{PathNotFoundError}."""
        tree = self.tree()
        await self.assert_fails(PathNotFoundError, lambda: self.driver.delete(f"{tree}/missing"))
        await self.driver.put_content(f"{tree}/file", b"x")
        await self.assert_fails(PathNotFoundError, lambda: self.driver.delete(f"{tree}/file/below"))

    # -- delete_many ---------------------------------------------------------

    async def test_delete_many(self) -> None:
        """
        Files and directories go at once; a path where nothing is stored is
        not an error, and is not among those said deleted.
        """
        tree = await self._walk_tree()
        paths = [f"{tree}/a", f"{tree}/missing", f"{tree}/b", f"{tree}/a-b/x"]
        deleted = await delete_many(self.driver, paths)
        self.assertEqual(deleted, [f"{tree}/a", f"{tree}/b", f"{tree}/a-b/x"])
        for path in paths:
            await self.assert_fails(PathNotFoundError, partial(self.driver.stat, path))
        self.assertEqual(await delete_many(self.driver, paths), [])
        self.assertEqual(await delete_many(self.driver, []), [])
        if IBatchDeleter.providedBy(self.driver):
            self.assertTrue(verifyObject(IBatchDeleter, self.driver))

    # -- get_contents --------------------------------------------------------

    async def test_get_contents(self) -> None:
        """
        Each file's content by path; a missing path, or a directory, is
        left out.
        """
        tree = await self._walk_tree()
        paths = [f"{tree}/a/1", f"{tree}/missing", f"{tree}/a", f"{tree}/b/below", f"{tree}/b"]
        read = await get_contents(self.driver, paths)
        self.assertEqual(read, {f"{tree}/a/1": b"a/1", f"{tree}/b": b"b"})
        self.assertEqual(await get_contents(self.driver, []), {})
        if IBatchReader.providedBy(self.driver):
            self.assertTrue(verifyObject(IBatchReader, self.driver))

    # -- write_batch ---------------------------------------------------------

    async def test_write_batch(self) -> None:
        """
        Every write of a batch is done, in order: a file put, then moved, a
        folder deleted, a missing path deleted with C{missing_ok}.
        """
        tree = self.tree()
        await self.driver.put_content(f"{tree}/old/file", b"old")
        await write_batch(
            self.driver,
            [
                PutContent(f"{tree}/new/file", b"new"),
                Move(f"{tree}/new/file", f"{tree}/moved/file"),
                PutContent(f"{tree}/moved/other", b"other"),
                Delete(f"{tree}/old"),
                Delete(f"{tree}/missing", missing_ok=True),
            ],
        )
        self.assertEqual(await self.driver.get_content(f"{tree}/moved/file"), b"new")
        self.assertEqual(await self.driver.get_content(f"{tree}/moved/other"), b"other")
        for gone in (f"{tree}/new/file", f"{tree}/old/file", f"{tree}/old"):
            await self.assert_fails(PathNotFoundError, partial(self.driver.stat, gone))
        await write_batch(self.driver, [])
        if IBatchWriter.providedBy(self.driver):
            self.assertTrue(verifyObject(IBatchWriter, self.driver))

    async def test_write_batch_stops_at_a_failure(self) -> None:
        """
        The first write that fails fails the batch with its error: the
        writes before it stay done, those after it are not tried.
        """
        tree = self.tree()
        await self.assert_fails(
            PathNotFoundError,
            lambda: write_batch(
                self.driver,
                [
                    PutContent(f"{tree}/before", b"before"),
                    Move(f"{tree}/missing", f"{tree}/moved"),
                    PutContent(f"{tree}/after", b"after"),
                ],
            ),
        )
        self.assertEqual(await self.driver.get_content(f"{tree}/before"), b"before")
        await self.assert_fails(PathNotFoundError, partial(self.driver.stat, f"{tree}/after"))
        await self.assert_fails(
            PathNotFoundError,
            lambda: write_batch(self.driver, [Delete(f"{tree}/missing"), Delete(f"{tree}/before")]),
        )
        self.assertEqual(await self.driver.get_content(f"{tree}/before"), b"before")

    async def test_write_batch_checks_every_path_first(self) -> None:
        """A batch that names an invalid path (or the root) writes nothing."""
        tree = self.tree()
        invalid: list[WriteOperation] = [
            PutContent(f"{tree}/../escape", b"x"),
            Move(f"{tree}/before", "relative"),
            Delete("/"),
        ]
        for operation in invalid:
            batch = [PutContent(f"{tree}/before", b"x"), operation]
            await self.assert_fails(InvalidPathError, partial(write_batch, self.driver, batch))
            await self.assert_fails(PathNotFoundError, partial(self.driver.stat, f"{tree}/before"))

    # -- walk ----------------------------------------------------------------

    async def _walk_tree(self) -> str:
        tree = self.tree()
        # "a-b" sorts between "a" and "b" as a name, but "/a-b/x" sorts
        # before "/a/1" as a path: siblings are ordered by name.
        for name in ("b", "a/2", "a-b/x", "a/1", "a/sub/deep"):
            await self.driver.put_content(f"{tree}/{name}", name.encode())
        return tree

    async def test_walk_order(self) -> None:
        """Walk visits parents before children and siblings in sorted order."""
        tree = await self._walk_tree()
        seen: list[FileInfo] = []
        await self.driver.walk(tree, seen.append)
        self.assertEqual(
            [(info.path[len(tree) :], info.is_dir) for info in seen],
            [
                ("/a", True),
                ("/a/1", False),
                ("/a/2", False),
                ("/a/sub", True),
                ("/a/sub/deep", False),
                ("/a-b", True),
                ("/a-b/x", False),
                ("/b", False),
            ],
        )
        sizes = {info.path[len(tree) :]: info.size for info in seen if not info.is_dir}
        self.assertEqual(sizes, {"/a/1": 3, "/a/2": 3, "/a/sub/deep": 10, "/a-b/x": 5, "/b": 1})

    async def test_walk_from_root(self) -> None:
        """Walking the root visits everything, starting with the top-level folder."""
        tree = await self._walk_tree()
        seen: list[str] = []
        await self.driver.walk("/", lambda info: seen.append(info.path))
        self.assertEqual(seen[:2], [tree, f"{tree}/a"])
        self.assertEqual(len(seen), 9)

    async def test_walk_prune(self) -> None:
        """Nothing below a directory is visited when its visit returns C{False}."""
        tree = await self._walk_tree()
        seen: list[str] = []

        def visit(info: FileInfo) -> bool:
            seen.append(info.path[len(tree) :])
            return info.path != f"{tree}/a"

        await self.driver.walk(tree, visit)
        self.assertEqual(seen, ["/a", "/a-b", "/a-b/x", "/b"])

    async def test_walk_false_for_file(self) -> None:
        """C{False} for a file does not stop the walk."""
        tree = await self._walk_tree()
        seen: list[str] = []

        def visit(info: FileInfo) -> bool:
            seen.append(info.path[len(tree) :])
            return info.is_dir

        await self.driver.walk(tree, visit)
        self.assertEqual(len(seen), 8)

    async def test_walk_missing(self) -> None:
        """Walking a missing path fails with L{PathNotFoundError}."""
        tree = self.tree()
        await self.assert_fails(
            PathNotFoundError, lambda: self.driver.walk(f"{tree}/missing", lambda info: None)
        )

    # -- list_files ----------------------------------------------------------

    async def test_list_files(self) -> None:
        """
        Every file below a folder, at any depth, with its size and time;
        no directories; nothing below a skipped folder's name.
        """
        tree = await self._walk_tree()
        listed = await list_files(self.driver, tree)
        by_path = {info.path[len(tree) :]: info for info in listed}
        self.assertEqual(
            {path: info.size for path, info in by_path.items()},
            {"/a/1": 3, "/a/2": 3, "/a/sub/deep": 10, "/a-b/x": 5, "/b": 1},
        )
        self.assertFalse(any(info.is_dir for info in listed))
        walked: dict[str, FileInfo] = {}

        def visit(info: FileInfo) -> None:
            walked[info.path] = info

        await self.driver.walk(tree, visit)
        for info in listed:
            self.assertEqual(info.modified, walked[info.path].modified)
        skipped = await list_files(self.driver, tree, skip={"sub", "a-b"})
        self.assertEqual(sorted(info.path[len(tree) :] for info in skipped), ["/a/1", "/a/2", "/b"])
        below = await list_files(self.driver, f"{tree}/a/sub")
        self.assertEqual([info.path for info in below], [f"{tree}/a/sub/deep"])
        if IFileLister.providedBy(self.driver):
            self.assertTrue(verifyObject(IFileLister, self.driver))

    async def test_list_files_missing(self) -> None:
        """Listing a missing folder fails with L{PathNotFoundError}."""
        tree = self.tree()
        await self.assert_fails(PathNotFoundError, lambda: list_files(self.driver, f"{tree}/no"))

    # -- list_page and marked_folders ---------------------------------------

    async def assert_list_pages(self) -> None:
        """
        Check L{list_page} on a folder of L{PAGED_NAMES}: every page, from
        every C{after}, with every limit, is the one cut from the whole.
        """
        tree = self.tree()
        folder = f"{tree}/tags"
        for name in PAGED_NAMES:
            path = f"{folder}/{name}" if name in PAGED_FILES else f"{folder}/{name}/current/link"
            await self.driver.put_content(path, name.encode())
        expected = sorted(PAGED_NAMES)
        self.assertEqual(await list_page(self.driver, folder, None, None), expected)
        await self.assert_walks(partial(list_page, self.driver, folder), expected)
        for after in (*PAGED_NAMES, *PAGED_AFTER_UNSTORED):
            following = [name for name in expected if name > after]
            for most in (None, 0, 1, 2, 3):
                self.assertEqual(
                    await list_page(self.driver, folder, after, most),
                    following[:most],
                    (after, most),
                )

    async def assert_walks(
        self,
        read: Callable[[str | None, int], Awaitable[list[str]]],
        expected: list[str],
    ) -> None:
        """
        Walking the pages C{read(after, limit)} gives, with every limit,
        C{expected} cut into pages, the last one short.
        """
        for limit in range(1, len(expected) + 2):
            pages: list[list[str]] = []
            after = None
            while True:
                page = await read(after, limit)
                self.assertEqual(page, expected[len(pages) * limit :][:limit], (after, limit))
                pages.append(page)
                if len(page) < limit:
                    break
                after = page[-1]
            self.assertEqual([name for page in pages for name in page], expected)

    async def test_list_page(self) -> None:
        """
        A page of a folder's children, files and folders, in plain string
        order: from the start, after a name stored or not, up to a limit.
        """
        await self.assert_list_pages()
        if IPagedLister.providedBy(self.raw_driver):
            self.assertTrue(verifyObject(IPagedLister, self.raw_driver))
        self.assertTrue(verifyObject(IPagedLister, self.driver))

    async def test_list_page_missing(self) -> None:
        """
        A page of a missing folder, or of a file, fails with
        L{PathNotFoundError}, whatever the page; the root of an empty
        driver lists as empty.
        """
        tree = self.tree()
        self.assertEqual(await list_page(self.driver, "/", "a", 2), [])
        await self.driver.put_content(f"{tree}/file", b"x")
        self.assertEqual(await list_page(self.driver, tree, None, 1), ["file"])
        self.assertEqual(await list_page(self.driver, tree, "file", 1), [])
        for path in (f"{tree}/missing", f"{tree}/file"):
            for after, limit in ((None, None), (None, 0), ("a", 2), ("zzz", 2)):
                await self.assert_fails(
                    PathNotFoundError, partial(list_page, self.driver, path, after, limit)
                )

    async def assert_marked_folder_pages(self) -> None:
        """
        Check L{marked_folders} on L{MARKED_TREE}: every page, from every
        C{after}, with every limit, is the one cut from the whole.
        """
        tree = self.tree()
        for path in MARKED_TREE:
            await self.driver.put_content(f"{tree}/{path}", b"x")
        expected = list(MARKED_FOLDERS)
        self.assertEqual(await marked_folders(self.driver, tree, MARKS, None, None), expected)
        await self.assert_walks(partial(marked_folders, self.driver, tree, MARKS), expected)
        for after in (*MARKED_FOLDERS, *MARKED_AFTER_UNSTORED):
            following = [
                name for name in expected if component_order(name) > component_order(after)
            ]
            for most in (None, 0, 1, 2):
                self.assertEqual(
                    await marked_folders(self.driver, tree, MARKS, after, most),
                    following[:most],
                    (after, most),
                )
        # Each mark is enough.
        self.assertEqual(
            await marked_folders(self.driver, tree, ["_layers"], "n0", None),
            ["n0/0a", "n0/0c", "ns/y/z"],
        )

    async def test_marked_folders(self) -> None:
        """
        The folders holding a mark, in component order, at any depth (below
        a marked folder or not), from the start or after a path stored or
        not, up to a limit; nothing below an underscore, and no folder
        holding uploads only.
        """
        await self.assert_marked_folder_pages()

    async def test_marked_folders_missing(self) -> None:
        """Below a missing folder, or a file, no folder is marked."""
        tree = self.tree()
        await self.driver.put_content(f"{tree}/file", b"x")
        for path in (f"{tree}/missing", f"{tree}/file"):
            for after, limit in ((None, None), ("a", 2)):
                self.assertEqual(await marked_folders(self.driver, path, MARKS, after, limit), [])
        self.assertEqual(await marked_folders(self.driver, "/", MARKS, None, None), [])

    # -- paths ---------------------------------------------------------------

    def _operations(self, path: str) -> dict[str, Callable[[], Deferred[Any]]]:
        driver = self.driver
        legal = TREE + "/legal"
        return {
            "get_content": lambda: driver.get_content(path),
            "put_content": lambda: driver.put_content(path, b"x"),
            "reader": lambda: driver.reader(path),
            "writer": lambda: driver.writer(path, append=False),
            "writer(append)": lambda: driver.writer(path, append=True),
            "stat": lambda: driver.stat(path),
            "list": lambda: driver.list(path),
            "move from": lambda: driver.move(path, legal),
            "move to": lambda: driver.move(legal, path),
            "delete": lambda: driver.delete(path),
            "redirect_url": lambda: driver.redirect_url("GET", path),
            "walk": lambda: driver.walk(path, lambda info: None),
            "delete_many": lambda: driver.delete_many([legal, path]),
            "get_contents": lambda: driver.get_contents([legal, path]),
            "list_files": lambda: driver.list_files(path),
            "list_page": lambda: driver.list_page(path, None, 1),
            "marked_folders": lambda: driver.marked_folders(path, ("_layers",), None, 1),
        }

    async def test_invalid_paths(self) -> None:
        """Every operation refuses every path that breaks the rules."""
        self.tree()
        await self.driver.put_content(TREE + "/legal", b"x")
        for path in INVALID_PATHS:
            for operation, call in self._operations(path).items():
                try:
                    await call()
                except InvalidPathError as error:
                    self.assertEqual(error.path, path)
                except Exception as error:
                    self.fail(f"{operation}({path!r}) failed with {error!r}")
                else:
                    self.fail(f"{operation}({path!r}) accepted an invalid path")
        self.assertEqual(await self.driver.list(TREE), [TREE + "/legal"])

    async def test_root_only_where_allowed(self) -> None:
        """
        The root is refused by every operation but stat, list, walk and
        delete; stat describes it as a directory (Distribution's storage
        health check stats it).
        """
        self.tree()
        await self.driver.put_content(TREE + "/legal", b"x")
        root = await self.driver.stat("/")
        self.assertEqual((root.path, root.is_dir, root.size), ("/", True, 0))
        operations = self._operations("/")
        listings = ("list", "walk", "list_files", "list_page", "marked_folders")
        for operation in ("stat", "delete", *listings):
            del operations[operation]
        for operation, call in operations.items():
            try:
                await call()
            except InvalidPathError:
                pass
            else:
                self.fail(f"{operation}('/') was accepted")

    async def test_odd_legal_paths(self) -> None:
        """Unusual but legal characters and names work in every operation."""
        for path in ODD_PATHS:
            top, moved = "/" + path.split("/")[1], path + ".moved"
            self.addCleanup(self._delete_if_present, top)
            self.addCleanup(self._delete_if_present, "/" + moved.split("/")[1])
            await self.driver.put_content(path, path.encode())
            self.assertEqual(await self.driver.get_content(path), path.encode())
            self.assertEqual(await self.read_from(path, 1), path.encode()[1:])
            self.assertEqual((await self.driver.stat(path)).size, len(path))
            parent = path.rsplit("/", 1)[0] or "/"
            self.assertIn(path, await self.driver.list(parent))
            await self.driver.move(path, moved)
            writer = await self.write_file(moved, b"!", append=True)
            await writer.commit()
            self.assertEqual(await self.driver.get_content(moved), path.encode() + b"!")
            await self.driver.delete(moved)
            await self._delete_if_present(top)

    # -- redirects -----------------------------------------------------------

    async def test_redirect_url(self) -> None:
        """A redirect URL is a string or L{None}, for GET and HEAD."""
        path = self.tree() + "/file"
        await self.driver.put_content(path, b"x")
        for method in ("GET", "HEAD"):
            url = await self.driver.redirect_url(method, path)
            self.assertTrue(url is None or (isinstance(url, str) and url), repr(url))
