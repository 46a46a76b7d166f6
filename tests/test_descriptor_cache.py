"""The in-memory blob descriptor cache: bounded, expiring, forgetting deletes."""

from __future__ import annotations

from txregistry.config import load_config
from txregistry.digest import Digest
from txregistry.drivers.plugins import driver_factories
from txregistry.registry.descriptor_cache import DescriptorCache, NoDescriptorCache

ONE = Digest.of(b"one")
TWO = Digest.of(b"two")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_remembers_per_repository_and_kind() -> None:
    cache = DescriptorCache()
    cache.set("a", "layer", ONE, 3)
    assert cache.get("a", "layer", ONE) == 3
    assert cache.get("b", "layer", ONE) is None
    assert cache.get("a", "revision", ONE) is None
    assert cache.get("a", "layer", TWO) is None


def test_entries_expire() -> None:
    clock = Clock()
    cache = DescriptorCache(ttl=5.0, clock=clock)
    cache.set("a", "layer", ONE, 3)
    clock.now += 5.0
    assert cache.get("a", "layer", ONE) == 3
    clock.now += 0.1
    assert cache.get("a", "layer", ONE) is None


def test_least_recently_used_dropped() -> None:
    cache = DescriptorCache(size=2)
    cache.set("a", "layer", ONE, 1)
    cache.set("a", "layer", TWO, 2)
    assert cache.get("a", "layer", ONE) == 1  # now the most recent
    cache.set("a", "revision", ONE, 3)
    assert cache.get("a", "layer", TWO) is None
    assert cache.get("a", "layer", ONE) == 1
    assert cache.get("a", "revision", ONE) == 3


def test_forget() -> None:
    cache = DescriptorCache()
    cache.set("a", "layer", ONE, 1)
    cache.forget("a", "layer", ONE)
    cache.forget("a", "layer", TWO)  # unknown: nothing happens
    assert cache.get("a", "layer", ONE) is None


def test_no_cache_remembers_nothing() -> None:
    cache = NoDescriptorCache()
    cache.set("a", "layer", ONE, 1)
    assert cache.get("a", "layer", ONE) is None


def test_config() -> None:
    """The embedded default has the cache, as Distribution's sample config; its size is read."""
    default = load_config(None, environ={}, known_drivers=driver_factories())
    assert default.storage.blob_descriptor_cache == "inmemory"
    sized = load_config(
        "version: 0.1\nstorage:\n  inmemory: {}\n  cache: {blobdescriptorsize: 7}\n",
        environ={},
        known_drivers=driver_factories(),
    )
    assert sized.storage.blob_descriptor_cache is None
    assert sized.storage.blob_descriptor_cache_size == 7
