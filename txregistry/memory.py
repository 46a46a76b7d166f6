# -*- test-case-name: tests.test_memory -*-
"""
Keeping the process's memory flat while blobs stream through threads.

Blob chunks are allocated in pool threads (reads from storage) and freed
on the reactor thread.  glibc gives each thread that allocates its own
malloc arena, up to eight per CPU, and an arena keeps what was freed in it
for reuse: with 32 pool threads, a 1 GiB pull from S3 left the process
about 100 MB larger than the chunks in flight (measured: peak RSS 181 MB,
against 100 MB with two arenas; bench/RESULTS.md).  Two arenas cost
nothing measurable here, since threads spend their time in I/O, not in
malloc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# mallopt's parameter number for the arena limit (glibc's malloc.h).
_M_ARENA_MAX = -8
ARENAS = 2


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """
    Cap glibc's malloc arenas at C{arenas}, unless C{MALLOC_ARENA_MAX} is
    set (glibc has then applied the user's choice at start-up).  Call it
    before threads start allocating.

    @return: whether the cap was set (not on other C libraries).
    """
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, arenas))
