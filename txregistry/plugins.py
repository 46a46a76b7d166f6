# -*- test-case-name: tests.test_drivers -*-
"""
What every kind of txregistry plugin shares: finding the installed ones by
name, and lazy plugin objects that import their implementation only when
used, so that scanning C{twisted.plugins} stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from twisted.plugin import getPlugins
from zope.interface.interface import InterfaceClass


class LazyPlugin:
    """
    A plugin object naming the module and class of the real implementation.

    @param name: the name the config selects the plugin by.
    @param module: the module holding the real factory.
    @param attribute: the real factory's class name in that module.
    """

    def __init__(self, name: str, module: str, attribute: str) -> None:
        self.name = name
        self._module = module
        self._attribute = attribute

    def load(self) -> Any:
        """Import the module and make the real factory."""
        return getattr(importlib.import_module(self._module), self._attribute)()


def plugins_by_name(interface: InterfaceClass) -> dict[str, Any]:
    """
    Every installed Twisted plugin providing C{interface}, by its C{name}.
    When two plugins claim one name, the first found wins.
    """
    import twisted.plugins

    found: dict[str, Any] = {}
    plugin: Any
    # getPlugins is typed for classes; an interface is what it takes.
    for plugin in getPlugins(interface, twisted.plugins):  # type: ignore[arg-type]
        found.setdefault(plugin.name, plugin)
    return found
