# -*- test-case-name: tests.test_plugin_example -*-
"""
A storage driver that keeps every file as one row of an SQLite table.

The rules it follows (paths, errors, what each method returns) are those of
L{txregistry.interfaces.IStorageDriver}.  Directories are implicit, as there:
a path is a directory when some file's path starts with it and a slash.

SQLite blocks, so every call runs in txregistry's thread pool, inside one
transaction, under a lock: the reactor never waits for the database, and
the one connection is used by one thread at a time.

A writer appends to its row's content, which copies the content on every
write: fine for an example and a small registry, slow for layers of
gigabytes (and SQLite refuses blobs over 1 GB by default).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from txregistry.config import ConfigError, check_parameters
from txregistry.drivers.errors import PathNotFoundError
from txregistry.interfaces import (
    FileInfo,
    IFileReader,
    IFileWriter,
    IStorageDriver,
    IStorageDriverFactory,
)
from txregistry.threads import in_thread

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    content BLOB NOT NULL,
    modified REAL NOT NULL
)
"""

# The files below a directory: "0" is the character after "/", so
# low <= path < high holds exactly for the paths starting with low, and the
# primary key's index finds them.
_BELOW = "path >= ? AND path < ?"


def _below(directory: str) -> tuple[str, str]:
    """The bounds C{(low, high)} of the paths below C{directory}, for L{_BELOW}."""
    prefix = "" if directory == "/" else directory
    return prefix + "/", prefix + "0"


