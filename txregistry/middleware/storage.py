# -*- test-case-name: tests.test_middleware -*-
"""
Storage middleware around the driver: the base a middleware builds on, and
the chain the C{middleware.storage} config describes (Distribution's
C{applyStorageMiddleware}).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

from twisted.internet.defer import Deferred
from zope.interface import implementer

from txregistry.config import ConfigError, MiddlewareEntry
from txregistry.drivers.base import (
    delete_many,
    get_contents,
    list_files,
    list_page,
    marked_folders,
    write_batch,
)
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
    IStorageMiddlewareFactory,
    WriteOperation,
)


@implementer(IStorageDriver, IBatchDeleter, IBatchReader, IBatchWriter, IFileLister, IPagedLister)
class DelegatingDriver:
    """
    An L{IStorageDriver} that passes every call to C{driver}: a middleware
    subclasses it and overrides only what it changes.

    @ivar driver: the wrapped driver.
    """

    def __init__(self, driver: IStorageDriver) -> None:
        self.driver = driver

    @property
    def name(self) -> str:
        """The wrapped driver's name."""
        name: str = self.driver.name
        return name

    def get_content(self, path: str) -> Deferred[bytes]:
        """See L{IStorageDriver.get_content}."""
        return self.driver.get_content(path)

    def put_content(self, path: str, content: bytes) -> Deferred[None]:
        """See L{IStorageDriver.put_content}."""
        return self.driver.put_content(path, content)

    def reader(self, path: str, offset: int = 0) -> Deferred[IFileReader]:
        """See L{IStorageDriver.reader}."""
        return self.driver.reader(path, offset)

    def writer(self, path: str, append: bool) -> Deferred[IFileWriter]:
        """See L{IStorageDriver.writer}."""
        return self.driver.writer(path, append)

    def stat(self, path: str) -> Deferred[FileInfo]:
        """See L{IStorageDriver.stat}."""
        return self.driver.stat(path)

    def list(self, path: str) -> Deferred[list[str]]:
        """See L{IStorageDriver.list}."""
        return self.driver.list(path)

    def move(self, source: str, dest: str) -> Deferred[None]:
        """See L{IStorageDriver.move}."""
        return self.driver.move(source, dest)

    def delete(self, path: str) -> Deferred[None]:
        """See L{IStorageDriver.delete}."""
        return self.driver.delete(path)

    def delete_many(self, paths: Sequence[str]) -> Deferred[builtins.list[str]]:
        """
        See L{IBatchDeleter.delete_many}: the wrapped driver's.  A middleware
        that changes L{delete} changes this too.
        """
        return delete_many(self.driver, paths)

    def get_contents(self, paths: Sequence[str]) -> Deferred[dict[str, bytes]]:
        """
        See L{IBatchReader.get_contents}: the wrapped driver's.  A middleware
        that changes L{get_content} changes this too.
        """
        return get_contents(self.driver, paths)

    def write_batch(self, operations: Sequence[WriteOperation]) -> Deferred[None]:
        """
        See L{IBatchWriter.write_batch}: the wrapped driver's.  A middleware
        that changes L{put_content}, L{move} or L{delete} changes this too.
        """
        return write_batch(self.driver, operations)

    def list_files(
        self, path: str, skip: Collection[str] = ()
    ) -> Deferred[builtins.list[FileInfo]]:
        """
        See L{IFileLister.list_files}: the wrapped driver's.  A middleware
        that changes L{walk} changes this too.
        """
        return list_files(self.driver, path, skip)

    def list_page(
        self, path: str, after: str | None, limit: int | None
    ) -> Deferred[builtins.list[str]]:
        """
        See L{IPagedLister.list_page}: the wrapped driver's.  A middleware
        that changes L{list} changes this too.
        """
        return list_page(self.driver, path, after, limit)

    def marked_folders(
        self, path: str, marks: Collection[str], after: str | None, limit: int | None
    ) -> Deferred[builtins.list[str]]:
        """
        See L{IPagedLister.marked_folders}: the wrapped driver's.  A
        middleware that changes L{list} changes this too.
        """
        return marked_folders(self.driver, path, marks, after, limit)

    def redirect_url(self, method: str, path: str) -> Deferred[str | None]:
        """See L{IStorageDriver.redirect_url}."""
        return self.driver.redirect_url(method, path)

    def walk(self, path: str, visit: Callable[[FileInfo], bool | None]) -> Deferred[None]:
        """See L{IStorageDriver.walk}."""
        return self.driver.walk(path, visit)


def apply_storage_middleware(
    driver: IStorageDriver,
    entries: Iterable[MiddlewareEntry],
    factories: Mapping[str, IStorageMiddlewareFactory],
) -> IStorageDriver:
    """
    Wrap C{driver} in the middleware C{entries} name, in order, skipping
    disabled entries: the first entry wraps C{driver} itself.

    @param factories: the installed middleware by name
        (L{txregistry.middleware.plugins.storage_middleware_factories}).
    @raise ConfigError: naming the entry's C{name} when no factory has it,
        and the entry's option when its factory refuses the options.
    """
    for entry in entries:
        if entry.disabled:
            continue
        factory = factories.get(entry.name)
        if factory is None:
            installed = ", ".join(sorted(factories)) or "none"
            raise ConfigError(
                f"{entry.key}.name",
                f"unknown storage middleware {entry.name!r} (installed: {installed})",
            )
        try:
            driver = factory.wrap(driver, entry.options)
        except ConfigError as error:
            raise ConfigError(f"{entry.key}.{error.key}", error.problem) from None
    return driver
