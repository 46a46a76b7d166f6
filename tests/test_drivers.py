"""
The storage drivers: the shared driver suite run against each built-in
driver, plugin discovery, factory parameters, and the validating wrapper.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys

from twisted.internet.defer import Deferred, succeed
from twisted.plugin import IPlugin, getPlugins
from twisted.trial.reporter import TestResult
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

import twisted.plugins
from support import temporary_directory
from txregistry.config import ConfigError
from txregistry.drivers import filesystem, tree_listing
from txregistry.drivers.base import (
    ValidatingDriver,
    check_path,
    delete_many,
    list_files,
    marked_folders,
)
from txregistry.drivers.errors import InvalidPathError, PathNotFoundError, StorageUnavailableError
from txregistry.drivers.filesystem import FilesystemDriver, FilesystemDriverFactory
from txregistry.drivers.inmemory import InMemoryDriver, InMemoryDriverFactory
from txregistry.drivers.plugins import driver_factories
from txregistry.interfaces import IStorageDriver, IStorageDriverFactory
from txregistry.testing.drivers import MARKS, DriverTestsMixin


class FilesystemDriverTests(DriverTestsMixin, TestCase):
    """The driver suite against the filesystem driver, in a root it creates."""

    def make_driver(self) -> IStorageDriver:
        self.root = os.path.join(temporary_directory(self), "root")
        return FilesystemDriver(self.root)

    async def test_distribution_layout(self) -> None:
        """A driver path is the file at the same path below the root, as for Distribution."""
        path = self.tree() + "/docker/registry/v2/blobs/data"
        await self.driver.put_content(path, b"layer")
        with open(self.root + path, "rb") as stored:
            self.assertEqual(stored.read(), b"layer")
        os.makedirs(self.root + "/suite/theirs")
        with open(self.root + "/suite/theirs/file", "wb") as theirs:
            theirs.write(b"written by another registry")
        self.assertEqual(
            await self.driver.get_content("/suite/theirs/file"), b"written by another registry"
        )

    async def test_name_too_long(self) -> None:
        """
        A path with a segment longer than the file system allows (an upload
        id a client made up) is not found, rather than an unexpected error.
        """
        path = self.tree() + "/" + "x" * 1000 + "/startedat"
        with self.assertRaises(PathNotFoundError):
            await self.driver.get_content(path)
        with self.assertRaises(PathNotFoundError):
            await self.driver.stat(path)

    async def test_stat_answered_at_once_when_cached(self) -> None:
        """
        A path the kernel has in memory is stat-ed on the reactor thread:
        the Deferred has its result at once, for a file, a folder and a
        path the kernel knows is missing.
        """
        if not self.raw_driver._cached_reader.available:
            raise SkipTest("no openat2 with RESOLVE_CACHED here")
        path = self.tree() + "/folder/file"
        await self.driver.put_content(path, b"12345")
        for asked, size, is_dir in ((path, 5, False), (self.tree() + "/folder", 0, True)):
            answered = self.raw_driver.stat(asked)
            self.assertTrue(answered.called)
            info = await answered
            self.assertEqual((info.path, info.size, info.is_dir), (asked, size, is_dir))
        await self.driver.delete(path)
        missing = self.raw_driver.stat(path)
        self.assertTrue(missing.called)
        with self.assertRaises(PathNotFoundError):
            await missing

    async def test_temporary_folder_removed_meanwhile(self) -> None:
        """
        The temporary folder, removed by hand while the driver runs, is made
        again by the next write that needs it: a file put in a folder that
        exists, one put in new folders, a folder removed whole.
        """
        tree = self.tree()
        temporary = os.path.join(self.root, "~tmp")
        await self.driver.put_content(f"{tree}/a/file", b"a")
        shutil.rmtree(temporary)
        await self.driver.put_content(f"{tree}/a/other", b"other")
        shutil.rmtree(temporary)
        await self.driver.put_content(f"{tree}/b/new/file", b"b")
        shutil.rmtree(temporary)
        await self.driver.delete(f"{tree}/a")
        self.assertEqual(await self.driver.get_content(f"{tree}/b/new/file"), b"b")
        with self.assertRaises(PathNotFoundError):
            await self.driver.stat(f"{tree}/a")
        self.assertEqual(os.listdir(temporary), [])

    async def test_temporary_folder_hidden(self) -> None:
        """The temporary folder atomic puts use is neither listed nor walked."""
        path = self.tree() + "/file"
        await self.driver.put_content(path, b"x")
        self.assertTrue(os.path.isdir(os.path.join(self.root, "~tmp")))
        self.assertEqual(await self.driver.list("/"), ["/suite"])
        seen: list[str] = []
        await self.driver.walk("/", lambda info: seen.append(info.path))
        self.assertEqual(seen, ["/suite", path])

    async def test_new_folders_appear_with_their_file(self) -> None:
        """
        A put into folders that do not exist yet builds them, file inside,
        in the temporary folder, and renames the topmost into place: no
        crash can leave them there without the file.
        """
        renamed: list[tuple[str, list[str]]] = []
        real_rename = os.rename

        def rename(source: str, destination: str) -> None:
            contents = [
                os.path.relpath(os.path.join(folder, name), source)
                for folder, _, names in os.walk(source)
                for name in names
            ]
            renamed.append((destination, contents))
            real_rename(source, destination)

        self.patch(os, "rename", rename)
        tree = self.tree()
        await self.driver.put_content(f"{tree}/tags/v1/current/link", b"sha256:x")
        self.assertEqual(renamed, [(self.root + tree, ["tags/v1/current/link"])])
        self.assertEqual(await self.driver.get_content(f"{tree}/tags/v1/current/link"), b"sha256:x")
        await self.driver.put_content(f"{tree}/tags/v1/current/link", b"sha256:y")
        self.assertEqual(len(renamed), 1)  # the folders are there: a plain replace
        self.assertEqual(os.listdir(os.path.join(self.root, "~tmp")), [])

    async def test_new_folders_made_meanwhile(self) -> None:
        """
        When another request made the topmost folder, with something in it,
        while the file's folders were being built, the file goes into it
        the usual way, and what was built is removed.
        """
        tree = self.tree()
        real_rename = os.rename

        def rename(source: str, destination: str) -> None:
            os.makedirs(os.path.join(destination, "theirs"), exist_ok=True)
            real_rename(source, destination)

        self.patch(os, "rename", rename)
        await self.driver.put_content(f"{tree}/a/b/file", b"mine")
        # The topmost folder made was the tree's own.
        self.assertEqual(sorted(os.listdir(self.root + tree)), ["a", "theirs"])
        self.assertEqual(await self.driver.get_content(f"{tree}/a/b/file"), b"mine")
        self.assertEqual(os.listdir(os.path.join(self.root, "~tmp")), [])

    async def test_folder_removed_at_once(self) -> None:
        """
        A folder with files in it is renamed out of sight before it is
        emptied: it goes all at once, never a part of it first.
        """
        tree = self.tree()
        await self.driver.put_content(f"{tree}/tags/v1/current/link", b"sha256:x")
        await self.driver.put_content(f"{tree}/tags/v1/index/sha256/x/link", b"sha256:x")
        removed: list[str] = []
        real_unlink = os.unlink

        def unlink(path: str) -> None:
            # When a file goes, the tag's folder is no longer in sight.
            removed.append(path)
            self.assertFalse(os.path.exists(self.root + tree + "/tags/v1"))
            real_unlink(path)

        self.patch(os, "unlink", unlink)
        await self.driver.delete(f"{tree}/tags/v1")
        self.assertEqual(len(removed), 2)
        self.assertEqual(await self.driver.list(f"{tree}/tags"), [])
        self.assertEqual(os.listdir(os.path.join(self.root, "~tmp")), [])

    async def test_temporary_folder_not_listed(self) -> None:
        """Listing the files of the root leaves out the temporary folder's."""
        path = self.tree() + "/file"
        await self.driver.put_content(path, b"x")
        with open(os.path.join(self.root, "~tmp", "left-over"), "wb") as left_over:
            left_over.write(b"a put that died")
        self.assertEqual([info.path for info in await list_files(self.driver, "/")], [path])

    async def test_delete_many_takes_emptied_folder(self) -> None:
        """
        A file deleted by C{delete_many} takes its folder along when it was
        the folder's last entry (a link's, a blob's); never a folder that
        holds more, nor the root.
        """
        tree = self.tree()
        for path in ("only/link", "shared/data", "shared/other", "top"):
            await self.driver.put_content(f"{tree}/{path}", b"x")
        deleted = await delete_many(self.driver, [f"{tree}/only/link", f"{tree}/shared/data"])
        self.assertEqual(deleted, [f"{tree}/only/link", f"{tree}/shared/data"])
        self.assertFalse(os.path.exists(self.root + f"{tree}/only"))
        self.assertEqual(os.listdir(self.root + f"{tree}/shared"), ["other"])
        await delete_many(self.driver, [f"{tree}/shared/other", f"{tree}/top"])
        self.assertFalse(os.path.exists(self.root + f"{tree}/shared"))
        self.assertFalse(os.path.exists(self.root + tree))  # "top" was its last entry
        with open(os.path.join(self.root, "alone"), "wb") as alone:
            alone.write(b"x")
        await delete_many(FilesystemDriver(self.root), ["/alone"])
        self.assertTrue(os.path.isdir(self.root))

    async def test_delete_folder_with_symlink(self) -> None:
        """A symbolic link below a deleted folder goes; what it points at stays."""
        tree = self.tree()
        await self.driver.put_content(f"{tree}/kept/file", b"x")
        os.makedirs(self.root + f"{tree}/doomed")
        os.symlink(self.root + f"{tree}/kept", self.root + f"{tree}/doomed/link")
        self.assertEqual(await delete_many(self.driver, [f"{tree}/doomed"]), [f"{tree}/doomed"])
        self.assertFalse(os.path.lexists(self.root + f"{tree}/doomed"))
        self.assertEqual(await self.driver.get_content(f"{tree}/kept/file"), b"x")

    async def test_listing_process_dies(self) -> None:
        """
        A listing helper killed between two listings is started again; one
        that cannot be started leaves the listing to the thread.
        """
        tree = self.tree()
        await self.driver.put_content(f"{tree}/a/file", b"x")
        helpers = filesystem._listing_processes
        self.assertEqual(len(await list_files(self.driver, tree)), 1)
        for helper in helpers._all:
            if helper._process is not None:
                helper._process.kill()
                helper._process.wait()
        self.assertEqual(len(await list_files(self.driver, tree)), 1)
        self.patch(tree_listing.sys, "executable", os.path.join(self.root, "no-python"))
        helpers.stop_all()
        listed = await list_files(self.driver, tree)
        self.assertEqual([info.path for info in listed], [f"{tree}/a/file"])
        self.assertTrue(helpers._all)
        self.assertEqual([helper._process for helper in helpers._all], [None] * len(helpers._all))


