"""
The filesystem driver's C{fsync} option: off by default, as Distribution;
on, what becomes visible (a put's file, a moved upload) is synced, and so
is the folder it lands in, before the call returns.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from twisted.trial.unittest import SynchronousTestCase, TestCase

from support import temporary_directory
from txregistry.config import ConfigError
from txregistry.drivers.filesystem import FilesystemDriver, FilesystemDriverFactory
from txregistry.interfaces import IStorageDriver
from txregistry.testing.drivers import DriverTestsMixin


class FsyncDriverSuiteTests(DriverTestsMixin, TestCase):
    """The whole driver suite passes with C{fsync} on."""

    def make_driver(self) -> IStorageDriver:
        self.root = os.path.join(temporary_directory(self), "root")
        return FilesystemDriver(self.root, fsync=True)


class FsyncCallsTests(TestCase):
    """Which files and folders are synced, counted by patching C{os.fsync}."""

    def setUp(self) -> None:
        self.root = os.path.join(temporary_directory(self), "root")
        os.makedirs(self.root)

    @contextmanager
    def synced(self) -> Iterator[list[str]]:
        """The paths of what C{os.fsync} is called on meanwhile, in order."""
        paths: list[str] = []
        real = os.fsync

        def fsync(descriptor: int) -> None:
            paths.append(os.readlink(f"/proc/self/fd/{descriptor}"))
            real(descriptor)

        self.patch(os, "fsync", fsync)
        yield paths

    async def test_put_content_synced(self) -> None:
        """
        The file's bytes before the rename; the folders made for it, built
        in the temporary folder with the file in them, before the topmost
        is renamed into place; the folder it is renamed into after.
        """
        driver = FilesystemDriver(self.root, fsync=True)
        with self.synced() as paths:
            await driver.put_content("/a/b/file", b"content")
        temporary = os.path.join(self.root, "~tmp")
        self.assertEqual(os.path.dirname(paths[0]), temporary)
        staged_a = paths[2]
        self.assertEqual(os.path.dirname(staged_a), temporary)
        self.assertEqual(paths[1:], [staged_a + "/b", staged_a, self.root])
        self.assertEqual(os.listdir(temporary), [])
        with self.synced() as paths:
            await driver.put_content("/a/b/file", b"again")
        self.assertEqual(len(paths), 2)  # no folder made this time
        self.assertEqual(paths[1], self.root + "/a/b")
        self.assertEqual(await driver.get_content("/a/b/file"), b"again")

    async def test_move_synced(self) -> None:
        """A moved file's bytes before the move, its new folder after."""
        driver = FilesystemDriver(self.root, fsync=True)
        writer = await driver.writer("/uploads/data", append=False)
        await writer.write(b"upload")
        await writer.close()
        with self.synced() as paths:
            await driver.move("/uploads/data", "/blobs/x/data")
        self.assertEqual(
            paths,
            [self.root + "/uploads/data", self.root, self.root + "/blobs", self.root + "/blobs/x"],
        )
        self.assertEqual(await driver.get_content("/blobs/x/data"), b"upload")

    async def test_off_by_default(self) -> None:
        """Without the option nothing is synced by puts and moves."""
        driver = FilesystemDriver(self.root)
        self.assertFalse(driver.fsync)
        with self.synced() as paths:
            await driver.put_content("/a/file", b"content")
            await driver.move("/a/file", "/b/file")
        self.assertEqual(paths, [])


class FsyncParameterTests(SynchronousTestCase):
    """C{storage.filesystem.fsync} is a boolean, false by default."""

    def test_default_off(self) -> None:
        """Not given, it is off."""
        driver = FilesystemDriverFactory().create({"rootdirectory": temporary_directory(self)})
        assert isinstance(driver, FilesystemDriver)
        self.assertFalse(driver.fsync)

    def test_on(self) -> None:
        """C{true} turns it on."""
        driver = FilesystemDriverFactory().create(
            {"rootdirectory": temporary_directory(self), "fsync": True}
        )
        assert isinstance(driver, FilesystemDriver)
        self.assertTrue(driver.fsync)

    def test_not_boolean(self) -> None:
        """Anything but true or false is refused, naming the key."""
        for value in ["yes", 1, 0, "true"]:
            error = self.assertRaises(
                ConfigError, FilesystemDriverFactory().create, {"fsync": value}
            )
            self.assertEqual(error.key, "storage.filesystem.fsync")
            self.assertIn("true or false", error.problem)
