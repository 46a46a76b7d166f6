# -*- test-case-name: tests.test_blobs -*-
"""
The registry's entry point to its domain: repositories by name, over one
storage driver.
"""

from __future__ import annotations

from txregistry.interfaces import IStorageDriver
from txregistry.registry.blobs import BlobStore, LinkedBlobStore
from txregistry.registry.uploads import HashStates, Uploads


class Repository:
    """One repository: the blobs it links and its uploads in progress."""

    def __init__(self, registry: Registry, name: str) -> None:
        self.name = name
        self.blobs = LinkedBlobStore(registry.blobs, name)
        self.uploads = Uploads(registry.driver, self.blobs, registry.hash_states)


class Registry:
    """
    Every repository stored by one driver.

    @ivar delete_enabled: whether blobs may be deleted.
    @ivar readonly: whether every write is refused (maintenance mode).
    """

    def __init__(
        self, driver: IStorageDriver, *, delete_enabled: bool = False, readonly: bool = False
    ) -> None:
        self.driver = driver
        self.blobs = BlobStore(driver)
        self.hash_states = HashStates()
        self.delete_enabled = delete_enabled
        self.readonly = readonly

    def repository(self, name: str) -> Repository:
        """The repository called C{name}, which must be a valid name."""
        return Repository(self, name)
