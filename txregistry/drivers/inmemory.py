# -*- test-case-name: tests.test_drivers -*-
"""
The in-memory storage driver: a dictionary of paths, for tests and for
throwaway registries.  Everything it stores is lost with the process.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from txregistry.config import check_parameters
from txregistry.drivers.errors import PathNotFoundError
from txregistry.interfaces import (
    FileInfo,
    IBatchDeleter,
    IFileReader,
    IFileWriter,
    IStorageDriver,
    IStorageDriverFactory,
)


class _File:
    def __init__(self, content: bytes = b"") -> None:
        self.content = bytearray(content)
        self.modified = time.time()


@implementer(IFileReader)
class InMemoryReader:
    """Reads a snapshot of a file's bytes."""

    def __init__(self, content: bytes) -> None:
        self._content = memoryview(content)
        self._position = 0

    def read(self, max_bytes: int) -> Deferred[bytes]:
        """See L{IFileReader.read}."""
        chunk = bytes(self._content[self._position : self._position + max_bytes])
        self._position += len(chunk)
        return succeed(chunk)

    def close(self) -> Deferred[None]:
        """See L{IFileReader.close}."""
        return succeed(None)


@implementer(IFileWriter)
class InMemoryWriter:
    """Appends to a file of an L{InMemoryDriver}."""

    def __init__(self, driver: InMemoryDriver, path: str, file: _File) -> None:
        self._driver = driver
        self._path = path
        self._file = file
        self.size = len(file.content)

    def write(self, data: bytes) -> Deferred[None]:
        """See L{IFileWriter.write}."""
        self._file.content += data
        self._file.modified = time.time()
        self.size += len(data)
        return succeed(None)

    def close(self) -> Deferred[None]:
        """See L{IFileWriter.close}."""
        return succeed(None)

    def commit(self) -> Deferred[None]:
        """See L{IFileWriter.commit}."""
        return succeed(None)

    def cancel(self) -> Deferred[None]:
        """See L{IFileWriter.cancel}."""
        if self._driver._files.get(self._path) is self._file:
            del self._driver._files[self._path]
        return succeed(None)


@implementer(IStorageDriver, IBatchDeleter)
class InMemoryDriver:
    """Keeps every file in a dictionary keyed by path."""

    name = "inmemory"

    def __init__(self) -> None:
        self._files: dict[str, _File] = {}

    def _is_dir(self, path: str) -> bool:
        prefix = "/" if path == "/" else path + "/"
        return any(key.startswith(prefix) for key in self._files)

    def get_content(self, path: str) -> Deferred[bytes]:
        """See L{IStorageDriver.get_content}."""
        file = self._files.get(path)
        if file is None:
            return fail(PathNotFoundError(path))
        return succeed(bytes(file.content))

    def put_content(self, path: str, content: bytes) -> Deferred[None]:
        """See L{IStorageDriver.put_content}."""
        self._files[path] = _File(content)
        return succeed(None)

    def reader(self, path: str, offset: int = 0) -> Deferred[IFileReader]:
        """See L{IStorageDriver.reader}."""
        file = self._files.get(path)
        if file is None:
            return fail(PathNotFoundError(path))
        return succeed(InMemoryReader(bytes(file.content[offset:])))

    def writer(self, path: str, append: bool) -> Deferred[IFileWriter]:
        """See L{IStorageDriver.writer}."""
        file = self._files.get(path)
        if append:
            if file is None:
                return fail(PathNotFoundError(path))
        else:
            file = self._files[path] = _File()
        return succeed(InMemoryWriter(self, path, file))

    def stat(self, path: str) -> Deferred[FileInfo]:
        """See L{IStorageDriver.stat}."""
        file = self._files.get(path)
        if file is not None:
            return succeed(FileInfo(path, len(file.content), file.modified, False))
        if self._is_dir(path):
            return succeed(FileInfo(path, 0, time.time(), True))
        return fail(PathNotFoundError(path))

    def list(self, path: str) -> Deferred[list[str]]:
        """See L{IStorageDriver.list}."""
        prefix = "/" if path == "/" else path + "/"
        children = {
            prefix + key[len(prefix) :].split("/", 1)[0]
            for key in self._files
            if key.startswith(prefix)
        }
        if not children and path != "/":
            return fail(PathNotFoundError(path))
        return succeed(sorted(children))

    def move(self, source: str, dest: str) -> Deferred[None]:
        """See L{IStorageDriver.move}."""
        file = self._files.pop(source, None)
        if file is None:
            return fail(PathNotFoundError(source))
        self._files[dest] = file
        return succeed(None)

    def _delete_now(self, path: str) -> bool:
        prefix = "/" if path == "/" else path + "/"
        doomed = [key for key in self._files if key == path or key.startswith(prefix)]
        for key in doomed:
            del self._files[key]
        return bool(doomed)

    def delete(self, path: str) -> Deferred[None]:
        """See L{IStorageDriver.delete}."""
        if not self._delete_now(path):
            return fail(PathNotFoundError(path))
        return succeed(None)

    def delete_many(self, paths: Sequence[str]) -> Deferred[builtins.list[str]]:
        """See L{IBatchDeleter.delete_many}."""
        return succeed([path for path in paths if self._delete_now(path)])

    def redirect_url(self, method: str, path: str) -> Deferred[str | None]:
        """See L{IStorageDriver.redirect_url}: never offers one."""
        return succeed(None)

    def walk(self, path: str, visit: Callable[[FileInfo], bool | None]) -> Deferred[None]:
        """See L{IStorageDriver.walk}."""
        if path != "/" and not self._is_dir(path):
            return fail(PathNotFoundError(path))
        pruned: list[str] = []
        prefix = "/" if path == "/" else path + "/"
        below: set[str] = set()
        for key in self._files:
            if key.startswith(prefix):
                parts = key[len(prefix) :].split("/")
                for depth in range(1, len(parts) + 1):
                    below.add(prefix + "/".join(parts[:depth]))
        for entry in sorted(below, key=lambda p: p.split("/")):
            if any(entry.startswith(p + "/") for p in pruned):
                continue
            file = self._files.get(entry)
            info = (
                FileInfo(entry, len(file.content), file.modified, False)
                if file is not None
                else FileInfo(entry, 0, time.time(), True)
            )
            if visit(info) is False and info.is_dir:
                pruned.append(entry)
        return succeed(None)


class InMemoryDriverFactory:
    """Makes L{InMemoryDriver}s; the driver takes no parameters."""

    name = "inmemory"

    def create(self, parameters: Mapping[str, Any]) -> IStorageDriver:
        """Make an empty driver."""
        check_parameters("storage.inmemory", parameters, {})
        return InMemoryDriver()


implementer(IStorageDriverFactory)(InMemoryDriverFactory)
