# -*- test-case-name: tests.test_drivers -*-
"""
The filesystem storage driver: files under a root directory, laid out as
Distribution's filesystem driver lays them out, so either serves the other's
data.  Every blocking call runs in the reactor's thread pool.
"""

from __future__ import annotations

import atexit
import bisect
import builtins
import errno
import os
import shutil
import stat
import uuid
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from functools import partial
from typing import IO, Any, TypeVar

from twisted.internet.defer import Deferred, ensureDeferred, fail, succeed
from zope.interface import implementer

from txregistry.config import ConfigError, check_parameters
from txregistry.drivers import paged_listing
from txregistry.drivers.cached_read import CachedReader
from txregistry.drivers.errors import PathNotFoundError, StorageFullError
from txregistry.drivers.folder_listings import SortedListings
from txregistry.drivers.paged_listing import EMPTY, FolderPage, Listing
from txregistry.drivers.tree_listing import Entry, ListingFailed, ListingProcesses, walk_files
from txregistry.interfaces import (
    FileInfo,
    IBatchDeleter,
    IBatchReader,
    IBatchWriter,
    IFileLister,
    IFileReader,
    IFileWriter,
    ILocalFileReader,
    IPagedLister,
    IStorageDriver,
    IStorageDriverFactory,
    Move,
    PutContent,
    WriteOperation,
)
from txregistry.threads import DEFAULT_THREADS, ThreadPool, in_thread, set_pool_size

T = TypeVar("T")

DEFAULT_ROOT = "/var/lib/registry"
# Atomic put_content writes a temporary file here, then renames it into place.
# "~" is not legal in a driver path, so no driver path can name this folder.
_TEMPORARY_FOLDER = "~tmp"
# What a filesystem with no room left says: full, or the quota is spent.
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT)
# How many entries one trip to the thread pool reads while walking.
_WALK_READ_AHEAD = 2048
# Listing a tree (IFileLister) is Python work on metadata the kernel has
# cached, so threads beyond the CPUs only contend for the GIL: at 200
# repositories, walking them sixteen at a time in the storage pool took
# 3.4 s (3.6 million futex calls in one collection); listing them in two
# threads of their own, 1.2 s with the blob store listed beside them; each
# thread handing its trees to a helper process (tree_listing), 0.8 s.
_listing_pool = ThreadPool(2, "txregistry-list")
# What one read of a small file asks for (most are links of 71 bytes).
_READ_CHUNK = 64 * 1024
# The short calls (a small file written or read, a stat, a rename, a page
# of a listing): one thread unless a call blocks (see ThreadPool: with a
# thread per waiting call, sixteen pushes of small blobs at once spent more
# time switching threads than working).  The storage pool (in_thread) keeps
# the reads and writes of a blob's bytes, where the hashing of an upload
# runs beside its writes, and the batches garbage collection sends sixteen
# at a time (deletes, reads of manifests, a walk's read-ahead).
_file_calls = ThreadPool(DEFAULT_THREADS, "txregistry-files", core=1)
_listing_processes = ListingProcesses()
atexit.register(_listing_processes.stop_all)


def _remove_tree(folder: str) -> None:
    """
    Remove C{folder} and everything below it, never following a symbolic
    link; fewer system calls than C{shutil.rmtree} for the small folders
    of the layout (a blob's, a link's), which garbage collection removes by
    the thousand.
    """
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                _remove_tree(entry.path)
            else:
                os.unlink(entry.path)
    os.rmdir(folder)


