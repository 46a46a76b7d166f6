"""Finding event sink factories (notifiers) among the installed Twisted plugins."""

from __future__ import annotations

from typing import Any

from twisted.plugin import IPlugin
from zope.interface import implementer

from txregistry.interfaces import IEventSink, IEventSinkFactory
from txregistry.plugins import LazyPlugin, plugins_by_name


@implementer(IPlugin, IEventSinkFactory)
class LazyEventSinkFactory(LazyPlugin):
    """A sink factory plugin that imports its implementation only when a sink is made."""

    def create(self, endpoint: Any) -> IEventSink:
        """Import the real factory and let it make the sink."""
        sink: IEventSink = self.load().create(endpoint)
        return sink


def sink_factories() -> dict[str, IEventSinkFactory]:
    """Every event sink factory installed as a Twisted plugin, by name."""
    return plugins_by_name(IEventSinkFactory)
