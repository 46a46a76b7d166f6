# -*- test-case-name: tests.test_descriptor_cache -*-
"""
The blob descriptor cache (C{storage.cache.blobdescriptor: inmemory}): what
is known to exist in a repository (a linked blob and its size, a manifest
revision), remembered so that the many HEADs and GETs of a pull skip their
storage lookups.

As in Distribution, only what exists is cached, and a delete made through
this process forgets it at once.  Unlike Distribution's, an entry also
expires after C{ttl} seconds, which bounds how long another process's delete
can go unnoticed here.  (The Redis issue turns this into the
C{IBlobDescriptorCache} plugin interface; this class is its in-memory kind.)
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from txregistry.digest import Digest

DEFAULT_SIZE = 10000
DEFAULT_TTL = 5.0


class DescriptorCache:
    """
    A bounded, expiring map of (repository, kind, digest) to a size.

    @param size: the most entries kept (least recently used dropped first).
    @param ttl: seconds an entry is trusted.
    """

    def __init__(
        self,
        size: int = DEFAULT_SIZE,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: OrderedDict[tuple[str, str, Digest], tuple[float, int]] = OrderedDict()
        self._size = size
        self._ttl = ttl
        self._clock = clock

    def get(self, repository: str, kind: str, digest: Digest) -> int | None:
        """The size remembered for C{digest}, or L{None}."""
        key = (repository, kind, digest)
        entry = self._entries.get(key)
        if entry is None:
            return None
        stored_at, size = entry
        if self._clock() - stored_at > self._ttl:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return size

    def set(self, repository: str, kind: str, digest: Digest, size: int) -> None:
        """Remember that C{digest} exists, with C{size} bytes."""
        key = (repository, kind, digest)
        self._entries[key] = (self._clock(), size)
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def forget(self, repository: str, kind: str, digest: Digest) -> None:
        """C{digest} was removed from the repository."""
        self._entries.pop((repository, kind, digest), None)


class NoDescriptorCache(DescriptorCache):
    """No cache at all (no C{storage.cache.blobdescriptor}): every lookup goes to storage."""

    def __init__(self) -> None:
        super().__init__(size=0)

    def set(self, repository: str, kind: str, digest: Digest, size: int) -> None:
        """Remember nothing."""
