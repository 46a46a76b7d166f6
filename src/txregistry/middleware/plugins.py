# -*- test-case-name: tests.test_middleware -*-
"""
Finding storage middleware factories among the installed Twisted plugins.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from twisted.plugin import IPlugin, getPlugins
from zope.interface import implementer

from txregistry.interfaces import IStorageDriver, IStorageMiddlewareFactory


@implementer(IPlugin, IStorageMiddlewareFactory)
class LazyStorageMiddlewareFactory:
    """
    A storage middleware factory plugin that imports its implementation only
    when a driver is wrapped, so that scanning plugins stays cheap.

    @param name: the name C{middleware.storage} entries select it by.
    @param module: the module holding the real factory.
    @param attribute: the real factory's class name in that module.
    """

    def __init__(self, name: str, module: str, attribute: str) -> None:
        self.name = name
        self._module = module
        self._attribute = attribute

    def wrap(self, driver: IStorageDriver, options: Mapping[str, Any]) -> IStorageDriver:
        """Import the real factory and let it wrap the driver."""
        factory = getattr(importlib.import_module(self._module), self._attribute)()
        wrapped: IStorageDriver = factory.wrap(driver, options)
        return wrapped


def storage_middleware_factories() -> dict[str, IStorageMiddlewareFactory]:
    """
    Every storage middleware factory installed as a Twisted plugin, by
    name.  When two plugins claim one name, the first found wins.
    """
    import twisted.plugins

    found: dict[str, IStorageMiddlewareFactory] = {}
    for factory in getPlugins(IStorageMiddlewareFactory, twisted.plugins):
        found.setdefault(factory.name, factory)
    return found
