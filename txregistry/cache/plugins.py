"""Finding cache factories among the installed Twisted plugins."""

from __future__ import annotations

from typing import Any

from twisted.plugin import IPlugin
from zope.interface import implementer

from txregistry.interfaces import ICache, ICacheFactory
from txregistry.plugins import LazyPlugin, plugins_by_name


@implementer(IPlugin, ICacheFactory)
class LazyCacheFactory(LazyPlugin):
    """A cache factory plugin that imports its implementation only when a cache is made."""

    def create(self, config: Any) -> ICache:
        """Import the real factory and let it make the cache."""
        cache: ICache = self.load().create(config)
        return cache


def cache_factories() -> dict[str, ICacheFactory]:
    """Every cache factory installed as a Twisted plugin, by name."""
    return plugins_by_name(ICacheFactory)


def build_cache(config: Any) -> ICache | None:
    """
    The cache C{storage.cache.blobdescriptor} names in C{config} (a
    L{txregistry.config.Config}), if any.

    @raise txregistry.config.ConfigError: for a name no plugin has.
    """
    from txregistry.config.core import ConfigError

    name = config.storage.blob_descriptor_cache
    if name is None:
        return None
    factories = cache_factories()
    factory = factories.get(name)
    if factory is None:
        raise ConfigError(
            "storage.cache.blobdescriptor",
            f"{name!r}: no such cache (installed: {', '.join(sorted(factories))})",
        )
    return factory.create(config)
