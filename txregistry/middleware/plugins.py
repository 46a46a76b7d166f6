# -*- test-case-name: tests.test_middleware -*-
"""
Finding storage middleware factories among the installed Twisted plugins.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.plugin import IPlugin
from zope.interface import implementer

from txregistry.interfaces import IStorageDriver, IStorageMiddlewareFactory
from txregistry.plugins import LazyPlugin, plugins_by_name


@implementer(IPlugin, IStorageMiddlewareFactory)
class LazyStorageMiddlewareFactory(LazyPlugin):
    """
    A storage middleware factory plugin that imports its implementation only
    when a driver is wrapped (see L{LazyPlugin}).
    """

    def wrap(self, driver: IStorageDriver, options: Mapping[str, Any]) -> IStorageDriver:
        """Import the real factory and let it wrap the driver."""
        wrapped: IStorageDriver = self.load().wrap(driver, options)
        return wrapped


def storage_middleware_factories() -> dict[str, IStorageMiddlewareFactory]:
    """
    Every storage middleware factory installed as a Twisted plugin, by
    name.  When two plugins claim one name, the first found wins.
    """
    return plugins_by_name(IStorageMiddlewareFactory)