@implementer(IStorageDriver)
class SqliteDriver:
    """
    Stores files in the SQLite database at C{database}, which is created
    when missing.  The connection is opened by the first call.
    """

    name = "sqlite"

    def __init__(self, database: str) -> None:
        self._database = database
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def transaction(self, work: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        """
        Call C{work} with the connection, in a thread, in one transaction:
        committed when C{work} returns, rolled back when it raises.

        @return: a Deferred firing with what C{work} returned.
        """

        def locked() -> T:
            with self._lock:
                if self._connection is None:
                    # Pool threads take turns with the connection, under _lock.
                    self._connection = sqlite3.connect(self._database, check_same_thread=False)
                    with self._connection:
                        self._connection.execute(_SCHEMA)
                with self._connection:
                    return work(self._connection)

        return in_thread(locked)

    def close(self) -> Deferred[None]:
        """Close the connection; a later call opens it again."""

        def close() -> None:
            with self._lock:
                if self._connection is not None:
                    self._connection.close()
                    self._connection = None

        return in_thread(close)

    def get_content(self, path: str) -> Deferred[bytes]:
        """See L{IStorageDriver.get_content}."""

        def get(db: sqlite3.Connection) -> bytes:
            row = db.execute("SELECT content FROM files WHERE path = ?", (path,)).fetchone()
            if row is None:
                raise PathNotFoundError(path)
            return bytes(row[0])

        return self.transaction(get)

    def put_content(self, path: str, content: bytes) -> Deferred[None]:
        """See L{IStorageDriver.put_content}."""

        def put(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT OR REPLACE INTO files (path, content, modified) VALUES (?, ?, ?)",
                (path, content, time.time()),
            )

        return self.transaction(put)

    def reader(self, path: str, offset: int = 0) -> Deferred[IFileReader]:
        """See L{IStorageDriver.reader}."""

        def open_reader(db: sqlite3.Connection) -> IFileReader:
            if db.execute("SELECT 1 FROM files WHERE path = ?", (path,)).fetchone() is None:
                raise PathNotFoundError(path)
            return SqliteReader(self, path, offset)

        return self.transaction(open_reader)

    def writer(self, path: str, append: bool) -> Deferred[IFileWriter]:
        """See L{IStorageDriver.writer}."""

        def open_writer(db: sqlite3.Connection) -> IFileWriter:
            if append:
                row = db.execute(
                    "SELECT length(content) FROM files WHERE path = ?", (path,)
                ).fetchone()
                if row is None:
                    raise PathNotFoundError(path)
                return SqliteWriter(self, path, row[0])
            db.execute(
                "INSERT OR REPLACE INTO files (path, content, modified) VALUES (?, ?, ?)",
                (path, b"", time.time()),
            )
            return SqliteWriter(self, path, 0)

        return self.transaction(open_writer)

    def stat(self, path: str) -> Deferred[FileInfo]:
        """See L{IStorageDriver.stat}: a directory was modified when its newest file was."""

        def stat(db: sqlite3.Connection) -> FileInfo:
            row = db.execute(
                "SELECT length(content), modified FROM files WHERE path = ?", (path,)
            ).fetchone()
            if row is not None:
                return FileInfo(path, row[0], row[1], False)
            (newest,) = db.execute(
                f"SELECT max(modified) FROM files WHERE {_BELOW}", _below(path)
            ).fetchone()
            if newest is None:
                raise PathNotFoundError(path)
            return FileInfo(path, 0, newest, True)

        return self.transaction(stat)

    def list(self, path: str) -> Deferred[list[str]]:
        """See L{IStorageDriver.list}."""

        def list_children(db: sqlite3.Connection) -> list[str]:
            low, high = _below(path)
            rows = db.execute(f"SELECT path FROM files WHERE {_BELOW}", (low, high))
            children = {low + below[len(low) :].split("/", 1)[0] for (below,) in rows}
            if not children and path != "/":
                raise PathNotFoundError(path)
            return sorted(children)

        return self.transaction(list_children)

    def move(self, source: str, dest: str) -> Deferred[None]:
        """See L{IStorageDriver.move}: atomic, one statement."""

        def move(db: sqlite3.Connection) -> None:
            # OR REPLACE: the row already at dest gives way.
            moved = db.execute(
                "UPDATE OR REPLACE files SET path = ? WHERE path = ?", (dest, source)
            )
            if moved.rowcount == 0:
                raise PathNotFoundError(source)

        return self.transaction(move)

    def delete(self, path: str) -> Deferred[None]:
        """See L{IStorageDriver.delete}."""

        def delete(db: sqlite3.Connection) -> None:
            deleted = db.execute(
                f"DELETE FROM files WHERE path = ? OR ({_BELOW})", (path, *_below(path))
            )
            if deleted.rowcount == 0:
                raise PathNotFoundError(path)

        return self.transaction(delete)

    def redirect_url(self, method: str, path: str) -> Deferred[str | None]:
        """See L{IStorageDriver.redirect_url}: never offers one."""
        return succeed(None)

    def walk(self, path: str, visit: Callable[[FileInfo], bool | None]) -> Deferred[None]:
        """See L{IStorageDriver.walk}: reads the whole tree in one query, then visits."""

        def read_tree(db: sqlite3.Connection) -> list[FileInfo]:
            low, high = _below(path)
            rows = db.execute(
                f"SELECT path, length(content), modified FROM files WHERE {_BELOW}", (low, high)
            ).fetchall()
            if not rows and path != "/":
                raise PathNotFoundError(path)
            return _tree(low, rows)

        def visit_tree(tree: list[FileInfo]) -> None:
            # A directory's descendants follow it, so one pruned prefix at a time.
            pruned: str | None = None
            for info in tree:
                if pruned is not None and info.path.startswith(pruned):
                    continue
                if visit(info) is False and info.is_dir:
                    pruned = info.path + "/"

        return self.transaction(read_tree).addCallback(visit_tree)


def _tree(low: str, rows: list[tuple[str, int, float]]) -> list[FileInfo]:
    """
    The files of C{rows} and the directories they imply below C{low}, parents
    before children and siblings in order, as L{IStorageDriver.walk} visits them.
    """
    infos = [FileInfo(path, size, modified, False) for path, size, modified in rows]
    directories: dict[str, float] = {}
    for path, _, modified in rows:
        directory = path.rsplit("/", 1)[0]
        while len(directory) >= len(low):
            directories[directory] = max(modified, directories.get(directory, modified))
            directory = directory.rsplit("/", 1)[0]
    infos += [FileInfo(path, 0, modified, True) for path, modified in directories.items()]
    return sorted(infos, key=lambda info: info.path.split("/"))


@implementer(IFileReader)
class SqliteReader:
    """Reads a file of an L{SqliteDriver} one slice of its content at a time."""

    def __init__(self, driver: SqliteDriver, path: str, offset: int) -> None:
        self._driver = driver
        self._path = path
        self._offset = offset

    def read(self, max_bytes: int) -> Deferred[bytes]:
        """See L{IFileReader.read}."""

        def read(db: sqlite3.Connection) -> bytes:
            # substr counts from 1, and gives NULL for an empty blob.
            row = db.execute(
                "SELECT substr(content, ?, ?) FROM files WHERE path = ?",
                (self._offset + 1, max_bytes, self._path),
            ).fetchone()
            if row is None:
                raise PathNotFoundError(self._path)
            return bytes(row[0] or b"")

        def advance(data: bytes) -> bytes:
            self._offset += len(data)
            return data

        return self._driver.transaction(read).addCallback(advance)

    def close(self) -> Deferred[None]:
        """See L{IFileReader.close}: a reader holds nothing open."""
        return succeed(None)


@implementer(IFileWriter)
class SqliteWriter:
    """
    Appends to a file of an L{SqliteDriver}.  Each write is its own committed
    transaction, so C{close} and C{commit} have nothing left to do.
    """

    def __init__(self, driver: SqliteDriver, path: str, size: int) -> None:
        self._driver = driver
        self._path = path
        self.size = size

    def write(self, data: bytes) -> Deferred[None]:
        """See L{IFileWriter.write}."""
        self.size += len(data)

        def append(db: sqlite3.Connection) -> None:
            # || joins as text; the cast makes the same bytes a blob again.
            appended = db.execute(
                "UPDATE files SET content = CAST(content || ? AS BLOB), modified = ?"
                " WHERE path = ?",
                (data, time.time(), self._path),
            )
            if appended.rowcount == 0:
                raise PathNotFoundError(self._path)

        return self._driver.transaction(append)

    def close(self) -> Deferred[None]:
        """See L{IFileWriter.close}."""
        return succeed(None)

    def commit(self) -> Deferred[None]:
        """See L{IFileWriter.commit}."""
        return succeed(None)

    def cancel(self) -> Deferred[None]:
        """See L{IFileWriter.cancel}."""

        def remove(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM files WHERE path = ?", (self._path,))

        return self._driver.transaction(remove)


@implementer(IStorageDriverFactory)
class SqliteDriverFactory:
    """Makes L{SqliteDriver}s from C{storage: {sqlite: {path: <database file>}}}."""

    name = "sqlite"

    def create(self, parameters: Mapping[str, Any]) -> IStorageDriver:
        """
        Takes C{path}, the database file (required).

        @raise ConfigError: naming the key, for an unknown or missing
            parameter or a value of the wrong type.
        """
        check_parameters("storage.sqlite", parameters, {"path": str})
        if not parameters or "path" not in parameters:
            raise ConfigError("storage.sqlite.path", "required")
        return SqliteDriver(parameters["path"])
