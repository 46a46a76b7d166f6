# -*- test-case-name: tests.test_drivers -*-
"""
Finding storage driver factories among the installed Twisted plugins.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.plugin import IPlugin
from zope.interface import implementer

from txregistry.interfaces import IStorageDriver, IStorageDriverFactory
from txregistry.plugins import LazyPlugin, plugins_by_name


@implementer(IPlugin, IStorageDriverFactory)
class LazyDriverFactory(LazyPlugin):
    """
    A driver factory plugin that imports its implementation only when a
    driver is made (see L{LazyPlugin}).
    """

    def create(self, parameters: Mapping[str, Any]) -> IStorageDriver:
        """Import the real factory and let it make the driver."""
        driver: IStorageDriver = self.load().create(parameters)
        return driver


def driver_factories() -> dict[str, IStorageDriverFactory]:
    """
    Every storage driver factory installed as a Twisted plugin, by name.
    When two plugins claim one name, the first found wins.
    """
    return plugins_by_name(IStorageDriverFactory)
