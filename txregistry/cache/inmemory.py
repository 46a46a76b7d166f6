# -*- test-case-name: tests.test_cache -*-
"""
The C{inmemory} cache (Distribution's default): what is known to exist in
a repository, remembered by this process alone, so that the many HEADs and
GETs of a pull skip their storage lookups.

As in Distribution, only what exists is cached, and a delete made through
this process forgets it at once.  Unlike Distribution's, an entry also
expires after C{ttl} seconds, which bounds how long another process's
delete can go unnoticed here (several processes should share the C{redis}
cache instead).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from txregistry.digest import Digest
from txregistry.interfaces import ICache

DEFAULT_SIZE = 10000
DEFAULT_TTL = 5.0


@implementer(ICache)
class InMemoryCache:
    """
    A bounded, expiring map of (repository, kind, digest) to a size.

    @param size: the most entries kept (least recently used dropped first).
    @param ttl: seconds an entry is trusted.
    @ivar hits: lookups answered.
    @ivar misses: lookups not answered (unknown, or expired).
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
        self.hits = 0
        self.misses = 0

    def get(self, repository: str, kind: str, digest: Digest) -> Deferred[int | None]:
        """See L{ICache.get}."""
        key = (repository, kind, digest)
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return succeed(None)
        stored_at, size = entry
        if self._clock() - stored_at > self._ttl:
            del self._entries[key]
            self.misses += 1
            return succeed(None)
        self._entries.move_to_end(key)
        self.hits += 1
        return succeed(size)

    def set(self, repository: str, kind: str, digest: Digest, size: int) -> Deferred[None]:
        """See L{ICache.set}."""
        key = (repository, kind, digest)
        now = self._clock()
        self._entries[key] = (now, size)
        self._entries.move_to_end(key)
        # Expired entries go from the least recently used end as new ones
        # come: the cache holds what was used lately, not up to size
        # entries of the past (a slow rise in memory under steady pushes).
        entries = self._entries
        while len(entries) > 1 and now - next(iter(entries.values()))[0] > self._ttl:
            entries.popitem(last=False)
        while len(entries) > self._size:
            entries.popitem(last=False)
        return succeed(None)

    def __len__(self) -> int:
        """How many entries are kept (expired ones included until dropped)."""
        return len(self._entries)

    def forget(self, repository: str, kind: str, digest: Digest) -> Deferred[None]:
        """See L{ICache.forget}."""
        self._entries.pop((repository, kind, digest), None)
        return succeed(None)

    def clear(self) -> Deferred[bool]:
        """See L{ICache.clear}."""
        self._entries.clear()
        return succeed(True)

    def close(self) -> Deferred[None]:
        """See L{ICache.close}: nothing to release."""
        return succeed(None)


@implementer(ICache)
class NoCache:
    """No cache at all (no C{storage.cache.blobdescriptor}): every lookup goes to storage."""

    def get(self, repository: str, kind: str, digest: Digest) -> Deferred[int | None]:
        """See L{ICache.get}: never known."""
        return succeed(None)

    def set(self, repository: str, kind: str, digest: Digest, size: int) -> Deferred[None]:
        """See L{ICache.set}: nothing is kept."""
        return succeed(None)

    def forget(self, repository: str, kind: str, digest: Digest) -> Deferred[None]:
        """See L{ICache.forget}: nothing to forget."""
        return succeed(None)

    def clear(self) -> Deferred[bool]:
        """See L{ICache.clear}: nothing to forget."""
        return succeed(True)

    def close(self) -> Deferred[None]:
        """See L{ICache.close}."""
        return succeed(None)


class InMemoryCacheFactory:
    """Makes the C{inmemory} cache, of C{storage.cache.blobdescriptorsize} entries."""

    name = "inmemory"

    def create(self, config: Any) -> ICache:
        """See L{txregistry.interfaces.ICacheFactory.create}."""
        return InMemoryCache(config.storage.blob_descriptor_cache_size)
