# -*- test-case-name: tests.test_events -*-
"""
What the rest of the registry sees of notifications: L{Notifications}
takes each event into the outbox and runs one delivery per endpoint.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, succeed

from txregistry.config.core import ConfigError
from txregistry.config.notifications import NotificationsConfig
from txregistry.events.delivery import EndpointCounters, EndpointDelivery
from txregistry.events.event import RequestRecord, Source, encode_event
from txregistry.events.outbox import Outbox
from txregistry.events.plugins import sink_factories
from txregistry.interfaces import IEventSinkFactory
from txregistry.workers import WORKER_VARIABLE

# How long pull events gather before they are stored, together.
PULL_LINGER = 0.1


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
        self._reactor = reactor
        # Pull events (no request waits for them), gathered for L{PULL_LINGER}
        # and then encoded and written together: encoding them one after
        # another cost half what encoding each in its request did.
        self._gathered: list[tuple[str, Mapping[str, Any], RequestRecord, str | None, float]] = []
        self._later: Any = None
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
        if not durable:
            self._gathered.append((action, target, request, actor, time.time()))
            if self._later is None:
                self._later = self._reactor.callLater(PULL_LINGER, self._store_gathered)
            return succeed(None)
        self._store_gathered()  # the pulls before it go first
        return self.outbox.append(encode_event(action, target, request, actor, self.source), True)

    def _store_gathered(self) -> None:
        """Encode the pulls gathered, and hand them to the outbox: one write."""
        if self._later is not None:
            if self._later.active():
                self._later.cancel()
            self._later = None
        gathered, self._gathered = self._gathered, []
        if gathered:
            source = self.source
            self.outbox.extend(
                [
                    encode_event(action, target, request, actor, source, when)
                    for action, target, request, actor, when in gathered
                ]
            )

    def stop(self) -> Deferred[Any]:
        """
        Write the pulls still gathering, and stop delivering; what is
        undelivered waits in the outbox for the next run.
        """
        stopping = [delivery.stop() for delivery in self.deliveries]
        if self.deliveries:
            self._store_gathered()
            stopping.append(self.outbox.flush())
        return DeferredList(stopping)
