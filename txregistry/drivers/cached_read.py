# -*- test-case-name: tests.test_cached_read -*-
"""
Reading a small file, or a file's status, on the reactor thread when, and
only when, the kernel has it in memory: no call here can wait for a disk.

Every manifest request by tag reads the tag's link (71 bytes), and a trip
to the thread pool and back costs more than the rest of the request's
storage work (measured: a quarter of the registry's CPU per manifest
request).  Linux can say that a read would have to wait instead of
waiting: C{openat2} with C{RESOLVE_CACHED} (Linux 5.12) resolves the path
only from the dentry cache and answers C{EAGAIN} when that is not enough
(a lookup that needs the disk, or a network file system revalidating),
and C{preadv2} with C{RWF_NOWAIT} (Linux 4.14) reads only from the page
cache, answering C{EAGAIN} otherwise.  On C{EAGAIN}, or where the calls do
not exist, L{read_if_cached} answers L{None} and the caller reads in the
thread pool as before.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys

# Files larger than this are read in the thread pool (a manifest may be 4 MiB).
LARGEST = 64 * 1024

_SYS_OPENAT2 = 437  # the same on every Linux architecture (the generic table)
_AT_FDCWD = -100
_RESOLVE_CACHED = 0x20


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


class CachedReader:
    """
    Reads files from the kernel's caches only (see the module's
    documentation).  It turns itself off for good the first time the
    kernel lacks C{openat2} or C{RESOLVE_CACHED}.

    @ivar available: whether reads are tried at all.
    """

    def __init__(self) -> None:
        self.available = sys.platform == "linux" and hasattr(os, "RWF_NOWAIT")
        self._syscall: ctypes._NamedFuncPointer | None = None
        self._read_how = _OpenHow(os.O_RDONLY | os.O_CLOEXEC, 0, _RESOLVE_CACHED)
        self._path_how = _OpenHow(os.O_PATH | os.O_CLOEXEC, 0, _RESOLVE_CACHED)
        if self.available:
            try:
                syscall = ctypes.CDLL(None, use_errno=True).syscall
            except (OSError, AttributeError):
                self.available = False
            else:
                syscall.restype = ctypes.c_long
                self._syscall = syscall

    def _open(self, path: str, how: _OpenHow) -> int | None:
        """
        A descriptor of C{path} opened from the dentry cache alone, or
        L{None} when that is not enough (or not available).

        @raise OSError: an error the kernel answered without waiting.
        """
        if not self.available or self._syscall is None:
            return None
        descriptor: int = self._syscall(
            _SYS_OPENAT2,
            _AT_FDCWD,
            os.fsencode(path),
            ctypes.byref(how),
            ctypes.sizeof(how),
        )
        if descriptor < 0:
            number = ctypes.get_errno()
            if number == errno.EAGAIN:
                return None
            if number in (errno.ENOSYS, errno.EINVAL, errno.EPERM):
                # No openat2, or no RESOLVE_CACHED (before Linux 5.12), or
                # refused by a seccomp filter: the thread pool it is.
                self.available = False
                return None
            raise OSError(number, os.strerror(number), path)
        return descriptor

    def stat(self, path: str) -> os.stat_result | None:
        """
        What C{os.stat} says of C{path}, if the kernel can say it without
        waiting; else L{None}.

        @raise FileNotFoundError: the kernel knows, without waiting, that
            C{path} does not exist.
        @raise OSError: another error the kernel answered without waiting.
        """
        descriptor = self._open(path, self._path_how)
        if descriptor is None:
            return None
        try:
            # An O_PATH descriptor reads nothing; its inode is in memory.
            return os.fstat(descriptor)
        finally:
            os.close(descriptor)

    def read(self, path: str) -> bytes | None:
        """
        The whole content of file C{path}, if the kernel can give it without
        waiting; else L{None}.

        @raise FileNotFoundError: the kernel knows, without waiting, that
            C{path} does not exist.
        @raise OSError: another error the kernel answered without waiting
            (C{ENOTDIR}, C{EISDIR}, C{ENAMETOOLONG}...).
        """
        descriptor = self._open(path, self._read_how)
        if descriptor is None:
            return None
        try:
            # The inode is in memory once the file is open: no wait here.
            expected = os.fstat(descriptor).st_size
            if expected > LARGEST:
                return None
            # One byte more than the size: a file that grew is read again.
            buffer = bytearray(expected + 1)
            try:
                size = os.preadv(descriptor, [buffer], 0, os.RWF_NOWAIT)
            except BlockingIOError:
                return None  # not in the page cache
            except OSError as error:
                if error.errno in (errno.EOPNOTSUPP, errno.EINVAL):
                    return None  # a file system without RWF_NOWAIT
                raise
        finally:
            os.close(descriptor)
        if size != expected:
            return None  # part of it not cached (a short read), or it changed
        return bytes(buffer[:size])
