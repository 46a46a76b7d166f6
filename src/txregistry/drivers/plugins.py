# -*- test-case-name: tests.test_drivers -*-
"""
Finding storage driver factories among the installed Twisted plugins.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from twisted.plugin import IPlugin, getPlugins
from zope.interface import implementer

from txregistry.interfaces import IStorageDriver, IStorageDriverFactory


@implementer(IPlugin, IStorageDriverFactory)
class LazyDriverFactory:
    """
    A driver factory plugin that imports its implementation only when a
    driver is made, so that scanning plugins stays cheap.

    @param name: the storage config name.
    @param module: the module holding the real factory.
    @param attribute: the real factory's class name in that module.
    """

    def __init__(self, name: str, module: str, attribute: str) -> None:
        self.name = name
        self._module = module
        self._attribute = attribute

    def create(self, parameters: Mapping[str, Any]) -> IStorageDriver:
        """Import the real factory and let it make the driver."""
        factory = getattr(importlib.import_module(self._module), self._attribute)()
        driver: IStorageDriver = factory.create(parameters)
        return driver


def driver_factories() -> dict[str, IStorageDriverFactory]:
    """
    Every storage driver factory installed as a Twisted plugin, by name.
    When two plugins claim one name, the first found wins.
    """
    import twisted.plugins

    found: dict[str, IStorageDriverFactory] = {}
    for factory in getPlugins(IStorageDriverFactory, twisted.plugins):
        found.setdefault(factory.name, factory)
    return found
