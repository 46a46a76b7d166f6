"""
Reading small files from the kernel's caches on the reactor thread
(L{txregistry.drivers.cached_read}): the content when the kernel has it,
L{None} whenever the read would have to wait or cannot be made here.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from pathlib import Path

import pytest

from txregistry.drivers.cached_read import LARGEST, CachedReader

reader = CachedReader()
needs_kernel = pytest.mark.skipif(
    not reader.available or reader.read(__file__) is None,
    reason="no openat2 with RESOLVE_CACHED, or no RWF_NOWAIT, here",
)


@needs_kernel
def test_cached_file(tmp_path: Path) -> None:
    """A file just written is in the page cache: read whole."""
    path = tmp_path / "link"
    path.write_bytes(b"sha256:" + b"a" * 64)
    assert CachedReader().read(str(path)) == b"sha256:" + b"a" * 64
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert CachedReader().read(str(empty)) == b""


@needs_kernel
def test_large_file_left_to_the_pool(tmp_path: Path) -> None:
    """A file above the size read here is not read here."""
    path = tmp_path / "manifest"
    path.write_bytes(b"x" * (LARGEST + 1))
    assert CachedReader().read(str(path)) is None
    path.write_bytes(b"x" * LARGEST)
    assert CachedReader().read(str(path)) == b"x" * LARGEST


@needs_kernel
def test_not_in_page_cache(tmp_path: Path) -> None:
    """A file whose pages the kernel dropped would need the disk: L{None}."""
    path = tmp_path / "cold"
    path.write_bytes(os.urandom(8192))
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)  # clean pages can be dropped
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(descriptor)
    assert CachedReader().read(str(path)) is None
    path.read_bytes()
    assert CachedReader().read(str(path)) == path.read_bytes()


@needs_kernel
def test_errors_known_without_waiting(tmp_path: Path) -> None:
    """
    What the kernel knows at once is raised (a file gone); a folder is
    never read as a file (the kernel refuses RWF_NOWAIT on one: the thread
    pool's read says what is wrong).
    """
    path = tmp_path / "gone"
    path.write_bytes(b"x")
    path.unlink()
    with pytest.raises(FileNotFoundError):
        CachedReader().read(str(path))
    try:
        assert CachedReader().read(str(tmp_path)) is None
    except IsADirectoryError:
        pass


def failing_syscall(number: int) -> object:
    """A stand-in for libc's syscall that fails with C{number}."""

    def syscall(*arguments: object) -> int:
        ctypes.set_errno(number)
        return -1

    return syscall


def test_would_wait(tmp_path: Path) -> None:
    """EAGAIN from openat2 (a lookup needing the disk): L{None}, tried again next time."""
    cached = CachedReader()
    cached.available = True
    cached._syscall = failing_syscall(errno.EAGAIN)  # type: ignore[assignment]
    assert cached.read(str(tmp_path / "x")) is None
    assert cached.available


@pytest.mark.parametrize("number", [errno.ENOSYS, errno.EINVAL, errno.EPERM])
def test_kernel_without_openat2(tmp_path: Path, number: int) -> None:
    """A kernel without openat2 or RESOLVE_CACHED: L{None}, and never tried again."""
    cached = CachedReader()
    cached.available = True
    cached._syscall = failing_syscall(number)  # type: ignore[assignment]
    assert cached.read(str(tmp_path / "x")) is None
    assert not cached.available
    assert cached.read(str(tmp_path / "x")) is None


# -- stat ----------------------------------------------------------------------------


@needs_kernel
def test_stat_cached(tmp_path: Path) -> None:
    """What os.stat says, for a file and a folder the kernel has in memory."""
    path = tmp_path / "data"
    path.write_bytes(b"12345")
    cached = CachedReader().stat(str(path))
    assert cached is not None
    assert (cached.st_size, cached.st_ino, cached.st_mode) == (
        5,
        path.stat().st_ino,
        path.stat().st_mode,
    )
    folder = CachedReader().stat(str(tmp_path))
    assert folder is not None and stat.S_ISDIR(folder.st_mode)


@needs_kernel
def test_stat_of_a_missing_path(tmp_path: Path) -> None:
    """A path the kernel knows is missing raises at once, as os.stat would."""
    path = tmp_path / "gone"
    path.write_bytes(b"x")
    path.unlink()
    with pytest.raises(FileNotFoundError):
        CachedReader().stat(str(path))


def test_stat_would_wait(tmp_path: Path) -> None:
    """EAGAIN (a lookup needing the disk): L{None}; no openat2: L{None} for good."""
    cached = CachedReader()
    cached.available = True
    cached._syscall = failing_syscall(errno.EAGAIN)  # type: ignore[assignment]
    assert cached.stat(str(tmp_path)) is None
    assert cached.available
    cached._syscall = failing_syscall(errno.ENOSYS)  # type: ignore[assignment]
    assert cached.stat(str(tmp_path)) is None
    assert not cached.available
