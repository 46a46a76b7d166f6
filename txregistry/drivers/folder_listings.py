# -*- test-case-name: tests.test_folder_listings -*-
"""
Sorted listings of big folders, kept while the folder is unchanged, for the
filesystem driver's pages (L{txregistry.interfaces.IPagedLister.list_page}).

A folder's entries come from the kernel in no order, so each page of a
folder read from scratch costs the whole folder: at 100 000 tags, 0.1 s a
page, and a walk through the tags in pages of 100 would cost a thousand
times the whole list.  Kept sorted, a page costs one C{stat} and a binary
search.

A kept listing is used while the folder's identity, modification time,
link count and size are those it was read with.  It is kept only when the
folder was last modified well before it was read (L{SETTLED} seconds), so
that any later change gives the folder another modification time, whatever
the file system's time granularity; and it is used for at most
L{LIFETIME} seconds, a bound on how long a change could go unseen on a file
system whose clock is not this machine's (NFS).  Only folders of at least
L{SMALLEST} entries are kept: a small one is cheaper to read again.

Used from the storage pool's threads: every method may be called from any.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

SETTLED = 2.0
LIFETIME = 10.0
SMALLEST = 1000
FOLDERS = 8


@dataclass(frozen=True)
class _Kept:
    identity: tuple[int, ...]
    names: list[str]
    read_at: float


class SortedListings:
    """
    The sorted listings of up to C{folders} big folders, the least
    recently used dropped first.
    """

    def __init__(
        self,
        folders: int = FOLDERS,
        smallest: int = SMALLEST,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._kept: OrderedDict[str, _Kept] = OrderedDict()
        self._folders = folders
        self._smallest = smallest
        self._clock = clock
        self._lock = threading.Lock()
        self.reads = 0

    def sorted_names(self, folder: str, read: Callable[[str], list[str]]) -> list[str]:
        """
        The names in C{folder}, sorted (plain string order): kept ones, or
        C{read(folder)}'s.  The list returned must not be changed.

        @raise OSError: C{folder} cannot be read (C{FileNotFoundError}
            when it is missing).
        """
        info = os.stat(folder)
        identity = (info.st_dev, info.st_ino, info.st_mtime_ns, info.st_nlink, info.st_size)
        now = self._clock()
        with self._lock:
            kept = self._kept.get(folder)
            if kept is not None:
                if kept.identity == identity and now - kept.read_at < LIFETIME:
                    self._kept.move_to_end(folder)
                    return kept.names
                del self._kept[folder]
        names = sorted(read(folder))
        self.reads += 1
        if len(names) >= self._smallest and now - info.st_mtime_ns / 1e9 > SETTLED:
            with self._lock:
                self._kept[folder] = _Kept(identity, names, now)
                while len(self._kept) > self._folders:
                    self._kept.popitem(last=False)
        return names
