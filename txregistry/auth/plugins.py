# -*- test-case-name: tests.test_auth -*-
"""
Finding access controller factories among the installed Twisted plugins.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.plugin import IPlugin
from zope.interface import implementer

from txregistry.interfaces import IAccessController, IAccessControllerFactory
from txregistry.plugins import LazyPlugin, plugins_by_name


@implementer(IPlugin, IAccessControllerFactory)
class LazyAccessControllerFactory(LazyPlugin):
    """
    An access controller factory plugin that imports its implementation
    only when a controller is made (see L{LazyPlugin}).
    """

    def create(self, options: Mapping[str, Any]) -> IAccessController:
        """Import the real factory and let it make the controller."""
        controller: IAccessController = self.load().create(options)
        return controller


def access_controller_factories() -> dict[str, IAccessControllerFactory]:
    """
    Every access controller factory installed as a Twisted plugin, by name.
    When two plugins claim one name, the first found wins.
    """
    return plugins_by_name(IAccessControllerFactory)