def _sync_folder(folder: str) -> None:
    """Make C{folder}'s entries durable: a file renamed into it, a folder made in it."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _make_folders(folder: str, sync: bool) -> None:
    """
    Create C{folder} and what is missing above it.  When C{sync}, each new
    folder's entry in its parent is made durable as well: a file synced
    into a folder whose own entry is lost is lost with it.
    """
    if not sync:
        os.makedirs(folder, exist_ok=True)
        return
    missing = []
    while not os.path.isdir(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    for new in reversed(missing):
        try:
            os.mkdir(new)
        except FileExistsError:
            pass  # made meanwhile, by another request
        _sync_folder(os.path.dirname(new))


def _in_thread(
    path: str,
    work: Callable[[], T],
    pool: Callable[[Callable[[], T]], Deferred[T]] = _file_calls.run,
) -> Deferred[T]:
    """
    Run C{work} in C{pool} (the pool of short calls unless given), its
    errors translated by L{_translated}.
    """
    return pool(lambda: _translated(path, work))


def _translated(path: str, work: Callable[[], T]) -> T:
    """
    Run C{work}: a missing path fails with L{PathNotFoundError}, a write
    that finds no room with L{StorageFullError}.
    """
    try:
        return work()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as error:
        raise PathNotFoundError(path) from error
    except OSError as error:
        if error.errno == errno.ENAMETOOLONG:
            # No file can have that name (an upload id a client made up):
            # none is there, as for a name that could exist.
            raise PathNotFoundError(path) from error
        if error.errno in _NO_ROOM:
            raise StorageFullError(path, error.strerror or str(error)) from error
        raise


def _file_info(path: str, result: os.stat_result) -> FileInfo:
    is_dir = stat.S_ISDIR(result.st_mode)
    return FileInfo(path, 0 if is_dir else result.st_size, result.st_mtime, is_dir)


@implementer(ILocalFileReader)
class FilesystemReader:
    """Reads one open file in the thread pool."""

    def __init__(self, file: IO[bytes], offset: int) -> None:
        self._file = file
        self._offset = offset

    def local_file(self) -> tuple[int, int]:
        """See L{ILocalFileReader.local_file}."""
        return self._file.fileno(), self._offset

    def read(self, max_bytes: int) -> Deferred[bytes]:
        """See L{IFileReader.read}."""
        return in_thread(self._read, max_bytes)

    def _read(self, max_bytes: int) -> bytes:
        data = self._file.read(max_bytes)
        self._offset += len(data)
        return data

    def close(self) -> Deferred[None]:
        """See L{IFileReader.close}."""
        return _file_calls.run(self._file.close)


@implementer(IFileWriter)
class FilesystemWriter:
    """
    Appends to one open file in the thread pool: the file of driver path
    C{path}, at C{full_path} on disk.
    """

    def __init__(self, file: IO[bytes], path: str, full_path: str, size: int) -> None:
        self._file = file
        self._path = path
        self._full_path = full_path
        self.size = size

    def write(self, data: bytes) -> Deferred[None]:
        """See L{IFileWriter.write}."""
        self.size += len(data)
        return _in_thread(self._path, lambda: self._write_all(data), in_thread)

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self._file.write(view)
            view = view[written:] if written is not None else view[len(view) :]

    def close(self) -> Deferred[None]:
        """See L{IFileWriter.close}."""
        return _in_thread(self._path, self._file.close)

    def commit(self) -> Deferred[None]:
        """See L{IFileWriter.commit}."""

        def sync_and_close() -> None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

        return _in_thread(self._path, sync_and_close)

    def cancel(self) -> Deferred[None]:
        """See L{IFileWriter.cancel}."""

        def close_and_remove() -> None:
            self._file.close()
            try:
                os.unlink(self._full_path)
            except FileNotFoundError:
                pass

        return _file_calls.run(close_and_remove)


@implementer(IStorageDriver, IBatchDeleter, IBatchReader, IBatchWriter, IFileLister, IPagedLister)
class FilesystemDriver:
    """
    Stores each driver path as a file under C{root}.

    @param root: the root directory; created when missing.
    @param fsync: whether what becomes visible is made durable first: a
        file's bytes are synced before it is renamed or moved into place,
        and the folder it lands in after (Distribution never syncs, and
        a process that is killed loses nothing the kernel was given; a
        machine that loses power does).
    """

    name = "filesystem"

    def __init__(self, root: str, fsync: bool = False) -> None:
        self.root = os.path.abspath(root)
        self.fsync = fsync
        self._listings = SortedListings()
        self._cached_reader = CachedReader()
        self._temporary_folder = os.path.join(self.root, _TEMPORARY_FOLDER)
        # Whether the temporary folder was made: then it is not made again
        # for every name (a system call, and in a batch of small writes each
        # one is a chance for another thread to take the GIL) unless a call
        # finds it gone.
        self._temporary_made = False

    def _full(self, path: str) -> str:
        return self.root if path == "/" else self.root + path

    def _temporary_name(self) -> str:
        """A new name in the temporary folder (made when first needed), for a file or folder."""
        if not self._temporary_made:
            os.makedirs(self._temporary_folder, exist_ok=True)
            self._temporary_made = True
        return os.path.join(self._temporary_folder, uuid.uuid4().hex)

    def _in_temporary(self, make: Callable[[str], T]) -> T:
        """
        C{make} called with a new name in the temporary folder; called
        again with another if it fails because the folder is gone (removed
        by hand since it was made).
        """
        try:
            return make(self._temporary_name())
        except FileNotFoundError:
            if os.path.isdir(self._temporary_folder):
                raise
            self._temporary_made = False
        return make(self._temporary_name())

    def _temporary_file(self, content: bytes) -> str:
        """A new file in the temporary folder holding C{content} (synced with fsync)."""

        def create(name: str) -> tuple[str, int]:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
            return name, os.open(name, flags, 0o666)

        temporary, descriptor = self._in_temporary(create)
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(descriptor, view) :]
            if self.fsync:
                os.fsync(descriptor)
        except BaseException:
            os.close(descriptor)
            os.unlink(temporary)
            raise
        os.close(descriptor)
        return temporary

    def _read_now(self, path: str) -> bytes:
        # No file object: a batch reads a thousand links (the referrers of
        # a subject), and one costs three times the system calls' time.
        descriptor = os.open(self._full(path), os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks = []
            while chunk := os.read(descriptor, _READ_CHUNK):
                chunks.append(chunk)
                if len(chunk) < _READ_CHUNK:
                    break  # a short read of a regular file: its end
            return b"".join(chunks)
        finally:
            os.close(descriptor)

    def get_content(self, path: str) -> Deferred[bytes]:
        """
        See L{IStorageDriver.get_content}: on the reactor thread when the
        kernel holds the file in its caches and can hand it over without
        waiting (L{txregistry.drivers.cached_read}), else in the thread pool.
        """
        try:
            content = self._cached_reader.read(self._full(path))
        except OSError:
            content = None  # the thread pool's read says what is wrong
        if content is not None:
            return succeed(content)
        return _in_thread(path, lambda: self._read_now(path))

    def get_contents(self, paths: Sequence[str]) -> Deferred[dict[str, bytes]]:
        """
        See L{IBatchReader.get_contents}: all in one trip to the thread
        pool (garbage collection reads thousands of manifests: one trip
        each made reading them take three times as long).
        """

        def read_all() -> dict[str, bytes]:
            found = {}
            for path in paths:
                try:
                    found[path] = self._read_now(path)
                except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                    continue
            return found

        return in_thread(read_all)

    def put_content(self, path: str, content: bytes) -> Deferred[None]:
        """See L{IStorageDriver.put_content}."""
        return _in_thread(path, lambda: self._put_now(path, content))

    def _put_now(self, path: str, content: bytes) -> None:
        temporary = self._temporary_file(content)
        placed = False
        try:
            full = self._full(path)
            if not self._place_in_new_folders(temporary, full):
                _make_folders(os.path.dirname(full), self.fsync)
                os.replace(temporary, full)
                if self.fsync:
                    _sync_folder(os.path.dirname(full))
            placed = True
        finally:
            if not placed:
                try:
                    os.unlink(temporary)
                except FileNotFoundError:
                    pass

    def write_batch(self, operations: Sequence[WriteOperation]) -> Deferred[None]:
        """See L{IBatchWriter.write_batch}: all in one trip to the thread pool."""

        def write_all() -> None:
            for operation in operations:
                if isinstance(operation, PutContent):
                    _translated(
                        operation.path, partial(self._put_now, operation.path, operation.content)
                    )
                elif isinstance(operation, Move):
                    _translated(
                        operation.source, partial(self._move_now, operation.source, operation.dest)
                    )
                else:
                    try:
                        _translated(operation.path, partial(self._delete_now, operation.path))
                    except PathNotFoundError:
                        if not operation.missing_ok:
                            raise

        return _file_calls.run(write_all)

    def _place_in_new_folders(self, temporary: str, full: str) -> bool:
        """
        Move file C{temporary} to C{full} when folders above C{full} are
        missing: the missing ones are made in the temporary folder with the
        file in them, and the topmost is renamed into place, so that they
        appear with the file, never empty (a tag's folder without its
        C{current} link, listed yet unknown, after a crash in between).

        @return: whether the file was placed; C{False} when no folder was
            missing, or another request made the topmost meanwhile (the
            caller then moves the file the usual way).
        """
        parent = os.path.dirname(full)
        if os.path.isdir(parent):
            return False
        top = parent
        while not os.path.isdir(os.path.dirname(top)):
            top = os.path.dirname(top)
        staging = self._temporary_name()
        staged_parent = os.path.join(staging, os.path.relpath(parent, top))
        os.makedirs(staged_parent)
        staged = os.path.join(staged_parent, os.path.basename(full))
        os.replace(temporary, staged)
        if self.fsync:
            folder = staged_parent
            while True:
                _sync_folder(folder)
                if folder == staging:
                    break
                folder = os.path.dirname(folder)
        try:
            # A folder made meanwhile with something in it stays: the rename
            # fails, and the file goes the usual way.
            os.rename(staging, top)
        except OSError as error:
            if error.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
                raise
            os.replace(staged, temporary)
            _remove_tree(staging)
            return False
        if self.fsync:
            _sync_folder(os.path.dirname(top))
        return True

    def reader(self, path: str, offset: int = 0) -> Deferred[IFileReader]:
        """See L{IStorageDriver.reader}."""

        def open_at() -> IFileReader:
            file = open(self._full(path), "rb", buffering=0)
            try:
                file.seek(offset)
            except BaseException:
                file.close()
                raise
            return FilesystemReader(file, offset)

        return _in_thread(path, open_at)

    def writer(self, path: str, append: bool) -> Deferred[IFileWriter]:
        """See L{IStorageDriver.writer}."""

        def open_for_writing() -> IFileWriter:
            full = self._full(path)
            if append:
                file = open(full, "r+b", buffering=0)
                size = file.seek(0, os.SEEK_END)
            else:
                os.makedirs(os.path.dirname(full), exist_ok=True)
                file = open(full, "wb", buffering=0)
                size = 0
            return FilesystemWriter(file, path, full, size)

        return _in_thread(path, open_for_writing)

    def stat(self, path: str) -> Deferred[FileInfo]:
        """
        See L{IStorageDriver.stat}: on the reactor thread when the kernel
        knows the answer without waiting (as L{get_content}), else in the
        thread pool.
        """
        try:
            cached = self._cached_reader.stat(self._full(path))
        except (FileNotFoundError, NotADirectoryError):
            # Known missing without waiting: from a negative dentry, which
            # on a local file system is the truth (a commit's look for its
            # blob, before the blob exists).
            return fail(PathNotFoundError(path))
        except OSError:
            cached = None  # the thread pool's stat says what is wrong
        if cached is not None:
            return succeed(_file_info(path, cached))
        return _in_thread(path, lambda: _file_info(path, os.stat(self._full(path))))

    def _children(self, path: str) -> list[os.DirEntry[str]]:
        with os.scandir(self._full(path)) as entries:
            children = [
                entry for entry in entries if not (path == "/" and entry.name == _TEMPORARY_FOLDER)
            ]
        return sorted(children, key=lambda entry: entry.name)

    def list(self, path: str) -> Deferred[list[str]]:
        """See L{IStorageDriver.list}."""

        def list_children() -> list[str]:
            if path == "/" and not os.path.exists(self.root):
                return []
            prefix = "" if path == "/" else path
            return [f"{prefix}/{entry.name}" for entry in self._children(path)]

        return _in_thread(path, list_children)

    def list_page(
        self, path: str, after: str | None, limit: int | None
    ) -> Deferred[builtins.list[str]]:
        """
        See L{IPagedLister.list_page}: one trip to the thread pool; a
        folder's entries come in no order, so it is read whole (one
        C{scandir}, no C{stat} of its entries) and sorted, and a big one is
        kept sorted while it does not change
        (L{txregistry.drivers.folder_listings}): then a page costs one
        C{stat} of the folder.
        """

        def read(folder: str) -> list[str]:
            with os.scandir(folder) as entries:
                return [
                    entry.name
                    for entry in entries
                    if not (path == "/" and entry.name == _TEMPORARY_FOLDER)
                ]

        def page() -> list[str]:
            if path == "/" and not os.path.exists(self.root):
                return []
            names = self._listings.sorted_names(self._full(path), read)
            start = 0 if after is None else bisect.bisect_right(names, after)
            return names[start:] if limit is None else names[start : start + limit]

        return _in_thread(path, page)

    def _folder_page(self, listing: Listing) -> FolderPage:
        """One folder's page for the search of marked folders: one C{scandir}."""
        children = []
        folders = []
        try:
            with os.scandir(self._full(listing.folder)) as entries:
                for entry in entries:
                    children.append(entry.name)
                    # The entry's type comes with it (d_type): no stat.
                    if entry.is_dir():
                        folders.append(entry.name)
        except (FileNotFoundError, NotADirectoryError):
            return EMPTY
        except OSError as error:
            if error.errno == errno.ENAMETOOLONG:
                return EMPTY  # named after a "last" no folder can be called
            raise
        return paged_listing.whole_listing(listing, children, folders)

    def marked_folders(
        self, path: str, marks: Collection[str], after: str | None, limit: int | None
    ) -> Deferred[builtins.list[str]]:
        """
        See L{IPagedLister.marked_folders}: the whole search in one trip to
        the thread pool, a C{scandir} per folder it looks into (which says
        both whether the folder is marked and what is below it), and no
        C{stat}; one folder looked into at a time, so that no folder the
        page does not need is read.
        """
        search = paged_listing.search(path, marks, after, limit, at_once=1)
        return _in_thread(path, lambda: paged_listing.run(search, self._folder_page))

    def move(self, source: str, dest: str) -> Deferred[None]:
        """See L{IStorageDriver.move}."""
        return _in_thread(source, lambda: self._move_now(source, dest))

    def _move_now(self, source: str, dest: str) -> None:
        full_source = self._full(source)
        if not os.path.exists(full_source):
            raise FileNotFoundError(errno.ENOENT, "no such file", full_source)
        full_dest = self._full(dest)
        if self.fsync:
            # A committed upload's bytes: written without syncing.
            descriptor = os.open(full_source, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        _make_folders(os.path.dirname(full_dest), self.fsync)
        os.replace(full_source, full_dest)
        if self.fsync:
            _sync_folder(os.path.dirname(full_dest))

    def _delete_now(self, path: str) -> None:
        full = self._full(path)
        if os.path.isdir(full) and not os.path.islink(full):
            if path == "/":
                for entry in os.listdir(full):
                    child = os.path.join(full, entry)
                    if os.path.isdir(child):
                        shutil.rmtree(child)
                    else:
                        os.unlink(child)
            else:
                self._remove_folder(full)
        else:
            os.unlink(full)

    def _remove_folder(self, folder: str) -> None:
        """
        Remove C{folder}: at once when it is empty; else it is first renamed
        into the temporary folder, so that it goes all at once, never a part
        of it before the rest (a tag's C{current} link before its folder).
        """
        try:
            os.rmdir(folder)
            return
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise

        def rename(name: str) -> str:
            os.rename(folder, name)
            return name

        _remove_tree(self._in_temporary(rename))

    def delete(self, path: str) -> Deferred[None]:
        """See L{IStorageDriver.delete}."""
        return _in_thread(path, lambda: self._delete_now(path))

    def delete_many(self, paths: Sequence[str]) -> Deferred[builtins.list[str]]:
        """
        See L{IBatchDeleter.delete_many}: all in one trip to the thread
        pool; a file's directory is removed when the file was its last
        entry.  Nothing is read before it is removed: a file costs an
        C{unlink} and a C{rmdir} (garbage collection deletes them by the
        ten thousand, and reading each folder first made the deletes,
        sixteen batches at once, take twice as long: the threads queue for
        the GIL after every extra call).
        """

        def delete_all() -> list[str]:
            deleted = []
            for path in paths:
                full = self._full(path)
                try:
                    os.unlink(full)
                except (IsADirectoryError, PermissionError):
                    # A directory (PermissionError where unlink says so of one).
                    if not os.path.isdir(full):
                        raise
                    try:
                        self._delete_now(path)
                    except (FileNotFoundError, NotADirectoryError):
                        continue
                except (FileNotFoundError, NotADirectoryError):
                    continue
                else:
                    folder = os.path.dirname(full)
                    if folder != self.root:
                        try:
                            os.rmdir(folder)
                        except OSError:
                            pass  # not empty, or removed meanwhile
                deleted.append(path)
            return deleted

        return in_thread(delete_all)

    def redirect_url(self, method: str, path: str) -> Deferred[str | None]:
        """See L{IStorageDriver.redirect_url}: files are served by the registry."""
        result: Deferred[str | None] = Deferred()
        result.callback(None)
        return result

    def walk(self, path: str, visit: Callable[[FileInfo], bool | None]) -> Deferred[None]:
        """See L{IStorageDriver.walk}."""

        def entries_below(folder: str) -> list[FileInfo]:
            prefix = "" if folder == "/" else folder
            infos = []
            for entry in self._children(folder):
                result = entry.stat()
                is_dir = entry.is_dir()
                infos.append(
                    FileInfo(
                        f"{prefix}/{entry.name}",
                        0 if is_dir else result.st_size,
                        result.st_mtime,
                        is_dir,
                    )
                )
            return infos

        def read_ahead(folder: str) -> dict[str, list[FileInfo]]:
            # The folder's entries and, breadth first, those of the folders
            # below it, up to a budget: one trip to the thread pool serves
            # many folders of a deep tree (a blob store, a repository).
            listings = {folder: entries_below(folder)}
            read = len(listings[folder])
            pending = deque(info.path for info in listings[folder] if info.is_dir)
            while pending and read < _WALK_READ_AHEAD:
                below = pending.popleft()
                try:
                    entries = entries_below(below)
                except (FileNotFoundError, NotADirectoryError):
                    continue  # gone meanwhile: reading it when visited says so
                listings[below] = entries
                read += len(entries)
                pending.extend(info.path for info in entries if info.is_dir)
            return listings

        listings: dict[str, list[FileInfo]] = {}

        def forget(folder: str) -> None:
            for info in listings.pop(folder, ()):
                if info.is_dir:
                    forget(info.path)

        async def walk_from(folder: str) -> None:
            entries = listings.pop(folder, None)
            if entries is None:
                listings.update(await _in_thread(folder, lambda: read_ahead(folder), in_thread))
                entries = listings.pop(folder)
            for info in entries:
                if visit(info) is not False and info.is_dir:
                    await walk_from(info.path)
                elif info.is_dir:
                    forget(info.path)  # pruned: what was read ahead below it

        return ensureDeferred(walk_from(path))

    def list_files(
        self, path: str, skip: Collection[str] = ()
    ) -> Deferred[builtins.list[FileInfo]]:
        """
        See L{IFileLister.list_files}: the whole tree in one trip to a pool
        of two threads, each of which has it listed by a helper process of
        its own (L{txregistry.drivers.tree_listing}), or lists it itself
        when the helper cannot be started or dies.
        """
        top = self._full(path)
        cut = len(self.root)
        hidden = os.path.join(self.root, _TEMPORARY_FOLDER)

        def list_tree() -> list[FileInfo]:
            try:
                entries: Iterable[Entry] = _listing_processes.for_this_thread().list(
                    top, skip, hidden
                )
            except ListingFailed:
                entries = walk_files(top, skip, hidden)
            return [FileInfo(name[cut:], size, modified, False) for name, size, modified in entries]

        return _in_thread(path, list_tree, _listing_pool.run)


class FilesystemDriverFactory:
    """Makes L{FilesystemDriver}s from Distribution's filesystem parameters."""

    name = "filesystem"

    def create(self, parameters: Mapping[str, Any]) -> IStorageDriver:
        """
        Accepts C{rootdirectory} (default C{/var/lib/registry}, as
        Distribution), C{maxthreads} (at least 25, default 100) and, ours,
        C{fsync} (default false, as Distribution, which never syncs; see
        L{FilesystemDriver}).
        """
        check_parameters(
            "storage.filesystem",
            parameters,
            {"rootdirectory": str, "maxthreads": int, "fsync": bool},
        )
        root = parameters.get("rootdirectory", DEFAULT_ROOT)
        max_threads = parameters.get("maxthreads", 100)
        if max_threads < 25:
            raise ConfigError("storage.filesystem.maxthreads", "must be at least 25")
        set_pool_size(max_threads)
        _file_calls.threads = max_threads
        return FilesystemDriver(root, fsync=parameters.get("fsync", False))


implementer(IStorageDriverFactory)(FilesystemDriverFactory)
