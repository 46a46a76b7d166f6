# -*- test-case-name: tests.test_events -*-
"""
What the rest of the registry sees of notifications: L{Notifications}
takes each event into the outbox and runs one delivery per endpoint.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, succeed

from txregistry.config.core import ConfigError
from txregistry.config.notifications import NotificationsConfig
from txregistry.events.delivery import EndpointCounters, EndpointDelivery
from txregistry.events.event import RequestRecord, Source, make_event
from txregistry.events.outbox import Outbox
from txregistry.events.plugins import sink_factories
from txregistry.interfaces import IEventSinkFactory
from txregistry.workers import WORKER_VARIABLE


def default_outbox_path() -> str:
    """
    Where the outbox lives unless C{notifications.outbox.path} says:
    C{$XDG_STATE_HOME/txregistry/outbox}, by default
    C{~/.local/state/txregistry/outbox}.
    """
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return os.path.join(state, "txregistry", "outbox")


def process_outbox_path(base: str) -> str:
    """
    This process's outbox below C{base}: each worker under C{--workers}
    has one of its own (C{worker-1}, ...), the supervisor C{main}; the
    same after a restart, so what one left is delivered by its successor.
    """
    worker = os.environ.get(WORKER_VARIABLE)
    return os.path.join(base, "main" if worker is None else f"worker-{worker}")


class Notifications:
    """
    The events of one process: stored in its outbox, delivered to every
    enabled endpoint of C{config}.

    @ivar counters: each endpoint's counters, by name.
    """

    def __init__(
        self,
        config: NotificationsConfig,
        reactor: Any,
        factories: Mapping[str, IEventSinkFactory] | None = None,
    ) -> None:
        self.config = config
        self.source = Source.here()
        base = config.outbox.path or default_outbox_path()
        self.outbox = Outbox(process_outbox_path(base), config.outbox.max_bytes)
        found = sink_factories() if factories is None else factories
        self.deliveries: list[EndpointDelivery] = []
        for number, endpoint in enumerate(config.endpoints):
            if endpoint.disabled:
                continue
            factory = found.get(endpoint.sink)
            if factory is None:
                raise ConfigError(
                    f"notifications.endpoints[{number}].sink",
                    f"no event sink is called {endpoint.sink!r} (installed: "
                    f"{', '.join(sorted(found)) or 'none'})",
                )
            try:
                sink = factory.create(endpoint)
            except ConfigError as error:
                raise ConfigError(
                    f"notifications.endpoints[{number}].{error.key}", error.problem
                ) from None
            self.deliveries.append(EndpointDelivery(endpoint, sink, self.outbox, reactor))
        self.counters: dict[str, EndpointCounters] = {
            delivery.endpoint.name: delivery.counters for delivery in self.deliveries
        }

    @property
    def include_references(self) -> bool:
        """Whether manifest events list what the manifest references."""
        return self.config.include_references

    def open(self) -> None:
        """Read the outbox: at start-up, before the registry answers requests."""
        self.outbox.open()
        self.outbox.register({delivery.endpoint.name for delivery in self.deliveries})

    def start(self) -> None:
        """Deliver, beginning with what an earlier run left."""
        for delivery in self.deliveries:
            delivery.start()

    def emit(
        self,
        action: str,
        target: Mapping[str, Any],
        request: RequestRecord,
        actor: str | None,
        durable: bool,
    ) -> Deferred[None]:
        """
        Store one event.

        @param durable: see L{Outbox.append}: whether the Deferred waits
            until it is on disk.
        """
        if not self.deliveries:
            return succeed(None)
        event = make_event(action, target, request, actor, self.source)
        return self.outbox.append(event, durable)

    def stop(self) -> Deferred[Any]:
        """
        Write the pulls still gathering, and stop delivering; what is
        undelivered waits in the outbox for the next run.
        """
        stopping = [delivery.stop() for delivery in self.deliveries]
        if self.deliveries:
            stopping.append(self.outbox.flush())
        return DeferredList(stopping)