class ListingProcessTests(SynchronousTestCase):
    """The helper process that lists trees for the filesystem driver."""

    def setUp(self) -> None:
        self.root = temporary_directory(self)
        self.helper = tree_listing.ListingProcess()
        self.addCleanup(self.helper.stop)

    def test_lists(self) -> None:
        """
        Every file with its size and time, whatever its name; nothing below
        a skipped name or the hidden folder; the same as in the thread.
        """
        names = ["plain", "new\nline", "tab\tand space", "caf\u00e9", "skipped/below", "hidden/x"]
        for name in [*names, "deep/er/file"]:
            path = os.path.join(self.root, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as file:
                file.write(name.encode())
        os.mkdir(os.path.join(self.root, "empty"))
        listed = self.helper.list(self.root, {"skipped"}, os.path.join(self.root, "hidden"))
        in_thread = list(
            tree_listing.walk_files(self.root, {"skipped"}, os.path.join(self.root, "hidden"))
        )
        self.assertEqual(sorted(listed), sorted(in_thread))
        by_name = {path[len(self.root) + 1 :]: (size, modified) for path, size, modified in listed}
        self.assertEqual(sorted(by_name), sorted([*names[:4], "deep/er/file"]))
        for name, (size, modified) in by_name.items():
            stat = os.stat(os.path.join(self.root, name))
            self.assertEqual((size, modified), (stat.st_size, stat.st_mtime))

    def test_undecodable_name(self) -> None:
        """A name that is not UTF-8 comes back as the thread would list it."""
        with open(os.path.join(os.fsencode(self.root), b"\xff\xfe"), "wb") as file:
            file.write(b"x")
        listed = self.helper.list(self.root, (), None)
        self.assertEqual(listed, list(tree_listing.walk_files(self.root, (), None)))
        self.assertEqual(len(listed), 1)

    def test_missing(self) -> None:
        """A missing folder, or a file, is FileNotFoundError; the helper goes on."""
        with open(os.path.join(self.root, "file"), "wb") as file:
            file.write(b"x")
        for top in (os.path.join(self.root, "missing"), os.path.join(self.root, "file")):
            self.assertRaises(FileNotFoundError, self.helper.list, top, (), None)
        self.assertEqual(len(self.helper.list(self.root, (), None)), 1)

    def test_empty(self) -> None:
        """An empty folder lists nothing."""
        self.assertEqual(self.helper.list(self.root, (), None), [])

    def test_error_answered(self) -> None:
        """A request the helper cannot carry out is answered with its error."""
        self.assertEqual(tree_listing._answer(b"not json")[0], b"error")
        answers = io.BytesIO()
        tree_listing.serve(io.BytesIO(b'{"top": 1}\n'), answers)
        status, payload = answers.getvalue().split(b"\n", 1)
        self.assertEqual(status, b"error %d" % len(payload))
        self.assertIn(b"KeyError", payload)

    def test_error_raised(self) -> None:
        """An error while listing is raised by the caller as an OSError."""
        self.patch(tree_listing, "_encode", lambda text: b"{")
        self.assertRaises(OSError, self.helper.list, self.root, (), None)

    def test_helper_restarted(self) -> None:
        """A helper that died since its last listing is started again."""
        self.helper.list(self.root, (), None)
        process = self.helper._process
        assert process is not None
        process.kill()
        process.wait()
        self.assertEqual(self.helper.list(self.root, (), None), [])
        self.assertIsNot(self.helper._process, process)

    def test_helper_dies_listing(self) -> None:
        """
        A helper that dies during a listing fails it with ListingFailed, and
        is stopped; the next listing starts another.
        """
        self.helper._process = subprocess.Popen(
            [sys.executable, "-c", "import sys; sys.stdin.readline()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self.assertRaises(tree_listing.ListingFailed, self.helper.list, self.root, (), None)
        self.assertIsNone(self.helper._process)
        self.assertEqual(self.helper.list(self.root, (), None), [])

    def test_stop_all(self) -> None:
        """Stopping every helper ends their processes."""
        helpers = tree_listing.ListingProcesses()
        helper = helpers.for_this_thread()
        self.assertIs(helpers.for_this_thread(), helper)
        helper.list(self.root, (), None)
        process = helper._process
        assert process is not None
        helpers.stop_all()
        self.assertIsNotNone(process.poll())
        helpers.stop_all()


class InMemoryDriverTests(DriverTestsMixin, TestCase):
    """The driver suite against the in-memory driver."""

    def make_driver(self) -> IStorageDriver:
        return InMemoryDriver()


class DriverTestsMixinTests(SynchronousTestCase):
    """The suite's own checks fail when they should."""

    def _run_case(self, case: TestCase) -> TestResult:
        result = TestResult()
        case.run(result)
        return result

    def test_leftovers_fail_the_test(self) -> None:
        """A test that leaves a file behind fails, naming it; one that cleans up passes."""

        class Suite(DriverTestsMixin, TestCase):
            def make_driver(self) -> IStorageDriver:
                return InMemoryDriver()

            async def test_leaks(self) -> None:
                await self.driver.put_content("/left/behind", b"x")

            async def test_cleans_up(self) -> None:
                await self.driver.put_content(self.tree() + "/file", b"x")

        leaky = self._run_case(Suite("test_leaks"))
        # Trial reports a failing cleanup as an error of the test.
        problems = leaky.failures + leaky.errors
        self.assertEqual(len(problems), 1)
        self.assertEqual(leaky.successes, 0)
        self.assertTrue(problems[0][1].check(Suite.failureException))
        self.assertIn("left files behind: ['/left']", str(problems[0][1].value))
        clean = self._run_case(Suite("test_cleans_up"))
        self.assertTrue(clean.wasSuccessful(), clean.errors + clean.failures)
        self.assertEqual(clean.successes, 1)

    def test_driver_must_start_empty(self) -> None:
        """A driver that already holds files is refused before the test runs."""
        full = InMemoryDriver()
        full.put_content("/stale", b"x")

        class Suite(DriverTestsMixin, TestCase):
            def make_driver(self) -> IStorageDriver:
                return full

        result = self._run_case(Suite("test_list_root"))
        self.assertEqual(len(result.errors) + len(result.failures), 1)
        self.assertEqual(result.successes, 0)

    def test_make_driver_required(self) -> None:
        """A suite that does not say how to make its driver errors."""

        class Suite(DriverTestsMixin, TestCase):
            pass

        result = self._run_case(Suite("test_list_root"))
        self.assertEqual(len(result.errors), 1)
        self.assertTrue(result.errors[0][1].check(NotImplementedError))


class PluginDiscoveryTests(SynchronousTestCase):
    """Drivers are found among the installed Twisted plugins."""

    def test_builtin_drivers_found(self) -> None:
        """The filesystem and in-memory drivers are plugins providing the factory interface."""
        names = {factory.name for factory in getPlugins(IStorageDriverFactory, twisted.plugins)}
        self.assertTrue({"filesystem", "inmemory"} <= names, names)
        factories = driver_factories()
        for name in ("filesystem", "inmemory"):
            factory = factories[name]
            self.assertEqual(factory.name, name)
            self.assertTrue(verifyObject(IStorageDriverFactory, factory))
            self.assertTrue(IPlugin.providedBy(factory))

    def test_plugins_make_drivers(self) -> None:
        """The plugins' lazy factories make working drivers from parameters."""
        factories = driver_factories()
        inmemory = factories["inmemory"].create({})
        self.assertIsInstance(inmemory, InMemoryDriver)
        self.assertTrue(verifyObject(IStorageDriver, inmemory))
        root = os.path.join(temporary_directory(self), "data")
        filesystem = factories["filesystem"].create({"rootdirectory": root, "maxthreads": 25})
        self.assertIsInstance(filesystem, FilesystemDriver)
        self.assertEqual(filesystem.root, root)


class FactoryParameterTests(SynchronousTestCase):
    """Driver factories check their parameters, naming the key at fault."""

    def _error(self, factory: IStorageDriverFactory, parameters: object) -> ConfigError:
        return self.assertRaises(ConfigError, factory.create, parameters)

    def test_filesystem_unknown_parameter(self) -> None:
        """An unknown filesystem parameter names C{storage.filesystem.<key>}."""
        error = self._error(FilesystemDriverFactory(), {"rootdirectory": "/x", "bogus": 1})
        self.assertEqual(error.key, "storage.filesystem.bogus")
        self.assertIn("unknown", error.problem)

    def test_filesystem_wrong_types(self) -> None:
        """Parameters of the wrong type are named, booleans are not integers."""
        for parameters, key in [
            ({"rootdirectory": 5}, "storage.filesystem.rootdirectory"),
            ({"rootdirectory": ["/x"]}, "storage.filesystem.rootdirectory"),
            ({"maxthreads": "100"}, "storage.filesystem.maxthreads"),
            ({"maxthreads": True}, "storage.filesystem.maxthreads"),
            ({"maxthreads": 100.0}, "storage.filesystem.maxthreads"),
        ]:
            error = self._error(FilesystemDriverFactory(), parameters)
            self.assertEqual(error.key, key, parameters)
            self.assertIn("must be", error.problem)

    def test_filesystem_parameters_not_mapping(self) -> None:
        """The driver's section must be a mapping."""
        error = self._error(FilesystemDriverFactory(), ["rootdirectory"])
        self.assertEqual(error.key, "storage.filesystem")

    def test_filesystem_maxthreads(self) -> None:
        """C{maxthreads} below 25 is refused, as by Distribution; 25 is accepted."""
        error = self._error(FilesystemDriverFactory(), {"maxthreads": 24})
        self.assertEqual(error.key, "storage.filesystem.maxthreads")
        self.assertIn("25", error.problem)
        root = temporary_directory(self)
        driver = FilesystemDriverFactory().create({"rootdirectory": root, "maxthreads": 25})
        self.assertIsInstance(driver, FilesystemDriver)

    def test_filesystem_defaults(self) -> None:
        """Without parameters the root is Distribution's default."""
        driver = FilesystemDriverFactory().create({})
        assert isinstance(driver, FilesystemDriver)
        self.assertEqual(driver.root, "/var/lib/registry")

    def test_inmemory_takes_no_parameters(self) -> None:
        """The in-memory driver names any parameter it is given."""
        error = self._error(InMemoryDriverFactory(), {"rootdirectory": "/x"})
        self.assertEqual(error.key, "storage.inmemory.rootdirectory")

    def test_through_plugin(self) -> None:
        """The lazy plugin passes the factory's errors on."""
        error = self._error(driver_factories()["filesystem"], {"nope": True})
        self.assertEqual(error.key, "storage.filesystem.nope")


@implementer(IStorageDriver)
class RecordingDriver(InMemoryDriver):
    """An in-memory driver that records the paths it is asked about."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    def get_content(self, path: str) -> Deferred[bytes]:
        self.calls.append(("get_content", path))
        return super().get_content(path)

    def stat(self, path: str) -> Deferred[object]:  # type: ignore[override]
        raise RuntimeError("a buggy driver raising instead of failing its Deferred")

    def redirect_url(self, method: str, path: str) -> Deferred[str | None]:
        self.calls.append(("redirect_url", path))
        return succeed(None)


class ValidatingDriverTests(SynchronousTestCase):
    """The wrapper checks paths before the driver sees them and counts every call."""

    def setUp(self) -> None:
        self.raw = RecordingDriver()
        self.driver = ValidatingDriver(self.raw)

    def test_name(self) -> None:
        """The wrapper has its driver's name."""
        self.assertEqual(self.driver.name, "inmemory")

    def test_counts_calls_and_failures(self) -> None:
        """Each operation counts its calls and its failures, invalid paths included."""
        self.successResultOf(self.driver.put_content("/a", b"x"))
        self.assertEqual(self.successResultOf(self.driver.get_content("/a")), b"x")
        self.failureResultOf(self.driver.get_content("/missing"), PathNotFoundError)
        self.failureResultOf(self.driver.get_content("relative"), InvalidPathError)
        put, get = (self.driver.metrics.operations[name] for name in ("put_content", "get_content"))
        self.assertEqual((put.calls, put.failures), (1, 0))
        self.assertEqual((get.calls, get.failures), (3, 2))
        self.assertGreaterEqual(get.seconds, 0.0)
        operations = self.driver.metrics.operations
        self.assertNotIn("stat", operations)

    def test_invalid_path_never_reaches_driver(self) -> None:
        """An invalid path is refused by the wrapper; the driver is not called."""
        self.failureResultOf(self.driver.get_content("/a/../b"), InvalidPathError)
        self.failureResultOf(self.driver.redirect_url("GET", "/a/"), InvalidPathError)
        self.assertEqual(self.raw.calls, [])
        self.successResultOf(self.driver.redirect_url("GET", "/a"))
        self.assertEqual(self.raw.calls, [("redirect_url", "/a")])
        self.assertEqual(self.driver.metrics.operations["redirect_url"].failures, 1)

    def test_driver_raising_becomes_failure(self) -> None:
        """A driver that raises gives a failed Deferred, counted as a failure."""
        failure = self.failureResultOf(self.driver.stat("/a"), RuntimeError)
        self.assertIn("buggy", str(failure.value))
        stats = self.driver.metrics.operations["stat"]
        self.assertEqual((stats.calls, stats.failures), (1, 1))

    def test_failure_after_a_delay_counted(self) -> None:
        """A Deferred that fails later is counted when it fails."""
        pending: Deferred[bytes] = Deferred()
        self.raw.get_content = lambda path: pending  # type: ignore[method-assign]
        result = self.driver.get_content("/slow")
        self.assertNotIn("get_content", self.driver.metrics.operations)
        pending.errback(PathNotFoundError("/slow"))
        self.failureResultOf(result, PathNotFoundError)
        stats = self.driver.metrics.operations["get_content"]
        self.assertEqual((stats.calls, stats.failures), (1, 1))

    def test_negative_limit(self) -> None:
        """A page of fewer than no items is refused before the driver sees it."""
        self.successResultOf(self.driver.put_content("/a/_layers/link", b"x"))
        for call in (
            lambda: self.driver.list_page("/a", None, -1),
            lambda: self.driver.marked_folders("/", MARKS, None, -1),
        ):
            failure = self.failureResultOf(call(), ValueError)
            self.assertIn("-1", str(failure.value))
        self.assertEqual(self.driver.metrics.operations["list_page"].failures, 1)
        self.assertEqual(self.successResultOf(self.driver.list_page("/a", None, 0)), [])
        self.assertEqual(self.successResultOf(self.driver.marked_folders("/", MARKS, "", 1)), ["a"])

    def test_paged_listing_failure(self) -> None:
        """
        A listing that fails fails the search of marked folders (which the
        fallback reads several at once) with the driver's error.
        """
        for name in ("a", "b", "c"):
            self.successResultOf(self.raw.put_content(f"/{name}/_layers/link", b"x"))
        listed = self.raw.list

        def failing(path: str) -> Deferred[list[str]]:
            if path == "/b":
                raise StorageUnavailableError("the bucket is away")
            return listed(path)

        self.raw.list = failing  # type: ignore[method-assign]
        self.assertEqual(self.successResultOf(marked_folders(self.raw, "/", MARKS, None, 1)), ["a"])
        failure = self.failureResultOf(
            marked_folders(self.raw, "/", MARKS, None, 2), StorageUnavailableError
        )
        self.assertIn("away", str(failure.value))

    def test_check_path(self) -> None:
        """The path rules: the root only where allowed, components of [A-Za-z0-9._-]."""
        check_path("/a-b_c.d/e.f")
        check_path("/", root_allowed=True)
        self.assertRaises(InvalidPathError, check_path, "/")
        for path in ("/a/..", "/a/.", "/a//b", "/a/", "a", "/a b", "/é"):
            self.assertRaises(InvalidPathError, check_path, path)
