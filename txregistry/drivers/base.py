# -*- test-case-name: tests.test_drivers -*-
"""
The wrapper every driver runs inside: it checks paths before a driver sees
them and records how each operation went, so drivers implement raw
operations only (Distribution's ``driver/base``).
"""

from __future__ import annotations

import builtins
import re
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, ensureDeferred, fail
from twisted.python.failure import Failure
from zope.interface import implementer

from txregistry.drivers import paged_listing
from txregistry.drivers.errors import InvalidOffsetError, InvalidPathError, PathNotFoundError
from txregistry.drivers.paged_listing import EMPTY, FolderPage, Listing
from txregistry.interfaces import (
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

# A whole path: components of the allowed characters, none of them "." or
# "..", each after one slash.  One match a path: garbage collection checks
# tens of thousands, and a match per component cost it a fifth of a second.
_PATH = re.compile(r"(?:/(?!\.\.?(?:/|$))[A-Za-z0-9._-]+)+", re.ASCII)

T = TypeVar("T")


def check_path(path: str, root_allowed: bool = False) -> None:
    """
    Raise L{InvalidPathError} unless C{path} follows the driver path rules
    (see L{txregistry.interfaces}).
    """
    if path == "/":
        if root_allowed:
            return
        raise InvalidPathError(path)
    if not isinstance(path, str) or not _PATH.fullmatch(path):
        raise InvalidPathError(path)


@dataclass
class OperationStats:
    """Counts for one driver operation."""

    calls: int = 0
    failures: int = 0
    seconds: float = 0.0


@dataclass
class DriverMetrics:
    """
    Per-operation counts of one driver.

    @ivar observe: also told every call's operation and seconds, when set
        (the Prometheus histogram, see L{txregistry.debug.metrics}).
    """

    operations: dict[str, OperationStats] = field(default_factory=dict)
    observe: Callable[[str, float], None] | None = None

    def record(self, operation: str, seconds: float, failed: bool) -> None:
        """Add one finished call of C{operation}."""
        if self.observe is not None:
            self.observe(operation, seconds)
        stats = self.operations.setdefault(operation, OperationStats())
        stats.calls += 1
        stats.seconds += seconds
        if failed:
            stats.failures += 1


async def exists(driver: IStorageDriver, path: str) -> bool:
    """Whether anything (a file or a directory) is stored at C{path}."""
    try:
        await driver.stat(path)
    except PathNotFoundError:
        return False
    return True


def delete_many(driver: IStorageDriver, paths: Sequence[str]) -> Deferred[list[str]]:
    """
    Delete C{paths} through C{driver}: all at once where it provides
    L{IBatchDeleter}, else one after another.  See
    L{IBatchDeleter.delete_many}.
    """
    if IBatchDeleter.providedBy(driver):
        deleted: Deferred[list[str]] = driver.delete_many(paths)
        return deleted

    async def one_by_one() -> list[str]:
        deleted = []
        for path in paths:
            try:
                await driver.delete(path)
            except PathNotFoundError:
                continue
            deleted.append(path)
        return deleted

    return ensureDeferred(one_by_one())


def get_contents(driver: IStorageDriver, paths: Sequence[str]) -> Deferred[dict[str, bytes]]:
    """
    Read C{paths} through C{driver}: all at once where it provides
    L{IBatchReader}, else one after another.  See
    L{IBatchReader.get_contents}.
    """
    if IBatchReader.providedBy(driver):
        read: Deferred[dict[str, bytes]] = driver.get_contents(paths)
        return read

    async def one_by_one() -> dict[str, bytes]:
        found = {}
        for path in paths:
            try:
                found[path] = await driver.get_content(path)
            except PathNotFoundError:
                continue
        return found

    return ensureDeferred(one_by_one())


def write_batch(driver: IStorageDriver, operations: Sequence[WriteOperation]) -> Deferred[None]:
    """
    Perform C{operations} through C{driver}: all at once where it provides
    L{IBatchWriter}, else one after another.  See
    L{IBatchWriter.write_batch}.
    """
    if IBatchWriter.providedBy(driver):
        written: Deferred[None] = driver.write_batch(operations)
        return written

    async def one_by_one() -> None:
        for operation in operations:
            await perform(driver, operation)

    return ensureDeferred(one_by_one())


async def perform(driver: IStorageDriver, operation: WriteOperation) -> None:
    """Perform one write of a batch through C{driver}'s own method."""
    if isinstance(operation, PutContent):
        await driver.put_content(operation.path, operation.content)
    elif isinstance(operation, Move):
        await driver.move(operation.source, operation.dest)
    else:
        try:
            await driver.delete(operation.path)
        except PathNotFoundError:
            if not operation.missing_ok:
                raise


def check_operation_paths(operations: Sequence[WriteOperation]) -> None:
    """
    Check every path the writes of a batch name (see L{check_path}); the
    root is not one of them, even for a delete.
    """
    for operation in operations:
        if isinstance(operation, Move):
            check_path(operation.source)
            check_path(operation.dest)
        else:
            check_path(operation.path)


def list_files(
    driver: IStorageDriver, path: str, skip: Collection[str] = ()
) -> Deferred[list[FileInfo]]:
    """
    Every file below C{path} through C{driver}: in one listing where it
    provides L{IFileLister}, else by a walk.  See L{IFileLister.list_files}.
    """
    if IFileLister.providedBy(driver):
        listed: Deferred[list[FileInfo]] = driver.list_files(path, skip)
        return listed
    found: list[FileInfo] = []

    def visit(info: FileInfo) -> bool:
        if info.is_dir:
            return info.path.rsplit("/", 1)[1] not in skip
        found.append(info)
        return True

    return driver.walk(path, visit).addCallback(lambda _: found)


def _names(children: Sequence[str]) -> list[str]:
    """The last components of the paths L{IStorageDriver.list} returns."""
    return [child.rsplit("/", 1)[1] for child in children]


def list_page(
    driver: IStorageDriver, path: str, after: str | None, limit: int | None
) -> Deferred[list[str]]:
    """
    A page of the children of C{path} through C{driver}: its own where it
    provides L{IPagedLister}, else cut from the whole listing.  See
    L{IPagedLister.list_page}.
    """
    if IPagedLister.providedBy(driver):
        listed: Deferred[list[str]] = driver.list_page(path, after, limit)
        return listed
    return driver.list(path).addCallback(
        lambda children: paged_listing.first_after(_names(children), after, limit)[0]
    )


def marked_folders(
    driver: IStorageDriver,
    path: str,
    marks: Collection[str],
    after: str | None,
    limit: int | None,
) -> Deferred[list[str]]:
    """
    A page of the marked folders below C{path} through C{driver}: its own
    where it provides L{IPagedLister}, else found by listing each folder
    the search looks into (a child that is a file lists as missing).  See
    L{IPagedLister.marked_folders}.
    """
    if IPagedLister.providedBy(driver):
        found: Deferred[list[str]] = driver.marked_folders(path, marks, after, limit)
        return found

    async def read(listing: Listing) -> FolderPage:
        try:
            children = _names(await driver.list(listing.folder))
        except PathNotFoundError:
            return EMPTY
        return paged_listing.whole_listing(listing, children, children)

    return ensureDeferred(
        paged_listing.run_async(
            paged_listing.search(path, marks, after, limit),
            lambda listing: ensureDeferred(read(listing)),
        )
    )


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 0:
        raise ValueError(f"a page's limit must be 0 or more, not {limit}")


@implementer(IStorageDriver, IBatchDeleter, IBatchReader, IBatchWriter, IFileLister, IPagedLister)
class ValidatingDriver:
    """
    An L{IStorageDriver} that checks every path, then delegates to C{driver}
    and records the call in C{metrics}.
    """

    def __init__(self, driver: IStorageDriver) -> None:
        self.driver = driver
        self.name = driver.name
        self.metrics = DriverMetrics()

    def _call(self, operation: str, start: Callable[[], Deferred[T]]) -> Deferred[T]:
        began = time.monotonic()
        try:
            result = start()
        except Exception as error:
            self.metrics.record(operation, time.monotonic() - began, True)
            return fail(error)

        def finished(outcome: Any) -> Any:
            self.metrics.record(operation, time.monotonic() - began, isinstance(outcome, Failure))
            return outcome

        return result.addBoth(finished)

    def get_content(self, path: str) -> Deferred[bytes]:
        """See L{IStorageDriver.get_content}."""
        return self._call("get_content", lambda: _checked(path, self.driver.get_content))

    def put_content(self, path: str, content: bytes) -> Deferred[None]:
        """See L{IStorageDriver.put_content}."""
        return self._call("put_content", lambda: _checked(path, self.driver.put_content, content))

    def reader(self, path: str, offset: int = 0) -> Deferred[IFileReader]:
        """See L{IStorageDriver.reader}."""

        def start() -> Deferred[IFileReader]:
            check_path(path)
            if offset < 0:
                raise InvalidOffsetError(path, offset)
            return self.driver.reader(path, offset)

        return self._call("reader", start)

    def writer(self, path: str, append: bool) -> Deferred[IFileWriter]:
        """See L{IStorageDriver.writer}."""
        return self._call("writer", lambda: _checked(path, self.driver.writer, append))

    def stat(self, path: str) -> Deferred[FileInfo]:
        """See L{IStorageDriver.stat}."""
        return self._call("stat", lambda: _checked(path, self.driver.stat, root=True))

    def list(self, path: str) -> Deferred[list[str]]:
        """See L{IStorageDriver.list}."""
        return self._call("list", lambda: _checked(path, self.driver.list, root=True))

    def move(self, source: str, dest: str) -> Deferred[None]:
        """See L{IStorageDriver.move}."""

        def start() -> Deferred[None]:
            check_path(source)
            check_path(dest)
            return self.driver.move(source, dest)

        return self._call("move", start)

    def delete(self, path: str) -> Deferred[None]:
        """See L{IStorageDriver.delete}."""
        return self._call("delete", lambda: _checked(path, self.driver.delete, root=True))

    def delete_many(self, paths: Sequence[str]) -> Deferred[builtins.list[str]]:
        """See L{IBatchDeleter.delete_many}: the driver's own, or one delete after another."""

        def start() -> Deferred[builtins.list[str]]:
            for path in paths:
                check_path(path)
            return delete_many(self.driver, paths)

        return self._call("delete_many", start)

    def get_contents(self, paths: Sequence[str]) -> Deferred[dict[str, bytes]]:
        """See L{IBatchReader.get_contents}: the driver's own, or one read after another."""

        def start() -> Deferred[dict[str, bytes]]:
            for path in paths:
                check_path(path)
            return get_contents(self.driver, paths)

        return self._call("get_contents", start)

    def write_batch(self, operations: Sequence[WriteOperation]) -> Deferred[None]:
        """See L{IBatchWriter.write_batch}: the driver's own, or one write after another."""

        def start() -> Deferred[None]:
            check_operation_paths(operations)
            return write_batch(self.driver, operations)

        return self._call("write_batch", start)

    def list_files(
        self, path: str, skip: Collection[str] = ()
    ) -> Deferred[builtins.list[FileInfo]]:
        """See L{IFileLister.list_files}: the driver's own, or a walk."""
        return self._call(
            "list_files",
            lambda: _checked(path, lambda valid: list_files(self.driver, valid, skip), root=True),
        )

    def list_page(
        self, path: str, after: str | None, limit: int | None
    ) -> Deferred[builtins.list[str]]:
        """See L{IPagedLister.list_page}: the driver's own, or cut from its whole listing."""

        def start() -> Deferred[builtins.list[str]]:
            check_path(path, root_allowed=True)
            _check_limit(limit)
            return list_page(self.driver, path, after, limit)

        return self._call("list_page", start)

    def marked_folders(
        self, path: str, marks: Collection[str], after: str | None, limit: int | None
    ) -> Deferred[builtins.list[str]]:
        """See L{IPagedLister.marked_folders}: the driver's own, or over its listings."""

        def start() -> Deferred[builtins.list[str]]:
            check_path(path, root_allowed=True)
            _check_limit(limit)
            return marked_folders(self.driver, path, marks, after, limit)

        return self._call("marked_folders", start)

    def redirect_url(self, method: str, path: str) -> Deferred[str | None]:
        """See L{IStorageDriver.redirect_url}."""
        return self._call("redirect_url", lambda: self.driver.redirect_url(method, _valid(path)))

    def walk(self, path: str, visit: Callable[[FileInfo], bool | None]) -> Deferred[None]:
        """See L{IStorageDriver.walk}."""
        return self._call("walk", lambda: _checked(path, self.driver.walk, visit, root=True))


def _valid(path: str) -> str:
    check_path(path)
    return path


def _checked(
    path: str, method: Callable[..., Deferred[T]], *args: Any, root: bool = False
) -> Deferred[T]:
    check_path(path, root_allowed=root)
    return method(path, *args)
